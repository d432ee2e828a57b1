// Protocol scenarios for the PBFT core, one replica driven by hand. Each
// test reads as a script and names the section of Castro & Liskov (OSDI
// '99) whose rule it checks. Messages are signed with the simulator's fake
// signer; the core under test is replica `me` of a 4-replica cluster
// (f = 1, quorum 3).
#include <string>
#include <vector>

#include "common/envelope.h"
#include "gtest/gtest.h"
#include "replica/core/core.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_crypto.h"

namespace pbft {
namespace {

using sim::SimCrypto;

constexpr uint64_t kNowMs = 1'000'000;

class Scenario {
 public:
  explicit Scenario(uint32_t me, ledger::ProtocolParams params = Params())
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
    Take();
  }

  static ledger::ProtocolParams Params() {
    ledger::ProtocolParams p;
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
    for (auto& r : requests) *pp.add_requests() = r;
    pp.set_batch_digest(
        (digest ? *digest : ledger::BatchDigest(pp.requests())).ToBytes());
    return replica_[from]->Sign(v1::MESSAGE_TYPE_PRE_PREPARE,
                                pp.SerializeAsString());
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

// --- §4.2 normal case: pre-prepare acceptance -------------------------------

TEST(NormalCase, BackupAcceptsPrePrepareFromPrimaryAndMulticastsPrepare_4_2) {
  Scenario s(/*me=*/1);
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(1, 1)}));
  auto prepares = s.Sent(v1::MESSAGE_TYPE_PREPARE);
  ASSERT_EQ(prepares.size(), 1u);
  EXPECT_TRUE(prepares[0].broadcast);
  // Persist before send: the accepted pre-prepare and our prepare.
  ASSERT_EQ(s.ready().persist.entries.size(), 2u);
  EXPECT_EQ(s.ready().persist.entries[0].type(), v1::MESSAGE_TYPE_PRE_PREPARE);
  EXPECT_EQ(s.ready().persist.entries[1].type(), v1::MESSAGE_TYPE_PREPARE);
}

TEST(NormalCase, BackupRejectsPrePrepareFromNonPrimary_4_2) {
  Scenario s(1);
  s.Step(s.PrePrepare(/*from=*/2, /*view=*/0, 1, {s.Request(1, 1)}));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PREPARE).empty());
  EXPECT_EQ(s.Dropped(DropReason::kWrongSender), 1u);
}

TEST(NormalCase, BackupRejectsSecondPrePrepareWithOtherDigest_4_2) {
  Scenario s(1);
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(1, 1)}));
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_PREPARE).size(), 1u);
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(2, 1)}));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PREPARE).empty());
  EXPECT_EQ(s.Dropped(DropReason::kConflictingPrePrepare), 1u);
}

TEST(NormalCase, BackupRejectsDigestThatDoesNotMatchBatch_4_2) {
  Scenario s(1);
  auto other = s.Request(2, 1);
  google::protobuf::RepeatedPtrField<v1::Envelope> reqs;
  *reqs.Add() = other;
  const Digest wrong = ledger::BatchDigest(reqs);
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(1, 1)}, kNowMs, &wrong));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PREPARE).empty());
  EXPECT_EQ(s.Dropped(DropReason::kDigestMismatch), 1u);
}

TEST(NormalCase, BackupRejectsBatchWithForgedClientRequest_4_2) {
  Scenario s(1);
  v1::Envelope forged = s.Request(1, 1);
  forged.set_payload(forged.payload() + "x");  // Signature no longer fits.
  s.Step(s.PrePrepare(0, 0, 1, {forged}));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PREPARE).empty());
  EXPECT_EQ(s.Dropped(DropReason::kBadRequest), 1u);
}

