// Crash recovery (docs/protocol.md "crash recovery", Core::Restore): a
// replica restarted from what it persisted never votes against its past
// and rejoins; scenarios on the hand-wired cluster of tests/core/cluster.h.
#include "tests/core/cluster.h"

namespace pbft::core::test {
namespace {

TEST(CrashRecovery, RestartedBackupNeverPreparesAnotherDigest_4_4) {
  Cluster c;
  c.Inject(99, 0, c.Request(1));
  c.Run([](uint32_t, uint32_t, const v1::Envelope& e) {
    return e.type() != v1::MESSAGE_TYPE_COMMIT;
  });
  c.Crash(2);
  ASSERT_TRUE(c.Restart(2).ok());
  // The restarted backup holds its pre-prepare and prepare for (0, 1):
  // another batch at (0, 1) is refused.
  v1::PrePrepare pp;
  pp.set_view(0);
  pp.set_seq(1);
  pp.set_timestamp_ms(kNowMs);
  google::protobuf::RepeatedPtrField<v1::Envelope> batch;
  *batch.Add() = c.Request(2);
  pp.set_batch_digest(BatchDigest(batch).ToBytes());
  v1::Envelope other =
      c.signer(0).Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  *other.mutable_batch() = batch;
  c.core(2).Step(other);
  EXPECT_EQ(c.core(2).stats().dropped[static_cast<size_t>(
                DropReason::kConflictingPrePrepare)],
            1u);
  // And its next VIEW-CHANGE still carries the prepared certificate.
  c.Inject(99, 1, c.Request(1));
  c.Inject(99, 3, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  auto vcs = c.sent_by(2, v1::MESSAGE_TYPE_VIEW_CHANGE);
  ASSERT_FALSE(vcs.empty());
  v1::ViewChange vc;
  ASSERT_TRUE(vc.ParseFromString(vcs[0].payload()));
  EXPECT_EQ(vc.prepared_size(), 1);
}

// A restarted replica hears nothing from its peers until their links to it
// are back (gRPC reconnects with back-off), while clients already reach
// it. It cannot tell a stuck primary from its own deafness, so its timer
// waits until it has heard from 2f peers; asking them brings the batch it
// missed, and nobody changes views.
TEST(CrashRecovery, RestartedReplicaWaitsToHearFromItsPeers_4_4) {
  Cluster c;
  c.Crash(3);
  ASSERT_TRUE(c.Restart(3).ok());
  c.Inject(99, 3, c.Request(1));
  c.Run([](uint32_t from, uint32_t to,
           const v1::Envelope&) { return from == 99 || to != 3; },
        /*ticks=*/30);
  EXPECT_TRUE(c.sent_by(3, v1::MESSAGE_TYPE_VIEW_CHANGE).empty());
  EXPECT_GE(c.core(3).stats().view_change_timer_held, 1u);
  EXPECT_FALSE(c.sent_by(3, v1::MESSAGE_TYPE_FETCH_REQUEST).empty());
  EXPECT_EQ(c.executed(0), 1u) << "the others ordered the forwarded request";
  c.ServeFetches();
  c.Run(Cluster::All, /*ticks=*/40);
  EXPECT_EQ(c.executed(3), 1u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(c.core(i).view(), View(0)) << i;
    EXPECT_TRUE(c.core(i).view_active()) << i;
    EXPECT_TRUE(c.sent_by(i, v1::MESSAGE_TYPE_VIEW_CHANGE).empty()) << i;
  }
}

TEST(CrashRecovery, RestartDuringViewChangeStaysOutOfTheOldView_4_4) {
  Cluster c;
  c.Inject(99, 2, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/11);  // 2 times out alone: view 1, not active.
  ASSERT_EQ(c.core(2).view(), View(1));
  ASSERT_FALSE(c.core(2).view_active());
  c.Crash(2);
  ASSERT_TRUE(c.Restart(2).ok());
  EXPECT_EQ(c.core(2).view(), View(1));
  EXPECT_FALSE(c.core(2).view_active());
  // A PREPARE of view 0 is no longer accepted.
  v1::Prepare p;
  p.set_view(0);
  p.set_seq(1);
  p.set_batch_digest(NullBatchDigest().ToBytes());
  p.set_replica_id(1);
  c.core(2).Step(
      c.signer(1).Sign(v1::MESSAGE_TYPE_PREPARE, p.SerializeAsString()));
  EXPECT_GE(
      c.core(2).stats().dropped[static_cast<size_t>(DropReason::kWrongView)],
      1u);
}

// State transfer beyond the window (docs/protocol.md "State transfer"): a
// replica that was cut off adopts a far stable proof from a fetch response
// and executes fetched batches past h + L towards it. Killed there, it must
// restart from its data dir: the proof it was executing towards is durable
// (its CHECKPOINTs were persisted before any batch past H executed), so the
// ledger is inside the window Restore rebuilds.
TEST(StateTransfer, CrashWhileExecutingPastTheWindowRestarts_4_4) {
  Cluster c;
  c.ServeFetches();
  auto cut3 = [](uint32_t from, uint32_t to, const v1::Envelope&) {
    return from != 3 && to != 3;
  };
  for (uint64_t t = 1; t <= 30; ++t) {
    for (uint32_t b = 0; b < 3; ++b) c.Inject(99, b, c.Request(t));
    c.Run(cut3, /*ticks=*/2);
  }
  ASSERT_GE(c.executed(0), 30u);
  // Replica 3 restarts empty, asking for 10 blocks at a time; it gets one
  // fetch response (blocks 1..10 and the responder's proof far ahead).
  c.Crash(3);
  c.SetFetchBlocksMax(10);
  c.Crash(3);
  ASSERT_TRUE(c.Restart(3).ok());
  int responses = 0;
  c.Run(
      [&](uint32_t from, uint32_t to, const v1::Envelope& e) {
        if (to != 3 && from != 3) return true;
        if (e.type() == v1::MESSAGE_TYPE_FETCH_RESPONSE)
          return ++responses == 1;
        return e.type() == v1::MESSAGE_TYPE_FETCH_REQUEST;
      },
      /*ticks=*/60);
  ASSERT_EQ(responses >= 1, true);
  ASSERT_GT(c.executed(3), Cluster::Params().watermark_window);
  ASSERT_LT(c.executed(3), c.executed(0));
  // Killed there: it restarts from what it made durable.
  c.Crash(3);
  absl::Status s = c.Restart(3);
  ASSERT_TRUE(s.ok()) << s.message();
  // And catches up the rest.
  c.Run(Cluster::All, /*ticks=*/200);
  EXPECT_GE(c.executed(3), 30u);
}

}  // namespace
}  // namespace pbft::core::test
