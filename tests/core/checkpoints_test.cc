// Checkpoints and garbage collection (Castro & Liskov §4.3).
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

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
    state = crypto::Sha256("state" + std::to_string(seq));
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

// A stable checkpoint is not sent again and again: a cluster at rest sends
// no CHECKPOINTs. A peer that still lacks it keeps sending its own vote
// (its checkpoint is not stable there); that is what tells this replica to
// answer with its own, to that peer only.
TEST(Checkpoints, StableCheckpointIsResentOnlyToAPeerStillMissingIt_4_3) {
  Scenario s(1);  // K = 4, L = 8.
  Digest state;
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    ASSERT_EQ(
        s.CommitAtBackup(seq, s.PrePrepare(0, 0, seq, {s.Request(1, seq)}), 1)
            .size(),
        1u);
    state = crypto::Sha256("state" + std::to_string(seq));
    s.core().OnExecuted(Seq(seq), state, {});
    s.Take();
  }
  s.Step(s.Checkpoint(2, 4, state));
  s.Step(s.Checkpoint(3, 4, state));
  ASSERT_EQ(s.core().low_watermark(), Seq(4));
  // At rest: retransmission rounds pass and no CHECKPOINT goes out.
  size_t sent = 0;
  for (int t = 0; t < 100; ++t) {
    s.Tick(kNowMs + static_cast<uint64_t>(t));
    sent += s.Sent(v1::MESSAGE_TYPE_CHECKPOINT).size();
  }
  EXPECT_EQ(sent, 0u);
  // Replica 0 sends its vote for 4 again: 4 is not stable there yet.
  s.Step(s.Checkpoint(0, 4, state));
  const std::vector<Outbound> answer = s.Sent(v1::MESSAGE_TYPE_CHECKPOINT);
  ASSERT_EQ(answer.size(), 1u);
  EXPECT_FALSE(answer[0].broadcast);
  EXPECT_EQ(answer[0].to, ReplicaId(0));
  v1::Checkpoint m;
  ASSERT_TRUE(m.ParseFromString(answer[0].envelope.payload()));
  EXPECT_EQ(m.seq(), 4u);
  EXPECT_EQ(m.replica_id(), 1u);
  // A vote with another digest gets nothing: this vote would not help.
  s.Step(s.Checkpoint(3, 4, Digest()));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_CHECKPOINT).empty());
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
