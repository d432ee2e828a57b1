// The SDK's parts without a cluster: which replicas a request goes to
// first (FirstReplicas), client ids, and the load throttle.
#include <algorithm>
#include <cmath>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/first_replicas.h"
#include "client/load_throttle.h"
#include "gtest/gtest.h"

namespace pbft::client {
namespace {

TEST(FirstReplicasTest, PrimaryAndBackupsByClientId) {
  const absl::Time now = absl::Now();
  FirstReplicas f({.n = 4, .client_id = 5});
  // 5 % 3 = 2: the third backup after the primary.
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 3}));
  FirstReplicas g({.n = 4, .client_id = 6});
  EXPECT_EQ(g.Choose(2, now), (std::vector<uint32_t>{0, 1}));
  // Quorums of n (or more) and send_to_all: every replica.
  EXPECT_EQ(f.Choose(4, now), (std::vector<uint32_t>{0, 1, 2, 3}));
  FirstReplicas all({.n = 4, .client_id = 5, .send_to_all = true});
  EXPECT_EQ(all.Choose(2, now), (std::vector<uint32_t>{0, 1, 2, 3}));
  // f = 2, n = 7: the primary and two backups.
  FirstReplicas seven({.n = 7, .client_id = 4});
  EXPECT_EQ(seven.Choose(3, now), (std::vector<uint32_t>{0, 5, 6}));
}

TEST(FirstReplicasTest, FollowsTheViewUpOnly) {
  const absl::Time now = absl::Now();
  FirstReplicas f({.n = 4, .client_id = 5});
  f.NoteView(2);
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{2, 1}));
  f.NoteView(1);  // Older: ignored.
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{2, 1}));
  f.NoteView(7);  // Primary 7 % 4 = 3.
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{3, 2}));
}

// The view for the word "the primary has it" comes only with f+1 headed by
// the primary: not when every replica is asked (send_to_all, a quorum of
// n, the primary left out), where no replica would remain to forward the
// request if the primary failed.
TEST(FirstReplicasTest, NamesThePrimarysViewOnlyForFPlusOneHeadedByIt) {
  const absl::Time now = absl::Now();
  std::optional<uint64_t> view;
  FirstReplicas f({.n = 4, .client_id = 5});
  f.NoteView(6);
  EXPECT_EQ(f.Choose(2, now, &view), (std::vector<uint32_t>{2, 1}));
  EXPECT_EQ(view, std::optional<uint64_t>(6));
  EXPECT_EQ(f.Choose(4, now, &view).size(), 4u);
  EXPECT_EQ(view, std::nullopt);
  FirstReplicas all({.n = 4, .client_id = 5, .send_to_all = true});
  all.Choose(2, now, &view);
  EXPECT_EQ(view, std::nullopt);
  f.Avoid(2, now);  // The primary of view 6 failed: every replica.
  EXPECT_EQ(f.Choose(2, now, &view).size(), 4u);
  EXPECT_EQ(view, std::nullopt);
  FirstReplicas g({.n = 4, .client_id = 5});
  g.Avoid(3, now);
  EXPECT_EQ(g.Choose(2, now, &view), (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(view, std::optional<uint64_t>(0));
}

TEST(FirstReplicasTest, LeavesOutFailedReplicasForAWhile) {
  const absl::Time now = absl::Now();
  FirstReplicas f({.n = 4, .client_id = 5, .avoid_for = absl::Seconds(10)});
  f.Avoid(3, now);
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 1}));
  // Silent at one widening: struck, still among the first; at the next
  // one, left out.
  f.NoteWidenedByTimer({1}, now);
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 1}));
  f.NoteWidenedByTimer({1}, now);
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 2}));
  f.Avoid(2, now);  // No backup left: every replica.
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 1, 2, 3}));
  // After avoid_for they are back.
  EXPECT_EQ(f.Choose(2, now + absl::Seconds(11)),
            (std::vector<uint32_t>{0, 3}));
  // A primary left out: every replica.
  FirstReplicas p({.n = 4, .client_id = 5});
  p.Avoid(0, now);
  EXPECT_EQ(p.Choose(2, now), (std::vector<uint32_t>{0, 1, 2, 3}));
}

