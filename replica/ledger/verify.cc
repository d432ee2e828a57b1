#include "replica/ledger/verify.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/merkle.h"
#include "common/proto_names.h"
#include "leveldb/db.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"

namespace pbft::ledger {
namespace {

// A verification failure: which check, and the message.
struct Failure {
  std::string check;
  std::string message;
};

absl::Status Fail(absl::string_view check, absl::string_view message) {
  // The check kind travels in the payload-free message prefix "kind: ".
  return absl::FailedPreconditionError(absl::StrCat(check, ": ", message));
}

std::string Hex(absl::string_view bytes, size_t max = 16) {
  std::string h = absl::BytesToHexString(bytes);
  return h.size() > max ? h.substr(0, max) : h;
}

// Splits "kind: message" produced by Fail().
Failure Split(const absl::Status& s) {
  const std::string m(s.message());
  const size_t colon = m.find(": ");
  if (colon == std::string::npos) return {"error", m};
  return {m.substr(0, colon), m};
}

}  // namespace

absl::Status VerifyBlockRecord(const Cluster& cluster,
                               const EnvelopeVerifier& verifier,
                               uint64_t height, const Digest& previous_hash,
                               const v1::Block& block, bool client_signatures) {
  const v1::BlockHeader& h = block.header();
  if (h.height() != height) {
    return Fail("header", absl::StrCat("height field is ", h.height()));
  }
  if (h.previous_hash() != previous_hash.view()) {
    return Fail("hash_link",
                absl::StrCat("previous_hash ", Hex(h.previous_hash()),
                             " does not match block ", height - 1, "'s hash ",
                             Hex(previous_hash.view())));
  }
  absl::StatusOr<Digest> batch_digest = Digest::FromBytes(h.batch_digest());
  if (!batch_digest.ok() || h.requests_root().size() != Digest::kSize ||
      h.results_root().size() != Digest::kSize ||
      h.state_digest().size() != Digest::kSize) {
    return Fail("header", "a digest field is not 32 bytes");
  }
  pbft::v1::PrePrepare pp;
  absl::Status s =
      VerifyBlockCommit(cluster, verifier, h, block.view(), block.pre_prepare(),
                        block.certificate(), &pp);
  if (!s.ok()) return s;
  const auto& requests = BatchOf(block.pre_prepare(), pp);
  const Digest root = RequestsRoot(requests);
  if (root.view() != h.requests_root()) {
    return Fail(
        "merkle_root",
        absl::StrCat("requests_root ", Hex(h.requests_root()),
                     " is not the root of the block's ", requests.size(),
                     " requests (", Hex(root.view()), ")"));
  }
  if (BatchDigestFromRoot(static_cast<uint32_t>(requests.size()), root) !=
      *batch_digest) {
    return Fail("batch_digest",
                "header batch_digest is not the digest of the requests");
  }
  if (block.results_size() != requests.size()) {
    return Fail("results", absl::StrCat(block.results_size(), " results for ",
                                        requests.size(), " requests"));
  }
  const Digest results_root = ResultsRoot(block.results());
  if (results_root.view() != h.results_root()) {
    return Fail("results_root",
                absl::StrCat("results_root ", Hex(h.results_root()),
                             " is not the root of the block's results (",
                             Hex(results_root.view()), ")"));
  }
  if (client_signatures) {
    for (int i = 0; i < requests.size(); ++i) {
      const pbft::v1::Envelope& r = requests[i];
      s = r.type() == pbft::v1::MESSAGE_TYPE_REQUEST
              ? verifier.Verify(r)
              : absl::InvalidArgumentError("not a REQUEST envelope");
      if (!s.ok()) {
        return Fail("client_signature",
                    absl::StrCat("request ", i, " (client ", r.sender(),
                                 "): ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// Compares the stored state with the re-executed one,
// key by key, naming the first difference.
absl::Status CompareState(leveldb::DB* stored, leveldb::DB* replayed) {
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<leveldb::Iterator> a(stored->NewIterator(ro));
  std::unique_ptr<leveldb::Iterator> b(replayed->NewIterator(ro));
  auto relevant = [](const leveldb::Slice& k) {
    return internal::IsStateKey(absl::string_view(k.data(), k.size()));
  };
  auto skip = [&](leveldb::Iterator* it) {
    while (it->Valid() && !relevant(it->key())) it->Next();
  };
  a->SeekToFirst();
  b->SeekToFirst();
  for (;;) {
    skip(a.get());
    skip(b.get());
    if (!a->Valid() || !b->Valid()) break;
    if (a->key() != b->key()) {
      const bool extra = a->key().compare(b->key()) < 0;
      const leveldb::Slice k = extra ? a->key() : b->key();
      return Fail("state",
                  absl::StrCat(extra ? "stored record " : "missing record ",
                               Hex(absl::string_view(k.data(), k.size()), 48),
                               extra ? " is not produced by re-execution"
                                     : " that re-execution produces"));
    }
    if (a->value() != b->value()) {
      return Fail(
          "state",
          absl::StrCat(
              "record ",
              Hex(absl::string_view(a->key().data(), a->key().size()), 48),
              " differs from re-execution"));
    }
    a->Next();
    b->Next();
  }
  if (!a->status().ok()) return Fail("storage", a->status().ToString());
  if (!b->status().ok()) return Fail("storage", b->status().ToString());
  if (a->Valid() || b->Valid()) {
    return Fail("state", absl::StrCat(a->Valid() ? "stored" : "re-executed",
                                      " state has records the other lacks"));
  }
  return absl::OkStatus();
}

// Checks stored block `height` against the trust root and the previous
// block's hash, re-executes it on `replay` and compares the results and the
// state digest it recorded; `previous` becomes its hash.
absl::Status ReplayBlock(const Cluster& trust, const EnvelopeVerifier& verifier,
                         uint64_t height, const v1::Block& block,
                         bool client_signatures, Ledger* replay,
                         Digest* previous, uint64_t* requests) {
  absl::Status s = VerifyBlockRecord(trust, verifier, height, *previous, block,
                                     client_signatures);
  if (!s.ok()) return s;
  const v1::BlockHeader& h = block.header();
  BlockInput input;
  input.view = block.view();
  input.seq = height;
  input.timestamp_ms = h.timestamp_ms();
  input.batch_digest = *Digest::FromBytes(h.batch_digest());
  input.pre_prepare = block.pre_prepare();
  input.certificate = block.certificate();
  absl::StatusOr<BlockResult> result = replay->ApplyBlock(input);
  if (!result.ok()) return Fail("replay", result.status().message());
  for (size_t i = 0; i < result->outcomes.size(); ++i) {
    ++*requests;
    if (result->outcomes[i].result != block.results(static_cast<int>(i))) {
      return Fail("results", absl::StrCat("stored result of request ", i,
                                          " differs from re-execution"));
    }
  }
  if (result->state_digest.view() != h.state_digest()) {
    return Fail("state_digest", absl::StrCat("recorded ", Hex(h.state_digest()),
                                             ", re-execution gives ",
                                             Hex(result->state_digest.view())));
  }
  CHECK_EQ(result->block_hash, BlockHash(h));  // All fields match.
  *previous = result->block_hash;
  return absl::OkStatus();
}

}  // namespace

ChainVerifyReport VerifyDataDir(const std::string& data_dir,
                                const Cluster* trust_root,
                                const ChainVerifyOptions& options) {
  ChainVerifyReport report;
  auto fail = [&](uint64_t height, const absl::Status& s) {
    Failure f = Split(s);
    report.ok = false;
    report.failed_height = height;
    report.failed_check = f.check;
    report.error = height == 0
                       ? absl::StrCat("genesis/store: ", f.message)
                       : absl::StrCat("block ", height, ": ", f.message);
    return report;
  };

  LedgerOptions source_options;
  source_options.paranoid_checks = true;
  source_options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<Ledger>> source =
      Ledger::OpenExisting(data_dir, source_options);
  if (!source.ok()) return fail(0, Fail("storage", source.status().message()));
  const Cluster& trust =
      trust_root != nullptr ? *trust_root : (*source)->cluster();
  report.cluster_id = trust.cluster_id();
  const EnvelopeVerifier verifier = trust.MakeVerifier();

  std::unique_ptr<leveldb::Env> memenv(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  LedgerOptions replay_options;
  replay_options.env = memenv.get();
  replay_options.sync = false;  // In memory: nothing to make durable.
  absl::StatusOr<std::unique_ptr<Ledger>> replay =
      Ledger::Open(trust, "/verify-replay", replay_options);
  if (!replay.ok()) return fail(0, Fail("replay", replay.status().message()));

  if ((*replay)->genesis_state_digest() != (*source)->genesis_state_digest()) {
    return fail(0, Fail("genesis",
                        "the stored genesis state digest differs from the "
                        "trust root's genesis"));
  }
  const v1::ChainHead head = (*source)->head();
  report.head_height = head.height();

  Digest previous;  // Zero before block 1.
  for (uint64_t height = 1; height <= head.height(); ++height) {
    absl::StatusOr<v1::Block> block = (*source)->GetStoredBlock(height);
    if (!block.ok())
      return fail(height, Fail("storage", block.status().message()));
    absl::Status s =
        ReplayBlock(trust, verifier, height, *block, options.client_signatures,
                    replay->get(), &previous, &report.requests);
    if (!s.ok()) return fail(height, s);
    report.block_hashes.push_back(previous);
    report.blocks_verified = height;
  }
  if (previous.view() != head.block_hash() && head.height() > 0) {
    return fail(head.height(),
                Fail("head", "chain head hash differs from the last block's"));
  }
  if ((*source)->GetStoredBlock(head.height() + 1).ok()) {
    return fail(head.height() + 1,
                Fail("head", "a block exists beyond the chain head"));
  }
  if ((*replay)->state_digest().view() != head.state_digest()) {
    return fail(head.height(), Fail("state_digest",
                                    "chain head state digest differs from "
                                    "re-execution"));
  }
  absl::Status s = CompareState((*source)->TEST_db(), (*replay)->TEST_db());
  if (!s.ok()) return fail(head.height(), s);
  report.ok = true;
  report.head_hash = (*replay)->head().block_hash().empty()
                         ? Digest()
                         : *Digest::FromBytes((*replay)->head().block_hash());
  report.state_digest = (*replay)->state_digest();
  return report;
}

ChainComparison CompareChains(const std::vector<ChainVerifyReport>& reports) {
  ChainComparison c;
  if (reports.empty()) return c;
  c.common_height = reports[0].blocks_verified;
  for (const ChainVerifyReport& r : reports) {
    CHECK(r.ok);
    CHECK_EQ(r.block_hashes.size(), r.blocks_verified);
    c.common_height = std::min(c.common_height, r.blocks_verified);
  }
  // Hash-linked and verified: equal at common_height means equal below it;
  // the scan only finds where a fork starts.
  for (size_t i = 1; i < reports.size(); ++i) {
    const uint64_t h = c.common_height;
    if (h == 0 ||
        reports[i].block_hashes[h - 1] == reports[0].block_hashes[h - 1]) {
      continue;
    }
    uint64_t fork = 1;
    while (reports[i].block_hashes[fork - 1] ==
           reports[0].block_hashes[fork - 1]) {
      ++fork;
    }
    c.fork_height = fork;
    c.fork_first = 0;
    c.fork_second = i;
    return c;
  }
  c.agree = true;
  if (c.common_height > 0) {
    c.common_hash = reports[0].block_hashes[c.common_height - 1];
  }
  return c;
}

}  // namespace pbft::ledger