TEST(NormalCase, BackupRejectsSeqOutsideWatermarks_4_2) {
  Scenario s(1);  // h = 0, L = 8: window (0, 8].
  s.Step(s.PrePrepare(0, 0, 9, {s.Request(1, 1)}));
  s.Step(s.PrePrepare(0, 0, 0, {s.Request(1, 1)}));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PREPARE).empty());
  EXPECT_EQ(s.Dropped(DropReason::kOutOfWindow), 2u);
  s.Step(s.PrePrepare(0, 0, 8, {s.Request(1, 1)}));
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_PREPARE).size(), 1u);
}

TEST(NormalCase, BackupRejectsMessagesForAnotherView_4_2) {
  Scenario s(1);
  s.Step(s.PrePrepare(2, /*view=*/2, 1, {s.Request(1, 1)}));
  s.Step(s.Prepare(2, 3, 1, Digest()));
  EXPECT_EQ(s.Dropped(DropReason::kWrongView), 2u);
}

TEST(NormalCase, TimestampMustBeNearOwnClockAndNeverGoBack_4_2) {
  Scenario s(1);
  // Too far ahead of the backup's clock (skew bound 1000 ms).
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(1, 1)}, kNowMs + 5000));
  EXPECT_EQ(s.Dropped(DropReason::kTimestamp), 1u);
  // Seq 2 at t, then seq 3 earlier than t: goes back.
  s.Step(s.PrePrepare(0, 0, 2, {s.Request(1, 1)}, kNowMs + 500));
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_PREPARE).size(), 1u);
  s.Step(s.PrePrepare(0, 0, 3, {s.Request(2, 1)}, kNowMs + 100));
  EXPECT_EQ(s.Dropped(DropReason::kTimestamp), 2u);
  // And seq 1 later than seq 2's timestamp goes back too.
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(3, 1)}, kNowMs + 600));
  EXPECT_EQ(s.Dropped(DropReason::kTimestamp), 3u);
  s.Step(s.PrePrepare(0, 0, 1, {s.Request(3, 1)}, kNowMs + 400));
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_PREPARE).size(), 1u);
}

// --- §4.2 prepared and committed-local ---------------------------------------

TEST(NormalCase, PreparedNeedsTwoFMatchingPreparesFromDistinctBackups_4_2) {
  Scenario s(1);
  auto pp = s.PrePrepare(0, 0, 1, {s.Request(1, 1)});
  const Digest d = Scenario::DigestOf(pp);
  s.Step(pp);                     // Own prepare: 1 of 2f = 2.
  s.Step(s.Prepare(0, 0, 1, d));  // The primary's prepare does not count.
  EXPECT_EQ(s.Dropped(DropReason::kWrongSender), 1u);
  s.Step(s.Prepare(2, 0, 1, Digest()));  // Wrong digest: no match.
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_COMMIT).empty());
  s.Step(s.Prepare(2, 0, 1, d));  // Same sender, another digest: conflict.
  EXPECT_EQ(s.Dropped(DropReason::kConflictingVote), 1u);
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_COMMIT).empty());
  s.Step(s.Prepare(3, 0, 1, d));  // Second matching backup: prepared.
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_COMMIT).size(), 1u);
  ASSERT_EQ(s.core().PreparedEntries().size(), 1u);
  EXPECT_EQ(s.core().PreparedEntries()[0].digest, d);
}

TEST(NormalCase, CommittedLocalHandsOutBatchWithItsCommitCertificate_4_2) {
  Scenario s(1);
  auto pp = s.PrePrepare(0, 0, 1, {s.Request(1, 1)});
  const Digest d = Scenario::DigestOf(pp);
  s.Step(pp);
  s.Step(s.Prepare(2, 0, 1, d));
  s.Step(s.Prepare(3, 0, 1, d));  // Prepared; own commit sent.
  const v1::Envelope commit0 = s.Commit(0, 0, 1, d);
  s.Step(commit0);
  EXPECT_TRUE(s.ready().execute.empty());  // 2 of 2f+1.
  s.Step(s.Commit(2, 0, 1, d));
  ASSERT_EQ(s.ready().execute.size(), 1u);
  const CommittedBatch& b = s.ready().execute[0];
  EXPECT_EQ(b.seq, Seq(1));
  EXPECT_EQ(b.batch_digest, d);
  EXPECT_EQ(b.pre_prepare.SerializeAsString(), pp.SerializeAsString());
  ASSERT_EQ(b.certificate.commits_size(), 3);
  // Exactly as received: bytes and signature of replica 0's commit.
  EXPECT_EQ(b.certificate.commits(0).SerializeAsString(),
            commit0.SerializeAsString());
}

