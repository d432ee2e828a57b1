// The view-change timer (Castro & Liskov §4.4): when it runs, its
// half-way probe, and when it waits instead of changing views.
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

TEST(ViewChangeTimer, RunsWhileABackupHoldsAnUnexecutedRequest_4_4) {
  ProtocolParams p = Scenario::Params();
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

// Half-way through the timer a backup asks a peer for what it may have
// missed and forwards what it holds to the primary again (the first
// forward may have been lost): a backup that is merely behind catches up
// instead of timing out alone.
TEST(ViewChangeTimer, ProbesAndForwardsAgainHalfWay_4_4) {
  ProtocolParams p = Scenario::Params();
  p.view_change_timeout_ticks = 10;
  Scenario s(1, p);
  s.Step(s.Request(1, 1));
  bool probed = false;
  bool forwarded_again = false;
  for (int i = 0; i < 5; ++i) {
    s.Tick();
    for (const Outbound& o : s.ready().messages) {
      probed |= o.envelope.type() == v1::MESSAGE_TYPE_FETCH_REQUEST;
      forwarded_again |= o.envelope.type() == v1::MESSAGE_TYPE_REQUEST &&
                         !o.broadcast && o.to == ReplicaId(0);
    }
  }
  EXPECT_TRUE(probed);
  EXPECT_TRUE(forwarded_again);
  EXPECT_EQ(s.core().stats().timer_probes, 1u);
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 0u);
  for (int i = 0; i < 5; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 1u);
  EXPECT_EQ(s.core().stats().timer_probes, 1u) << "once per timeout";
}

// f+1 replicas sent CHECKPOINTs past this replica's high watermark: their
// windows moved on, so a stable checkpoint beyond it exists and it is
// behind, not the primary stuck. It fetches and waits half a timeout more
// before it would change views (once per stall).
TEST(ViewChangeTimer, WaitsWhenFPlusOnePeersAreBeyondItsWindow_4_4) {
  ProtocolParams p = Scenario::Params();
  p.view_change_timeout_ticks = 10;
  Scenario s(1, p);
  s.Step(s.Request(1, 1));
  const Digest d = crypto::Sha256("state at 16");
  s.Step(s.Checkpoint(2, 16, d));
  s.Step(s.Checkpoint(3, 16, d));
  ASSERT_GT(Seq(16), s.core().high_watermark());
  for (int i = 0; i < 10; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 0u);
  EXPECT_TRUE(s.core().view_active());
  for (int i = 0; i < 5; ++i) s.Tick();
  EXPECT_EQ(s.core().stats().view_change_timer_expiries, 1u)
      << "nothing fetched in half a timeout: it changes views";
}

}  // namespace
}  // namespace pbft::core::test
