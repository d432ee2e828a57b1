// Shared by the structure-aware fuzz targets (client_fuzz, peer_fuzz,
// fetch_fuzz, ledger_fuzz) and fuzz_seeds.cc, which writes their seeds.
//
// Input format: one header byte, then records
//   [u8 kind][u8 sender][u16 little-endian length][length bytes of body]
// until the input ends (a short last record takes what is left). What kind,
// sender and body mean is each target's (see its file comment).
//
// The test cluster is tests/ledger/block_factory.h's: 4 replicas and 3
// clients with fixed keys, so seeds signed by fuzz_seeds.cc verify in the
// targets, and a target can sign a fuzzed payload with a real key (the
// fuzzer then reaches the logic behind the signature checks).
//
// CoreHarness drives one pbft::core::Core the way the replica's shell does
// (Persist, Send, Execute, Deliver in a Ready's order) and asserts after
// every input what the shell relies on: Core::Invariants() holds, batches
// come out for execution in seq order, each exactly once, each with a
// PRE-PREPARE whose batch digest it names and a commit certificate the
// ledger accepts, and every message it sends passes the checks a correct
// peer applies before its core (VerifyPool::Check).
#ifndef PBFT_LEDGER_TESTS_FUZZ_FUZZ_HARNESS_H_
#define PBFT_LEDGER_TESTS_FUZZ_FUZZ_HARNESS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/wire_limits.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/core/core.h"
#include "replica/core/crypto.h"
#include "replica/ledger/block.h"
#include "replica/net/verify_pool.h"
#include "tests/ledger/block_factory.h"

namespace pbft::fuzz {

struct Record {
  uint8_t kind = 0;
  uint8_t sender = 0;
  std::string body;
};

// At most `max` records; the header byte goes to `*header`.
inline std::vector<Record> ParseRecords(const uint8_t* data, size_t size,
                                        size_t max, uint8_t* header) {
  std::vector<Record> out;
  *header = size > 0 ? data[0] : 0;
  size_t i = size > 0 ? 1 : 0;
  while (i + 2 <= size && out.size() < max) {
    Record r;
    r.kind = data[i];
    r.sender = data[i + 1];
    i += 2;
    size_t len = 0;
    if (i + 2 <= size) len = data[i] | (static_cast<size_t>(data[i + 1]) << 8);
    i = std::min(size, i + 2);
    len = std::min(len, size - i);
    r.body.assign(reinterpret_cast<const char*>(data + i), len);
    i += len;
    out.push_back(std::move(r));
  }
  return out;
}

inline void AppendRecord(std::string* out, uint8_t kind, uint8_t sender,
                         const std::string& body) {
  CHECK_LE(body.size(), 0xffffu);
  out->push_back(static_cast<char>(kind));
  out->push_back(static_cast<char>(sender));
  out->push_back(static_cast<char>(body.size() & 0xff));
  out->push_back(static_cast<char>(body.size() >> 8));
  out->append(body);
}

// Records a target reads from one input, at most.
constexpr size_t kRecordsMax = 256;

constexpr uint32_t kReplicas = 4;
constexpr uint32_t kClients = 3;

// Small protocol parameters, so checkpoints, watermarks, fetches and view
// changes are a few messages away.
inline ProtocolParams FuzzParams() {
  ProtocolParams p;
  p.checkpoint_interval = 4;
  p.watermark_window = 8;
  p.view_change_timeout_ticks = 20;
  p.batch_requests_max = 8;
  p.request_queue_max = 64;
  p.client_queue_max = 8;
  return p;
}

inline core::Options CoreOptions(uint32_t id) {
  core::Options o;
  o.id = ReplicaId(id);
  o.n = kReplicas;
  o.f = 1;
  o.params = FuzzParams();
  o.retransmit_ticks = 10;
  o.fetch_interval_ticks = 10;
  o.idle_probe_interval_ticks = 20;
  o.fetch_blocks_max = 8;
  CHECK_OK(o.Validate());
  return o;
}

// What the harness's ledger stand-in reports after executing `seq`.
inline Digest StateDigestFor(uint64_t seq) {
  return crypto::Sha256(absl::StrCat("fuzz-state-", seq));
}

// The cluster, its keys and the checks a replica runs on what arrives.
class TestCluster {
 public:
  TestCluster()
      // Nothing is queued: the pool is used only through Check().
      : verifier_(factory_.cluster().MakeVerifier()),
        limits_(WireLimits::For(kReplicas, FuzzParams())),
        pool_(&verifier_, 1, limits_, QueueShare{1, 1},
              [](pbft::v1::Envelope) {}) {}