TEST(NormalCase, ExecutionIsStrictlyInSeqOrder_4_2) {
  Scenario s(1);
  auto pp1 = s.PrePrepare(0, 0, 1, {s.Request(1, 1)});
  auto pp2 = s.PrePrepare(0, 0, 2, {s.Request(2, 1)});
  EXPECT_TRUE(s.CommitAtBackup(2, pp2, 1).empty());  // Waits for seq 1.
  EXPECT_EQ(s.core().last_handed_out(), Seq(0));
  auto executed = s.CommitAtBackup(1, pp1, 1);
  ASSERT_EQ(executed.size(), 2u);
  EXPECT_EQ(executed[0].seq, Seq(1));
  EXPECT_EQ(executed[1].seq, Seq(2));
}

// --- Client requests (Castro–Liskov §4.1; docs/protocol.md)
// ------------------------

// The one reply of the last Ready, decoded.
v1::Reply OnlyReply(Scenario& s) {
  v1::Reply reply;
  EXPECT_EQ(s.ready().replies.size(), 1u);
  if (s.ready().replies.size() == 1) {
    EXPECT_TRUE(reply.ParseFromString(s.ready().replies[0].envelope.payload()));
  }
  return reply;
}

TEST(Requests, DuplicateGetsStoredReplyAndOlderIsRejectedAsStale_4_1) {
  Scenario s(1);
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 5)}), 1).size(),
      1u);
  s.core().OnExecuted(Seq(1), Digest(),
                      {{ClientId(1), RequestNumber(5), "result-5"}});
  s.Take();
  ASSERT_EQ(s.ready().replies.size(), 1u);
  const std::string first = s.ready().replies[0].envelope.SerializeAsString();
  s.Step(s.Request(1, 5));  // Same number: the stored reply again.
  ASSERT_EQ(s.ready().replies.size(), 1u);
  EXPECT_EQ(s.ready().replies[0].envelope.SerializeAsString(), first);
  EXPECT_TRUE(s.ready().messages.empty());  // Not forwarded, not ordered.
  s.Step(s.Request(1, 4));  // Older: never executes; said so at once.
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(reply.request_number(), 4u);
  EXPECT_EQ(reply.last_request_number(), 5u);
  EXPECT_TRUE(reply.result().empty());
  EXPECT_TRUE(s.ready().messages.empty());
  EXPECT_EQ(s.Dropped(DropReason::kStaleRequest), 1u);
}

TEST(Requests, RequestBelowOneCommittedForExecutionIsRejectedAtOnce_4_1) {
  Scenario s(1);
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 7)}), 1).size(),
      1u);                  // Handed out, not executed yet.
  s.Step(s.Request(1, 7));  // The same request: its reply comes later.
  EXPECT_TRUE(s.ready().replies.empty());
  EXPECT_EQ(s.core().queued_requests(), 0u);
  s.Step(s.Request(1, 6));  // Overtaken by 7: never executes.
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(reply.last_request_number(), 7u);
}

