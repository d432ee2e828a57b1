#include "replica/ledger/block.h"

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/codec.h"
#include "common/crypto.h"
#include "common/merkle.h"
#include "common/proto_names.h"

namespace pbft::ledger {
namespace {

// "kind: message", the shape offline verification reports (verify.h).
absl::Status Fail(absl::string_view check, absl::string_view message) {
  return absl::FailedPreconditionError(absl::StrCat(check, ": ", message));
}

std::string Hex(absl::string_view bytes) {
  return absl::BytesToHexString(bytes).substr(0, 16);
}

}  // namespace

Digest BlockHash(const v1::BlockHeader& header) {
  std::string bytes;
  codec::Writer w(&bytes);
  w.PutRaw("pbft-ledger/block/v2");
  w.PutU64(header.height());
  // Hashes are 32 bytes in a valid header; length-prefix them anyway so a
  // malformed header can never alias a well-formed one.
  w.PutBytes(header.previous_hash());
  w.PutBytes(header.requests_root());
  w.PutBytes(header.batch_digest());
  w.PutBytes(header.results_root());
  w.PutBytes(header.state_digest());
  w.PutU64(header.timestamp_ms());
  return crypto::Sha256(bytes);
}

Digest ResultLeafHash(absl::string_view result) {
  return merkle::LeafHash(result);
}

Digest ResultsRoot(
    const google::protobuf::RepeatedPtrField<std::string>& results) {
  std::vector<Digest> leaves;
  leaves.reserve(static_cast<size_t>(results.size()));
  for (const std::string& r : results) leaves.push_back(ResultLeafHash(r));
  return merkle::Root(leaves);
}

absl::Status VerifyCommitCertificate(const Cluster& cluster,
                                     const EnvelopeVerifier& verifier,
                                     uint64_t view, uint64_t seq,
                                     const Digest& batch_digest,
                                     const pbft::v1::CommitCertificate& cert) {
  const int count = cert.commits_size();
  if (static_cast<uint32_t>(count) < cluster.quorum()) {
    return Fail("certificate",
                absl::StrCat("has ", count, " commits, needs a quorum of ",
                             cluster.quorum()));
  }
  if (static_cast<uint32_t>(count) > cluster.n()) {
    return Fail("certificate",
                absl::StrCat("has ", count, " commits, more than the ",
                             cluster.n(), " replicas"));
  }
  absl::flat_hash_set<uint64_t> senders;
  for (int i = 0; i < count; ++i) {
    const pbft::v1::Envelope& e = cert.commits(i);
    const std::string which =
        absl::StrCat("commit ", i, " (from replica ", e.sender(), ")");
    if (e.type() != pbft::v1::MESSAGE_TYPE_COMMIT) {
      return Fail("certificate", absl::StrCat(which, " is not a COMMIT"));
    }
    absl::Status s = verifier.Verify(e);
    if (!s.ok()) {
      return Fail("certificate", absl::StrCat(which, ": ", s.message()));
    }
    pbft::v1::Commit c;
    if (!c.ParseFromString(e.payload())) {
      return Fail("certificate", absl::StrCat(which, " does not parse"));
    }
    if (c.replica_id() != e.sender()) {
      return Fail("certificate",
                  absl::StrCat(which, " names replica ", c.replica_id()));
    }
    if (c.view() != view || c.seq() != seq ||
        c.batch_digest() != batch_digest.view()) {
      return Fail(
          "certificate",
          absl::StrCat(which, " is for view ", c.view(), " seq ", c.seq(),
                       " digest ", Hex(c.batch_digest()), ", not view ", view,
                       " seq ", seq, " digest ", Hex(batch_digest.view())));
    }
    if (!senders.insert(e.sender()).second) {
      return Fail("certificate",
                  absl::StrCat(which, ": replica ", e.sender(),
                               " appears twice (commits must be distinct)"));
    }
  }
  return absl::OkStatus();
}

absl::Status VerifyBlockCommit(const Cluster& cluster,
                               const EnvelopeVerifier& verifier,
                               const v1::BlockHeader& header, uint64_t view,
                               const pbft::v1::Envelope& pre_prepare,
                               const pbft::v1::CommitCertificate& certificate,
                               pbft::v1::PrePrepare* parsed) {
  absl::StatusOr<Digest> batch_digest =
      Digest::FromBytes(header.batch_digest());
  if (!batch_digest.ok()) return Fail("header", "batch_digest is not 32 bytes");
  const uint64_t primary = view % cluster.n();
  if (pre_prepare.type() != pbft::v1::MESSAGE_TYPE_PRE_PREPARE ||
      pre_prepare.sender() != primary) {
    return Fail("pre_prepare",
                absl::StrCat("is not a PRE-PREPARE from the primary of view ",
                             view, " (replica ", primary, ")"));
  }
  absl::Status s = verifier.Verify(pre_prepare);
  if (!s.ok()) return Fail("pre_prepare", s.message());
  pbft::v1::PrePrepare local;
  pbft::v1::PrePrepare& pp = parsed != nullptr ? *parsed : local;
  if (!pp.ParseFromString(pre_prepare.payload())) {
    return Fail("pre_prepare", "payload does not parse");
  }
  if (pp.view() != view || pp.seq() != header.height() ||
      pp.timestamp_ms() != header.timestamp_ms() ||
      pp.batch_digest() != header.batch_digest()) {
    return Fail("pre_prepare",
                "view/seq/timestamp/batch_digest differ from the block's");
  }
  return VerifyCommitCertificate(cluster, verifier, view, header.height(),
                                 *batch_digest, certificate);
}

}  // namespace pbft::ledger