  const test::BlockFactory& factory() const { return factory_; }
  const Cluster& cluster() const { return factory_.cluster(); }
  const EnvelopeVerifier& verifier() const { return verifier_; }
  const WireLimits& limits() const { return limits_; }
  net::VerifyPool& pool() { return pool_; }

  // `payload` signed by replica `sender` (< kReplicas) or client `sender`
  // (1..kClients) for a REQUEST; any other sender gets a signature by
  // replica 0's key under its claimed id (an impostor).
  // Ed25519 signatures are deterministic, so they are remembered: the
  // fuzzer's inputs repeat most of their records.
  pbft::v1::Envelope Sign(pbft::v1::MessageType type, uint64_t sender,
                          std::string payload) const;
  // VerifyBlockCommit (the ledger's check of an executed batch), with the
  // batches that passed remembered.
  absl::Status VerifyBatch(const ledger::v1::BlockHeader& header,
                           const core::CommittedBatch& b,
                           pbft::v1::PrePrepare* pp);
  // The same envelope signed again by the key of the sender it claims.
  void Resign(pbft::v1::Envelope* e) const {
    *e = Sign(e->type(), e->sender(), e->payload());
  }

 private:
  pbft::v1::Envelope SignNow(pbft::v1::MessageType type, uint64_t sender,
                             std::string payload) const;

  test::BlockFactory factory_;
  EnvelopeVerifier verifier_;
  WireLimits limits_;
  net::VerifyPool pool_;
  mutable absl::flat_hash_map<std::string, std::string> signatures_;
  absl::flat_hash_set<Digest> verified_batches_;
};

// The core's verifier of nested envelopes, as in the replica: the
// verification pool's VerifyNow (signature and wire checks, cached).
class PoolVerifier final : public core::Verifier {
 public:
  explicit PoolVerifier(net::VerifyPool* pool) : pool_(pool) {}
  bool Verify(const pbft::v1::Envelope& e) const override {
    return pool_->VerifyNow(e).ok();
  }

 private:
  net::VerifyPool* pool_;
};

// Signs again every envelope nested in a PRE-PREPARE or FETCH_RESPONSE
// payload with its claimed sender's key; with `fix_digests`, also makes
// each PRE-PREPARE's batch digest (and its certificate's COMMITs') that of
// its requests. Other payloads are returned unchanged.
std::string ResignNested(const TestCluster& tc, pbft::v1::MessageType type,
                         const std::string& payload, bool fix_digests);

class CoreHarness {
 public:
  CoreHarness(TestCluster* tc, uint32_t id);

  // A replica message as the shell hands it over: VerifyPool::Check first,
  // then Core::Step. True if it reached the core.
  bool Deliver(const pbft::v1::Envelope& e);
  // One peer_fuzz record (see peer_fuzz.cc): ticks, or a message signed
  // by the harness (nested envelopes too), or a whole envelope unsigned.
  // True if a message reached the core.
  bool Apply(const Record& r);
  // A client request admitted by the client service (Core::OnRequest).
  void Request(const pbft::v1::Envelope& e);
  void Tick(uint32_t ticks);

  core::Core& core() { return *core_; }
  uint64_t executed() const { return executed_; }
  // What the core sent and executed so far (fuzz_seeds.cc routes and
  // serves them between cores); kept only if `keep` was set.
  void set_keep(bool keep) { keep_ = keep; }
  std::vector<core::Outbound>& sent() { return sent_; }
  const std::vector<core::CommittedBatch>& batches() const { return batches_; }

 private:
  void Drain();
  void CheckBatch(const core::CommittedBatch& b);
  void CheckSent(const core::Outbound& m);

  TestCluster* tc_;
  core::Ed25519Signer signer_;
  PoolVerifier verifier_;
  std::unique_ptr<core::Core> core_;
  uint64_t executed_ = 0;
  uint64_t now_ms_ = 1'700'000'000'000;
  bool keep_ = false;
  std::vector<core::Outbound> sent_;
  std::vector<core::CommittedBatch> batches_;
};

}  // namespace pbft::fuzz

#endif  // PBFT_LEDGER_TESTS_FUZZ_FUZZ_HARNESS_H_