// A busy replica misses the widening delay now and then (the tail of its
// latency): that must not leave it out, or a primary left out sends every
// request to every replica for avoid_for. Only a replica silent again
// before it answered kAnswersPerStrike calls is left out.
TEST(FirstReplicasTest, OneSilenceAmongAnswersLeavesNoReplicaOut) {
  const absl::Time now = absl::Now();
  FirstReplicas f({.n = 4, .client_id = 5});
  const std::vector<uint32_t> first = {0, 3};
  for (int round = 0; round < 20; ++round) {
    f.NoteWidenedByTimer({0}, now);  // The primary silent once...
    for (uint32_t i = 0; i < FirstReplicas::kAnswersPerStrike; ++i) {
      f.NoteAnswered({0, 3});  // ... then answering calls.
    }
    ASSERT_EQ(f.Choose(2, now), first) << "round " << round;
  }
  EXPECT_EQ(f.counts().replicas_left_out, 0u);
  // Silent again one answer too early: left out (every replica asked).
  f.NoteWidenedByTimer({0}, now);
  for (uint32_t i = 1; i < FirstReplicas::kAnswersPerStrike; ++i) {
    f.NoteAnswered({0, 3});
  }
  f.NoteWidenedByTimer({0}, now);
  EXPECT_EQ(f.Choose(2, now), (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(f.counts().replicas_left_out, 1u);
  EXPECT_EQ(f.counts().sent_to_all_first, 1u);
  EXPECT_EQ(f.counts().ordered_sends, 21u);
}

TEST(FirstReplicasTest, DelayFollowsLatencyWithinBounds) {
  FirstReplicas f({.n = 4,
                   .widen_after_initial = absl::Milliseconds(200),
                   .widen_after_min = absl::Milliseconds(50),
                   .widen_after_max = absl::Seconds(2)});
  EXPECT_EQ(f.WidenAfter(), absl::Milliseconds(200));
  // First sample: latency + 4 x latency/2 = 30 ms, below the minimum.
  f.NoteLatency(absl::Milliseconds(10));
  EXPECT_EQ(f.WidenAfter(), absl::Milliseconds(50));
  // A steady 100 ms: the variation decays and the delay nears 100 ms.
  for (int i = 0; i < 200; ++i) f.NoteLatency(absl::Milliseconds(100));
  EXPECT_GT(f.WidenAfter(), absl::Milliseconds(99));
  EXPECT_LT(f.WidenAfter(), absl::Milliseconds(110));
  // Each expiry doubles it, up to the maximum.
  const absl::Duration before = f.WidenAfter();
  f.NoteWidenedByTimer({}, absl::Now());
  EXPECT_EQ(f.WidenAfter(), 2 * before);
  for (int i = 0; i < 10; ++i) f.NoteWidenedByTimer({}, absl::Now());
  EXPECT_EQ(f.WidenAfter(), absl::Seconds(2));
}

TEST(IdTest, ParseAndFormat) {
  EXPECT_EQ(IdToString(*ParseId("42", "id")), "42");
  EXPECT_EQ(IdToString(*ParseId("0x10", "id")), "16");
  EXPECT_EQ(IdToString(*ParseId("1:2", "id")), "1:2");
  absl::StatusOr<ledger::v1::Uint128> bad = ParseId("abc", "--from");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--from"), std::string::npos);
}

// NewId: the top 48 bits are the time in milliseconds, ids of one process
// strictly increase (also within a millisecond and from many threads), and
// the 80 low bits are random: two processes' ids differ.
TEST(IdTest, NewIdsAreOrderedByTimeAndNeverRepeat) {
  auto less = [](const ledger::v1::Uint128& a, const ledger::v1::Uint128& b) {
    return a.high() != b.high() ? a.high() < b.high() : a.low() < b.low();
  };
  const auto before = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  constexpr int kThreads = 4, kPerThread = 20000;
  std::vector<std::vector<ledger::v1::Uint128>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(NewId());
    });
  }
  for (std::thread& t : threads) t.join();
  const auto after = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  std::vector<ledger::v1::Uint128> all;
  for (const auto& ids : made) {
    for (size_t i = 1; i < ids.size(); ++i) {
      ASSERT_TRUE(less(ids[i - 1], ids[i])) << "thread order, at " << i;
    }
    all.insert(all.end(), ids.begin(), ids.end());
  }
  std::sort(all.begin(), all.end(), less);
  for (size_t i = 1; i < all.size(); ++i) {
    ASSERT_TRUE(less(all[i - 1], all[i])) << "a repeated id";
  }
  // The time part is the clock's when the id was made.
  EXPECT_GE(all.front().high() >> 16, before);
  EXPECT_LE(all.back().high() >> 16, after);
  // The first id of a new millisecond has fresh random bits: two such ids
  // differ in their low 64 bits (equal by chance once in 2^64).
  absl::SleepFor(absl::Milliseconds(5));
  const ledger::v1::Uint128 a = NewId();
  absl::SleepFor(absl::Milliseconds(5));
  const ledger::v1::Uint128 b = NewId();
  EXPECT_GT(b.high() >> 16, a.high() >> 16);
  EXPECT_NE(a.low(), b.low());
}

