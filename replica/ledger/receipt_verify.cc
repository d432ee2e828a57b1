// Checking a receipt offline (docs/api.md "Receipts").
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/merkle.h"
#include "common/proto_names.h"
#include "replica/ledger/block.h"

namespace pbft::ledger {
namespace {

bool SameId(const v1::Uint128& a, const v1::Uint128& b) {
  return a.high() == b.high() && a.low() == b.low();
}

// Do the operation's fields match the recorded transfer?
bool Matches(const v1::Operation& op, const v1::TransferRecord& t) {
  if (op.has_transfer()) {
    const v1::Transfer& x = op.transfer();
    return !t.is_mint() && SameId(x.debit_account_id(), t.debit_account_id()) &&
           SameId(x.credit_account_id(), t.credit_account_id()) &&
           x.amount() == t.amount() && x.ledger() == t.ledger() &&
           x.memo() == t.memo();
  }
  const v1::Mint& m = op.mint();
  return t.is_mint() && SameId(m.account_id(), t.credit_account_id()) &&
         m.amount() == t.amount() && m.ledger() == t.ledger() &&
         m.memo() == t.memo();
}

absl::Status Bad(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("receipt: ", what));
}

// An audit path as digests, or an error naming it.
absl::StatusOr<std::vector<Digest>> Path(
    const google::protobuf::RepeatedPtrField<std::string>& path,
    absl::string_view name) {
  std::vector<Digest> out;
  for (const std::string& p : path) {
    absl::StatusOr<Digest> d = Digest::FromBytes(p);
    if (!d.ok()) return Bad(absl::StrCat(name, ": an entry is not 32 bytes"));
    out.push_back(*d);
  }
  return out;
}

// 1. The client signed the request; it holds an operation with the
// transfer's fields whose result (in `receipt.result`) is the recorded one.
absl::Status CheckRequest(const EnvelopeVerifier& verifier,
                          const v1::Receipt& receipt,
                          pbft::v1::Request* request) {
  const v1::BlockHeader& h = receipt.header();
  const v1::TransferRecord& t = receipt.transfer();
  const pbft::v1::Envelope& e = receipt.request();
  if (e.type() != pbft::v1::MESSAGE_TYPE_REQUEST) {
    return Bad("request is not a REQUEST envelope");
  }
  absl::Status s = verifier.Verify(e);
  if (!s.ok()) return Bad(absl::StrCat("request signature: ", s.message()));
  v1::OperationBatch batch;
  if (!request->ParseFromString(e.payload()) ||
      request->client_id() != e.sender() ||
      !batch.ParseFromString(request->operation())) {
    return Bad("request does not parse");
  }
  if (t.client_id() != e.sender()) {
    return Bad("the transfer's client is not the request's signer");
  }
  v1::OperationResults results;
  if (!results.ParseFromString(receipt.result()) ||
      results.seq() != h.height()) {
    return Bad("result does not parse or names another block");
  }
  bool found = false;
  for (int j = FindTransferOperation(batch, t.id()); j >= 0 && !found;
       j = FindTransferOperation(batch, t.id(), j + 1)) {
    found = Matches(batch.operations(j), t) && j < results.results_size() &&
            results.results(j).code() == t.result();
  }
  if (!found) {
    return Bad(
        "the request holds no operation matching the transfer and its "
        "result");
  }
  if (t.seq() != h.height()) {
    return Bad("the transfer's seq is not the block height");
  }
  if (t.timestamp_ms() != h.timestamp_ms() ||
      results.timestamp_ms() != h.timestamp_ms()) {
    return Bad("timestamps of the transfer, result and header differ");
  }
  return absl::OkStatus();
}

// 2. The request is leaf request_index of the block's batch and its result
// leaf request_index of the block's results.
absl::Status CheckPaths(const v1::Receipt& receipt) {
  const v1::BlockHeader& h = receipt.header();
  absl::StatusOr<Digest> root = Digest::FromBytes(h.requests_root());
  absl::StatusOr<Digest> results_root = Digest::FromBytes(h.results_root());
  absl::StatusOr<Digest> batch_digest = Digest::FromBytes(h.batch_digest());
  if (!root.ok() || !results_root.ok() || !batch_digest.ok()) {
    return Bad("header digests must be 32 bytes");
  }
  absl::StatusOr<std::vector<Digest>> proof = Path(receipt.proof(), "proof");
  if (!proof.ok()) return proof.status();
  if (!merkle::VerifyProof(RequestLeafHash(receipt.request()),
                           receipt.request_index(), receipt.request_count(),
                           *proof, *root)) {
    return Bad("merkle proof does not lead to the header's requests_root");
  }
  if (BatchDigestFromRoot(receipt.request_count(), *root) != *batch_digest) {
    return Bad("batch_digest is not the digest of requests_root");
  }
  absl::StatusOr<std::vector<Digest>> result_proof =
      Path(receipt.result_proof(), "result_proof");
  if (!result_proof.ok()) return result_proof.status();
  if (!merkle::VerifyProof(ResultLeafHash(receipt.result()),
                           receipt.request_index(), receipt.request_count(),
                           *result_proof, *results_root)) {
    return Bad("result proof does not lead to the header's results_root");
  }
  return absl::OkStatus();
}

// 4. Optional: f+1 signed replies from distinct replicas with this result.
absl::Status CheckReplies(const Cluster& cluster,
                          const EnvelopeVerifier& verifier,
                          const v1::Receipt& receipt,
                          const pbft::v1::Request& request) {
  absl::flat_hash_set<uint64_t> repliers;
  for (int i = 0; i < receipt.replies_size(); ++i) {
    const pbft::v1::Envelope& r = receipt.replies(i);
    pbft::v1::Reply reply;
    if (r.type() != pbft::v1::MESSAGE_TYPE_REPLY || !verifier.Verify(r).ok() ||
        !reply.ParseFromString(r.payload()) ||
        reply.replica_id() != r.sender() ||
        reply.client_id() != request.client_id() ||
        reply.request_number() != request.request_number() ||
        reply.result() != receipt.result() ||
        !repliers.insert(r.sender()).second) {
      return Bad(absl::StrCat(
          "reply ", i,
          " is not a valid, distinct signed reply with this result"));
    }
  }
  if (repliers.size() < cluster.weak_quorum()) {
    return Bad(absl::StrCat(repliers.size(),
                            " replies, need f+1 = ", cluster.weak_quorum()));
  }
  return absl::OkStatus();
}

}  // namespace

