// The normal case (Castro & Liskov §4.2): pre-prepare acceptance, prepared
// and committed-local, batching and pipelining on the primary.
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

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
  const Digest wrong = BatchDigest(reqs);
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

// --- Batching and pipelining (§4.2 step 1) -----------------------------------

TEST(Primary, BatchesUpToTheLimitAndPipelinesWithinTheWindow_4_2) {
  ProtocolParams p = Scenario::Params();
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
  EXPECT_EQ(pps[0].envelope.batch_size(), 2);
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
  ProtocolParams p = Scenario::Params();
  p.request_queue_max = 100;
  p.batch_requests_max = 10;
  p.batch_delay_ticks = 50;
  Scenario s(0, p);
  s.Step(s.Request(1, 1));
  auto pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);  // Idle: cut at once, a batch of one.
  v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(pps[0].envelope.payload()));
  EXPECT_EQ(pps[0].envelope.batch_size(), 1);
  s.Step(s.Request(2, 1));
  s.Step(s.Request(3, 1));
  s.Step(s.Request(1, 2));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty());  // Busy: wait.
  EXPECT_EQ(s.core().queued_requests(), 3u);
}

// §4.2 step 1, batching policy while busy: a request that comes while a
// batch is in flight waits for the default delay, or less if that batch is
// handed out first (then nothing is in flight and the primary cuts at once).
TEST(Primary, WhileBusyCutsAfterTheDelayOrWhenTheBatchInFlightIsHandedOut_4_2) {
  ProtocolParams p = Scenario::Params();
  p.request_queue_max = 100;
  p.batch_requests_max = 10;
  p.batch_delay_ticks = ProtocolParams::kDefaultBatchDelayTicks;
  ASSERT_GT(p.batch_delay_ticks, 1u);
  Scenario s(0, p);
  s.Step(s.Request(1, 1));
  auto pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);  // Idle: seq 1 at once.
  const Digest d1 = Scenario::DigestOf(pps[0].envelope);

  // Busy: the delay's ticks less one pass without a cut; the last cuts.
  s.Step(s.Request(2, 1));
  for (uint32_t t = 1; t < p.batch_delay_ticks; ++t) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty()) << "tick " << t;
  }
  s.Tick();
  pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);
  EXPECT_EQ(pps[0].envelope.batch_size(), 1);

  // Seq 1 commits and is handed out while seq 2 is in flight: still busy.
  s.Step(s.Request(3, 1));
  s.CommitAtPrimary(1, d1);
  ASSERT_EQ(s.ready().execute.size(), 1u);
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE).empty());

  // Seq 2 is handed out: nothing in flight, the waiting request is cut at
  // once, before its delay.
  const Digest d2 = Scenario::DigestOf(pps[0].envelope);
  s.Step(s.Request(1, 2));
  s.CommitAtPrimary(2, d2);
  ASSERT_EQ(s.ready().execute.size(), 1u);
  pps = s.Sent(v1::MESSAGE_TYPE_PRE_PREPARE);
  ASSERT_EQ(pps.size(), 1u);
  EXPECT_EQ(pps[0].envelope.batch_size(), 2);
  EXPECT_EQ(s.core().queued_requests(), 0u);
}

}  // namespace
}  // namespace pbft::core::test