TEST(Requests, StaleRequestSkippedAtExecutionIsRejected_4_1) {
  Scenario s(1);
  // 6 and 5 ordered in that order: the ledger skips 5 (its number is below
  // the client's last); the core answers it with a stale rejection.
  ASSERT_EQ(
      s.CommitAtBackup(
           1, s.PrePrepare(0, 0, 1, {s.Request(1, 6), s.Request(1, 5)}), 1)
          .size(),
      1u);
  s.core().OnExecuted(Seq(1), Digest(),
                      {{ClientId(1), RequestNumber(6), "result-6"},
                       {ClientId(1), RequestNumber(5), ""}});
  s.Take();
  ASSERT_EQ(s.ready().replies.size(), 2u);
  v1::Reply stale;
  ASSERT_TRUE(stale.ParseFromString(s.ready().replies[1].envelope.payload()));
  EXPECT_EQ(stale.request_number(), 5u);
  EXPECT_EQ(stale.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(stale.last_request_number(), 6u);
}

TEST(Requests, AnotherRequestUnderAQueuedNumberIsRejected) {
  Scenario s(1);
  s.Step(s.Request(1, 3, "first"));
  s.Take();
  s.Step(s.Request(1, 3, "first"));  // A copy waits for the same reply.
  EXPECT_TRUE(s.ready().replies.empty());
  s.Step(s.Request(1, 3, "second"));
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_DUPLICATE_REQUEST_NUMBER);
  EXPECT_EQ(s.core().queued_requests(), 1u);
}

TEST(Requests, BackupForwardsRequestToPrimary_4_1) {
  Scenario s(2);
  s.Step(s.Request(1, 1));
  auto fwd = s.Sent(v1::MESSAGE_TYPE_REQUEST);
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_FALSE(fwd[0].broadcast);
  EXPECT_EQ(fwd[0].to, ReplicaId(0));
  EXPECT_EQ(s.core().queued_requests(), 1u);
}

TEST(Requests, PrimaryRefusesRequestsBeyondQueueBound) {
  ledger::ProtocolParams p = Scenario::Params();
  p.batch_delay_ticks = 100;  // Keep them queued.
  p.batch_wait_when_idle = true;
  p.batch_requests_max = 10;
  Scenario s(0, p);
  for (uint64_t c = 1; c <= 3; ++c) s.Step(s.Request(c, 1));
  EXPECT_EQ(s.core().queued_requests(), 3u);
  s.Step(s.Request(1, 2));
  ASSERT_EQ(s.ready().replies.size(), 1u);
  v1::Reply reply;
  ASSERT_TRUE(reply.ParseFromString(s.ready().replies[0].envelope.payload()));
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_QUEUE_FULL);
  EXPECT_EQ(reply.request_number(), 2u);
  EXPECT_EQ(s.core().queued_requests(), 3u);
}

TEST(Requests, OneClientOverItsQueueShareIsRefusedOthersAreNot) {
  ledger::ProtocolParams p = Scenario::Params();
  p.batch_delay_ticks = 100;  // Keep them queued.
  p.batch_wait_when_idle = true;
  p.batch_requests_max = 10;
  p.request_queue_max = 10;
  p.client_queue_max = 2;
  Scenario s(0, p);
  s.Step(s.Request(1, 1));
  s.Step(s.Request(1, 2));
  s.Step(s.Request(1, 3));  // Over client 1's share.
  v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_CLIENT_SHARE_FULL);
  EXPECT_EQ(reply.request_number(), 3u);
  s.Step(s.Request(2, 1));  // Client 2 is still served.
  EXPECT_TRUE(s.ready().replies.empty());
  EXPECT_EQ(s.core().queued_requests(), 3u);
  // The share also counts bytes.
  ledger::ProtocolParams pb = p;
  pb.client_queue_max = 10;
  pb.client_queue_bytes_max = 300;
  Scenario b(0, pb);
  b.Step(b.Request(1, 1, std::string(150, 'x')));
  b.Step(b.Request(1, 2, std::string(150, 'x')));
  reply = OnlyReply(b);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_CLIENT_SHARE_FULL);
  b.Step(b.Request(2, 1, std::string(150, 'x')));
  EXPECT_TRUE(b.ready().replies.empty());
}