int FindTransferOperation(const v1::OperationBatch& batch,
                          const v1::Uint128& id, int from) {
  for (int j = from; j < batch.operations_size(); ++j) {
    const v1::Operation& op = batch.operations(j);
    if ((op.has_transfer() && SameId(op.transfer().id(), id)) ||
        (op.has_mint() && SameId(op.mint().id(), id))) {
      return j;
    }
  }
  return -1;
}

absl::StatusOr<ReceiptSummary> VerifyReceipt(const Cluster& cluster,
                                             const v1::Receipt& receipt) {
  const EnvelopeVerifier verifier = cluster.MakeVerifier();
  const v1::BlockHeader& h = receipt.header();
  pbft::v1::Request request;
  absl::Status s = CheckRequest(verifier, receipt, &request);
  if (!s.ok()) return s;
  s = CheckPaths(receipt);
  if (!s.ok()) return s;
  // 3. 2f+1 replicas committed that batch at (view, height).
  s = VerifyCommitCertificate(cluster, verifier, receipt.view(), h.height(),
                              *Digest::FromBytes(h.batch_digest()),
                              receipt.certificate());
  if (!s.ok()) return Bad(s.message());
  ReceiptSummary summary;
  summary.height = h.height();
  summary.view = receipt.view();
  summary.transfer = receipt.transfer();
  summary.block_hash = BlockHash(h);
  if (receipt.replies_size() > 0) {
    s = CheckReplies(cluster, verifier, receipt, request);
    if (!s.ok()) return s;
    summary.result_certified = true;
  }
  return summary;
}

}  // namespace pbft::ledger
