// The core-test scenario: one core of a 4-replica cluster (f = 1, quorum
// 3) driven by hand, every input a line of the script, so that each test
// reads as a story and names the section of Castro & Liskov (OSDI '99)
// whose rule it checks. Messages are signed with the simulator's fake
// signer. Test-only.
#ifndef PBFT_LEDGER_TESTS_CORE_SCENARIO_H_
#define PBFT_LEDGER_TESTS_CORE_SCENARIO_H_

#include <memory>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "gtest/gtest.h"
#include "replica/core/core.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::core::test {

using sim::SimCrypto;

constexpr uint64_t kNowMs = 1'000'000;

class Scenario {
 public:
  explicit Scenario(uint32_t me, ProtocolParams params = Params())
      : crypto_(4, 3, /*real=*/false) {
    for (uint32_t i = 0; i < 4; ++i)
      replica_.push_back(crypto_.ReplicaSigner(i));
    for (uint64_t c = 1; c <= 3; ++c)
      client_.push_back(crypto_.ClientSigner(c));
    Options o;
    o.id = ReplicaId(me);
    o.n = 4;
    o.f = 1;
    o.params = params;
    core_ = std::make_unique<Core>(o, replica_[me].get(), &crypto_.verifier());
    core_->Tick(kNowMs);
    // The links are up: every peer was heard from (a core that has not
    // heard from 2f peers holds its view-change timer).
    for (uint32_t i = 0; i < 4; ++i) {
      if (i != me) core_->Step(FetchRequest(i));
    }
    Take();
  }

  // An idle probe from `from` in view 0: the core only notes its view.
  v1::Envelope FetchRequest(uint32_t from) {
    v1::FetchRequest req;
    req.set_replica_id(from);
    req.set_from_seq(1);
    req.set_max_blocks(1);
    return replica_[from]->Sign(v1::MESSAGE_TYPE_FETCH_REQUEST,
                                req.SerializeAsString());
  }

  static ProtocolParams Params() {
    ProtocolParams p;
    p.checkpoint_interval = 4;
    p.watermark_window = 8;
    p.batch_requests_max = 2;
    p.batch_delay_ticks = 1;
    p.request_queue_max = 3;
    p.timestamp_skew_max_ms = 1000;
    return p;
  }

  Core& core() { return *core_; }
  Ready& ready() { return ready_; }
  // Every reply of every Ready so far.
  const std::vector<ClientReply>& replies() const { return replies_; }

  // Runs one input, then collects the Ready and checks the invariants.
  void Take() {
    ready_ = core_->TakeReady();
    for (const ClientReply& r : ready_.replies) replies_.push_back(r);
    ASSERT_TRUE(core_->Invariants().ok()) << core_->Invariants().message();
  }
  void Step(const v1::Envelope& e) {
    core_->Step(e);
    Take();
  }
  void Tick(uint64_t now_ms = kNowMs) {
    core_->Tick(now_ms);
    Take();
  }