// LoadThrottle: a share of new calls refused in the client, (requests -
// k * accepted) / (requests + 1) over the window, requests counted as they
// end.
TEST(LoadThrottleTest, RefusesTheExcessOverKTimesWhatWasAccepted) {
  auto t = LoadThrottle::Create({.k = 2, .window = absl::Seconds(10)});
  ASSERT_TRUE(t.ok()) << t.status();
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  // 1,000 calls ended, 250 of them accepted.
  for (int i = 0; i < 1000; ++i) (*t)->Ended(now, i < 250);
  EXPECT_NEAR((*t)->RefusedShare(now), 500.0 / 1001.0, 1e-12);
  // A draw below the share is refused (and counted: it ended), one above
  // it let through (counted when it ends).
  EXPECT_FALSE((*t)->Admit(now, 0.49));
  EXPECT_TRUE((*t)->Admit(now, 0.51));
  EXPECT_EQ((*t)->refused(), 1U);
  // Calls in the window's other seconds count too.
  EXPECT_NEAR((*t)->RefusedShare(now + absl::Seconds(9)), 501.0 / 1002.0,
              1e-12);
}

// Calls in flight are not refusals: at the start of a burst none has
// ended, and none may be refused for it (counted when sent, the second
// call would meet a share of 1/2).
TEST(LoadThrottleTest, CallsInFlightDoNotCountAsRefused) {
  auto t = LoadThrottle::Create({.k = 1.25});
  ASSERT_TRUE(t.ok()) << t.status();
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*t)->Admit(now, 0.0)) << i;
  EXPECT_EQ((*t)->RefusedShare(now), 0.0);
}

TEST(LoadThrottleTest, NothingIsRefusedWhileTheClusterAcceptsEverything) {
  auto t = LoadThrottle::Create({.k = 1, .window = absl::Seconds(10)});
  ASSERT_TRUE(t.ok()) << t.status();
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  for (int i = 0; i < 5000; ++i) {
    // Draw 0: refused by any share above 0.
    ASSERT_TRUE((*t)->Admit(now, 0.0)) << i;
    (*t)->Ended(now, true);
    now += absl::Milliseconds(7);
  }
  EXPECT_EQ((*t)->refused(), 0U);
  EXPECT_EQ((*t)->RefusedShare(now), 0.0);
}

TEST(LoadThrottleTest, RefusalsOlderThanTheWindowAreForgotten) {
  auto t = LoadThrottle::Create({.k = 2, .window = absl::Seconds(3)});
  ASSERT_TRUE(t.ok()) << t.status();
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  for (int i = 0; i < 100; ++i) (*t)->Ended(now, false);
  EXPECT_NEAR((*t)->RefusedShare(now + absl::Seconds(2)), 100.0 / 101.0, 1e-12);
  EXPECT_EQ((*t)->RefusedShare(now + absl::Seconds(3)), 0.0);
  // Its slot in the ring is reused for the new second, not added to.
  EXPECT_TRUE((*t)->Admit(now + absl::Seconds(3), 0.0));
  (*t)->Ended(now + absl::Seconds(3), false);
  EXPECT_NEAR((*t)->RefusedShare(now + absl::Seconds(3)), 1.0 / 2.0, 1e-12);
}

TEST(LoadThrottleTest, CreateNamesTheFieldOutOfRange) {
  for (double k : {0.0, 0.99, -1.0, std::nan("")}) {
    auto t = LoadThrottle::Create({.k = k});
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << k;
    EXPECT_TRUE(absl::StrContains(t.status().message(), "throttle.k")) << k;
  }
  for (absl::Duration w :
       {absl::Milliseconds(999), absl::ZeroDuration(), absl::Hours(2)}) {
    auto t = LoadThrottle::Create({.k = 2, .window = w});
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(t.status().message(), "throttle.window"));
  }
}

}  // namespace
}  // namespace pbft::client