TEST(Requests, BackupRejectsOlderQueuedRequestsOnceANewerOneIsOrdered_4_1) {
  Scenario s(1);
  s.Step(s.Request(1, 1));
  s.Step(s.Request(1, 2));
  EXPECT_EQ(s.core().queued_requests(), 2u);
  s.Take();
  // The primary ordered only request 2 (request 1 is then stale).
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 2)}), 1).size(),
      1u);
  EXPECT_EQ(s.core().queued_requests(), 0u);
  bool rejected = false;
  for (const ClientReply& r : s.replies()) {
    v1::Reply reply;
    ASSERT_TRUE(reply.ParseFromString(r.envelope.payload()));
    if (reply.request_number() == 1) {
      rejected = reply.rejected() == v1::REJECT_REASON_STALE_REQUEST_NUMBER &&
                 reply.last_request_number() == 2;
    }
  }
  EXPECT_TRUE(rejected);
}

TEST(Requests, RestoredClientGetsItsStoredReply_4_1) {
  Scenario s(2);
  s.core().RestoreClient(ClientId(3), RequestNumber(9), "restored");
  s.Take();
  EXPECT_TRUE(s.ready().replies.empty());
  s.Step(s.Request(3, 9));
  ASSERT_EQ(s.ready().replies.size(), 1u);
  v1::Reply reply;
  ASSERT_TRUE(reply.ParseFromString(s.ready().replies[0].envelope.payload()));
  EXPECT_EQ(reply.result(), "restored");
  EXPECT_EQ(reply.request_number(), 9u);
  EXPECT_EQ(reply.replica_id(), 2u);
}

TEST(ViewChangeTimer, RunsWhileABackupHoldsAnUnexecutedRequest_4_4) {
  ledger::ProtocolParams p = Scenario::Params();
  p.view_change_timeout_ticks = 5;
  Scenario s(1, p);
  for (int i = 0; i < 10; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 0u);  // Idle.
  s.Step(s.Request(1, 1));
  for (int i = 0; i < 5; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 1u);
  // Executing the request stops it.
  s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 1)}), 1);
  for (int i = 0; i < 20; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 1u);
}

// --- Batching and pipelining (§4.2 step 1) -----------------------------------

TEST(Primary, BatchesUpToTheLimitAndPipelinesWithinTheWindow_4_2) {
  ledger::ProtocolParams p = Scenario::Params();
  p.request_queue_max = 100;
  p.batch_wait_when_idle = true;  // The delay rule alone.
  Scenario s(0, p);               // batch_requests_max 2, delay 1 tick, L = 8.
  s.Step(s.Request(1, 1));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty());  // Waits.
  s.Step(s.Request(2, 1));  // Full batch: cut at once.
  auto pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);
  v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(pps[0].envelope.payload()));
  EXPECT_EQ(pp.seq(), 1u);
  EXPECT_EQ(pp.requests_size(), 2);
  s.Step(s.Request(3, 1));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty());
  s.Tick();  // The batching delay passed: a batch of one.
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).size(), 1u);
  // Pipelining: keep assigning seqs while nothing commits, up to H = 8.
  uint64_t sent = 2;
  for (uint64_t t = 2; t < 12; ++t) {
    for (uint64_t c = 1; c <= 3; ++c) {
      s.Step(s.Request(c, t));
      sent += s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).size();
    }
  }
  EXPECT_EQ(sent, 8u);
  EXPECT_EQ(s.core().stats().pre_prepares_sent, 8u);
}

// §4.2 step 1, batching policy: with no batch in flight the primary cuts at
// once (no added latency); while one is in flight, requests accumulate into
// the next batch.
TEST(Primary, AdaptiveBatchingCutsAtOnceWhenIdleAndBatchesWhileBusy_4_2) {
  ledger::ProtocolParams p = Scenario::Params();
  p.request_queue_max = 100;
  p.batch_requests_max = 10;
  p.batch_delay_ticks = 50;
  Scenario s(0, p);
  s.Step(s.Request(1, 1));
  auto pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);  // Idle: cut at once, a batch of one.
  v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(pps[0].envelope.payload()));
  EXPECT_EQ(pp.requests_size(), 1);
  s.Step(s.Request(2, 1));
  s.Step(s.Request(3, 1));
  s.Step(s.Request(1, 2));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty());  // Busy: wait.
  EXPECT_EQ(s.core().queued_requests(), 3u);
}

