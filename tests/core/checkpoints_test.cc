// Checkpoints and garbage collection (Castro & Liskov §4.3).
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

// --- Checkpoints and garbage collection (§4.3)
// --------------------------------

// Commits and executes seq `seq` at backup 1 (one request of client 1)
// and returns the state digest it executed to.
Digest CommitAndExecute(Scenario& s, uint64_t seq) {
  EXPECT_EQ(
      s.CommitAtBackup(seq, s.PrePrepare(0, 0, seq, {s.Request(1, seq)}), 1)
          .size(),
      1u);
  const Digest state = crypto::Sha256("state" + std::to_string(seq));
  s.core().OnExecuted(Seq(seq), state, {});
  s.Take();
  return state;
}

TEST(Checkpoints, StableAtTwoFPlusOneMatchingThenLogIsDiscarded_4_3) {
  Scenario s(1);  // K = 4, L = 8.
  Digest state;
  for (uint64_t seq = 1; seq <= 4; ++seq) state = CommitAndExecute(s, seq);
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

// A stable checkpoint is not sent again and again: a cluster at rest sends
// no CHECKPOINTs. A peer that still lacks it keeps sending its own vote
// for a checkpoint at or below it (not stable there); that is what tells
// this replica to answer with its vote for its stable checkpoint, to that
// peer only and at most once per retransmission period.
TEST(Checkpoints, StableCheckpointIsResentOnlyToAPeerStillMissingIt_4_3) {
  Scenario s(1);  // K = 4, L = 8.
  Digest state;
  for (uint64_t seq = 1; seq <= 8; ++seq) {
    state = CommitAndExecute(s, seq);
    if (seq % 4 == 0) {
      s.Step(s.Checkpoint(2, seq, state));
      s.Step(s.Checkpoint(3, seq, state));
      ASSERT_EQ(s.core().low_watermark(), Seq(seq));
    }
  }
  // At rest: retransmission rounds pass and no CHECKPOINT goes out.
  size_t sent = 0;
  uint64_t now = kNowMs;
  for (int t = 0; t < 100; ++t) {
    s.Tick(++now);
    sent += s.Sent(v1::MESSAGE_TYPE_CHECKPOINT).size();
  }
  EXPECT_EQ(sent, 0u);
  auto answered_to_0 = [&](uint64_t seq) {
    const std::vector<Outbound> out = s.Sent(v1::MESSAGE_TYPE_CHECKPOINT);
    if (out.size() != 1 || out[0].broadcast || out[0].to != ReplicaId(0))
      return false;
    v1::Checkpoint m;
    return m.ParseFromString(out[0].envelope.payload()) && m.seq() == seq &&
           m.replica_id() == 1;
  };
  // Replica 0 sends its vote for 8 again: 8 is not stable there yet.
  s.Step(s.Checkpoint(0, 8, state));
  EXPECT_TRUE(answered_to_0(8));
  // Again in the same period: nothing (two replicas that both have it
  // stable answer each other once, not forever).
  s.Step(s.Checkpoint(0, 8, state));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_CHECKPOINT).empty());
  // A period later, its vote for 4 (further behind): the answer is the
  // vote for the stable checkpoint, 8, which is what it needs.
  for (int t = 0; t < 20; ++t) s.Tick(++now);
  s.Step(s.Checkpoint(0, 4, crypto::Sha256("state4")));
  EXPECT_TRUE(answered_to_0(8));
  // A vote for 8 with another digest gets nothing (it would not help) and
  // is counted as a conflicting vote.
  for (int t = 0; t < 20; ++t) s.Tick(++now);
  const uint64_t conflicting = s.Dropped(DropReason::kConflictingVote);
  s.Step(s.Checkpoint(3, 8, Digest()));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_CHECKPOINT).empty());
  EXPECT_EQ(s.Dropped(DropReason::kConflictingVote), conflicting + 1);
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

}  // namespace
}  // namespace pbft::core::test