  v1::Envelope Request(uint64_t client, uint64_t number,
                       std::string op = "op") {
    v1::Request r;
    r.set_client_id(client);
    r.set_request_number(number);
    r.set_operation(op);
    return client_[client - 1]->Sign(v1::MESSAGE_TYPE_REQUEST,
                                     r.SerializeAsString());
  }
  v1::Envelope PrePrepare(uint32_t from, uint64_t view, uint64_t seq,
                          std::vector<v1::Envelope> requests,
                          uint64_t ts = kNowMs,
                          const Digest* digest = nullptr) {
    v1::PrePrepare pp;
    pp.set_view(view);
    pp.set_seq(seq);
    pp.set_timestamp_ms(ts);
    google::protobuf::RepeatedPtrField<v1::Envelope> batch(requests.begin(),
                                                           requests.end());
    pp.set_batch_digest((digest ? *digest : BatchDigest(batch)).ToBytes());
    // §4.2: the primary signs the header; the batch travels beside it.
    v1::Envelope e = replica_[from]->Sign(v1::MESSAGE_TYPE_PRE_PREPARE,
                                          pp.SerializeAsString());
    e.mutable_batch()->Swap(&batch);
    return e;
  }
  static Digest DigestOf(const v1::Envelope& pre_prepare) {
    v1::PrePrepare pp;
    pp.ParseFromString(pre_prepare.payload());
    return *Digest::FromBytes(pp.batch_digest());
  }
  v1::Envelope Prepare(uint32_t from, uint64_t view, uint64_t seq,
                       const Digest& d) {
    v1::Prepare m;
    m.set_view(view);
    m.set_seq(seq);
    m.set_batch_digest(d.ToBytes());
    m.set_replica_id(from);
    return replica_[from]->Sign(v1::MESSAGE_TYPE_PREPARE,
                                m.SerializeAsString());
  }
  v1::Envelope Commit(uint32_t from, uint64_t view, uint64_t seq,
                      const Digest& d) {
    v1::Commit m;
    m.set_view(view);
    m.set_seq(seq);
    m.set_batch_digest(d.ToBytes());
    m.set_replica_id(from);
    return replica_[from]->Sign(v1::MESSAGE_TYPE_COMMIT, m.SerializeAsString());
  }
  v1::Envelope Checkpoint(uint32_t from, uint64_t seq, const Digest& d) {
    v1::Checkpoint m;
    m.set_seq(seq);
    m.set_state_digest(d.ToBytes());
    m.set_replica_id(from);
    return replica_[from]->Sign(v1::MESSAGE_TYPE_CHECKPOINT,
                                m.SerializeAsString());
  }

  // Messages of `type` in the last Ready.
  std::vector<Outbound> Sent(v1::MessageType type) const {
    std::vector<Outbound> out;
    for (const Outbound& o : ready_.messages) {
      if (o.envelope.type() == type) out.push_back(o);
    }
    return out;
  }
  uint64_t Dropped(DropReason r) const {
    return core_->stats().dropped[static_cast<size_t>(r)];
  }

  // Drives seq `seq` with digest `d`, pre-prepared by this core as the
  // primary of view 0, to committed-local: prepares and commits from
  // backups 1 and 2 (with its own commit, a quorum of 3).
  void CommitAtPrimary(uint64_t seq, const Digest& d) {
    for (uint32_t b = 1; b <= 2; ++b) Step(Prepare(b, 0, seq, d));
    for (uint32_t b = 1; b <= 2; ++b) Step(Commit(b, 0, seq, d));
  }

  // Drives seq `seq` (pre-prepared by 0 in view 0) to committed-local at a
  // backup: pre-prepare, prepares from the other backups, commits from the
  // others. Returns the batches handed out for execution on the way.
  std::vector<CommittedBatch> CommitAtBackup(uint64_t seq,
                                             const v1::Envelope& pp,
                                             uint32_t me) {
    std::vector<CommittedBatch> out;
    auto collect = [&] {
      for (auto& b : ready_.execute) out.push_back(b);
    };
    const Digest d = DigestOf(pp);
    Step(pp);
    collect();
    for (uint32_t b = 1; b < 4; ++b) {
      if (b != me) Step(Prepare(b, 0, seq, d)), collect();
    }
    for (uint32_t r = 0; r < 4; ++r) {
      if (r != me) Step(Commit(r, 0, seq, d)), collect();
    }
    return out;
  }

 private:
  SimCrypto crypto_;
  std::vector<std::unique_ptr<Signer>> replica_;
  std::vector<std::unique_ptr<Signer>> client_;
  std::unique_ptr<Core> core_;
  Ready ready_;
  std::vector<ClientReply> replies_;
};

}  // namespace pbft::core::test

#endif  // PBFT_LEDGER_TESTS_CORE_SCENARIO_H_