// --- Checkpoints and garbage collection (§4.3)
// --------------------------------

TEST(Checkpoints, StableAtTwoFPlusOneMatchingThenLogIsDiscarded_4_3) {
  Scenario s(1);  // K = 4, L = 8.
  Digest state;
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    ASSERT_EQ(
        s.CommitAtBackup(seq, s.PrePrepare(0, 0, seq, {s.Request(1, seq)}), 1)
            .size(),
        1u);
    state = ledger::crypto::Sha256("state" + std::to_string(seq));
    s.core().OnExecuted(Seq(seq), state, {});
    s.Take();
  }
  auto cps = s.Sent(v1::MESSAGE_TYPE_CHECKPOINT);
  ASSERT_EQ(cps.size(), 1u);
  EXPECT_EQ(s.core().low_watermark(), Seq(0));
  s.Step(s.Checkpoint(0, 4, Digest()));  // Another digest: does not count.
  s.Step(s.Checkpoint(2, 4, state));
  EXPECT_EQ(s.core().low_watermark(), Seq(0));  // 2 of 2f+1.
  s.Step(s.Checkpoint(3, 4, state));
  EXPECT_EQ(s.core().low_watermark(), Seq(4));
  EXPECT_EQ(s.core().high_watermark(), Seq(12));
  ASSERT_TRUE(s.ready().persist.stable_checkpoint.has_value());
  EXPECT_EQ(s.ready().persist.stable_checkpoint->checkpoints_size(), 3);
  EXPECT_TRUE(s.core().PreparedEntries().empty());  // Log discarded.
  // Messages at or below the stable checkpoint are now out of the window.
  s.Step(s.Prepare(2, 0, 3, state));
  EXPECT_GE(s.Dropped(DropReason::kOutOfWindow), 1u);
  s.Step(s.PrePrepare(0, 0, 12, {s.Request(2, 1)}));
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_PREPARE).size(), 1u);
}

TEST(Checkpoints, WindowRelationIsValidated_4_3) {
  Options o;
  o.params.checkpoint_interval = 4;
  o.params.watermark_window = 6;  // Not a multiple of K.
  EXPECT_FALSE(o.Validate().ok());
  o.params.watermark_window = 4;  // Less than 2K.
  EXPECT_FALSE(o.Validate().ok());
  o.params.watermark_window = 8;
  EXPECT_TRUE(o.Validate().ok());
  o.n = 5;  // Not 3f+1.
  EXPECT_FALSE(o.Validate().ok());
}

// --- Catching up from certified batches (§4.3 state transfer, limited) -------

TEST(CatchUp, AdoptsCertifiedBatchAndRejectsForgedCertificate_4_3) {
  Scenario s(3);
  auto pp = s.PrePrepare(0, 0, 1, {s.Request(1, 1)});
  const Digest d = Scenario::DigestOf(pp);
  v1::FetchResponse resp;
  resp.set_replica_id(2);
  v1::CertifiedBatch* b = resp.add_batches();
  *b->mutable_pre_prepare() = pp;
  for (uint32_t r = 0; r < 3; ++r) {
    *b->mutable_certificate()->add_commits() = s.Commit(r, 0, 1, d);
  }
  v1::FetchResponse forged = resp;  // Same commit twice: 2 distinct.
  *forged.mutable_batches(0)->mutable_certificate()->mutable_commits(2) =
      forged.batches(0).certificate().commits(0);
  SimCrypto crypto(4, 3, false);
  auto signer2 = crypto.ReplicaSigner(2);
  s.Step(signer2->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE,
                       forged.SerializeAsString()));
  EXPECT_TRUE(s.ready().execute.empty());
  EXPECT_EQ(s.Dropped(DropReason::kBadCertificate), 1u);
  s.Step(
      signer2->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE, resp.SerializeAsString()));
  ASSERT_EQ(s.ready().execute.size(), 1u);
  EXPECT_EQ(s.ready().execute[0].batch_digest, d);
}

