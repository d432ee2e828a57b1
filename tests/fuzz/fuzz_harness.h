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

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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

// What the harness remembers across inputs (signatures, envelopes and
// batches that verified): a table of fixed size from a 32-byte key to at
// most 64 bytes, allocated once. Remembering allocates nothing, so an input
// that adds to it frees what it allocates: libFuzzer runs an input a second
// time, to look for a leak, whenever it allocated more than it freed. A new
// key takes the slot of the one it hashes to.
class Memo {
 public:
  static constexpr size_t kValueMax = 64;
  // `slots` a power of two.
  explicit Memo(size_t slots) : slots_(slots) {
    CHECK_EQ(slots & (slots - 1), 0u);
  }
  // The value remembered under `key`, if any.
  bool Find(const Digest& key, std::string* value) const;
  void Put(const Digest& key, absl::string_view value);
  // The key of (`tag`, `a`, `b`, `bytes`).
  static Digest Key(absl::string_view tag, uint64_t a, uint64_t b,
                    absl::string_view bytes);

 private:
  struct Slot {
    Digest key;
    bool used = false;
    uint8_t size = 0;
    std::array<char, kValueMax> value{};
  };
  Slot& SlotOf(const Digest& key) {
    return slots_[absl::HashOf(key) & (slots_.size() - 1)];
  }
  const Slot& SlotOf(const Digest& key) const {
    return slots_[absl::HashOf(key) & (slots_.size() - 1)];
  }

  std::vector<Slot> slots_;
};

// The cluster, its keys and the checks a replica runs on what arrives.
class TestCluster {
 public:
  TestCluster()
      // Nothing is queued: the pool is used only through Check().
      : verifier_(factory_.cluster().MakeVerifier()),
        limits_(WireLimits::For(kReplicas, FuzzParams())),
        pool_(&verifier_, 1, limits_, QueueShare{1, 1},
              [](pbft::v1::Envelope) {}),
        remembered_(1 << 16) {}

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
  // What `signer` (a core's, replica `id`'s) signs, remembered the same
  // way: the cores of successive inputs send mostly the same messages.
  pbft::v1::Envelope SignAsCore(const core::Signer& signer, uint32_t id,
                                pbft::v1::MessageType type,
                                std::string payload) const;
  // EnvelopeVerifier::Check(e) == kOk, with the envelopes that passed
  // remembered (by VerifiedCache::Key: type, sender, payload, signature).
  bool Verified(const pbft::v1::Envelope& e);
  // VerifyBlockCommit (the ledger's check of an executed batch), with the
  // batches that passed remembered.
  absl::Status VerifyBatch(const ledger::v1::BlockHeader& header,
                           const core::CommittedBatch& b,
                           pbft::v1::PrePrepare* pp);
  // The same envelope signed again by the key of the sender it claims.
  // Signs `e` again as its claimed sender; its other fields (a
  // PRE-PREPARE's batch beside the header) stay.
  void Resign(pbft::v1::Envelope* e) const {
    e->set_signature(Sign(e->type(), e->sender(), e->payload()).signature());
  }

 private:
  pbft::v1::Envelope SignNow(pbft::v1::MessageType type, uint64_t sender,
                             std::string payload) const;
  // `sign(payload)`, or the signature remembered under (`tag`, type,
  // sender, payload); one remembered answer in 1,024 is signed again and
  // compared.
  pbft::v1::Envelope SignRemembered(
      absl::string_view tag, pbft::v1::MessageType type, uint64_t sender,
      std::string payload,
      const std::function<pbft::v1::Envelope(std::string)>& sign) const;

  test::BlockFactory factory_;
  EnvelopeVerifier verifier_;
  WireLimits limits_;
  net::VerifyPool pool_;
  // Signatures (by type, sender and payload, or for a core by replica,
  // type and payload), envelopes and batches that verified.
  mutable Memo remembered_;
};

// A core's signer: the replica's own core::Ed25519Signer, with what it
// signed remembered across inputs (TestCluster::SignAsCore). Ed25519
// signatures are deterministic, so a remembered envelope is the one the
// signer would make again.
class CoreSigner final : public core::Signer {
 public:
  CoreSigner(const TestCluster* tc, uint32_t id)
      : tc_(tc), id_(id), signer_(&tc->factory().replica(id)) {}
  pbft::v1::Envelope Sign(pbft::v1::MessageType type,
                          std::string payload) const override {
    return tc_->SignAsCore(signer_, id_, type, std::move(payload));
  }

 private:
  const TestCluster* tc_;
  uint32_t id_;
  core::Ed25519Signer signer_;
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
  CoreSigner signer_;
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