// Nothing tells an idle replica that it is behind: it asks a peer anyway
// (docs/protocol.md "Catching up in an idle cluster"), a different one each
// time, at most once per idle_probe_interval_ticks.
TEST(CatchUp, IdleReplicaProbesAPeerAtMostOncePerInterval_4_3) {
  Scenario s(3);
  const Options defaults;
  std::vector<uint64_t> probe_ticks;
  std::vector<uint64_t> peers;
  const uint64_t ticks = 3 * defaults.idle_probe_interval_ticks;
  for (uint64_t t = 2; t <= ticks; ++t) {
    s.Tick();
    for (const Outbound& o : s.Sent(v1::MESSAGE_TYPE_FETCH_REQUEST)) {
      v1::FetchRequest req;
      ASSERT_TRUE(req.ParseFromString(o.envelope.payload()));
      EXPECT_EQ(req.from_seq(), 1u);  // After the last executed (none).
      EXPECT_EQ(req.replica_id(), 3u);
      EXPECT_FALSE(o.broadcast);
      EXPECT_NE(o.to.value(), 3u);
      peers.push_back(o.to.value());
      probe_ticks.push_back(t);
    }
  }
  // The first within a fetch interval or two, then one per probe interval.
  ASSERT_EQ(probe_ticks.size(), 3u);
  EXPECT_LE(probe_ticks[0], 2u * defaults.fetch_interval_ticks);
  for (size_t i = 1; i < probe_ticks.size(); ++i) {
    EXPECT_GE(probe_ticks[i] - probe_ticks[i - 1],
              defaults.idle_probe_interval_ticks);
  }
  EXPECT_NE(peers[0], peers[1]);
  EXPECT_EQ(s.core().stats().fetch_probes, 3u);
  EXPECT_EQ(s.core().stats().fetches_sent, 3u);
}

// --- The simulator
// ------------------------------------------------------------

TEST(Simulator, SameSeedGivesTheSameTrace) {
  sim::SimOptions o;
  o.seed = 42;
  o.replicas = 4;
  o.scenario = "byzantine";
  const sim::SimResult a = sim::RunSimulation(o);
  const sim::SimResult b = sim::RunSimulation(o);
  ASSERT_TRUE(a.ok) << a.failure;
  EXPECT_EQ(a.trace_digest, b.trace_digest);
  EXPECT_EQ(a.ticks, b.ticks);
  o.seed = 43;
  EXPECT_NE(sim::RunSimulation(o).trace_digest, a.trace_digest);
}

TEST(Simulator, EveryScenarioPassesAFewSeeds) {
  for (const std::string& scenario : sim::ScenarioNames()) {
    for (uint32_t n : {4u, 7u}) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        sim::SimOptions o;
        o.seed = seed;
        o.replicas = n;
        o.scenario = scenario;
        const sim::SimResult r = sim::RunSimulation(o);
        EXPECT_TRUE(r.ok) << scenario << " n=" << n << " seed=" << seed << ": "
                          << r.failure;
        EXPECT_EQ(r.requests_completed, r.requests_submitted);
        EXPECT_GT(r.requests_completed, 0u);
      }
    }
  }
}

TEST(Simulator, RealEd25519SignaturesWork) {
  sim::SimOptions o;
  o.seed = 7;
  o.replicas = 4;
  o.scenario = "lossy";
  o.real_crypto = true;
  const sim::SimResult r = sim::RunSimulation(o);
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_GT(r.requests_completed, 0u);
}

}  // namespace
}  // namespace pbft
