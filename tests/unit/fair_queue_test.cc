#include "common/fair_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pbft {
namespace {

using Queue = FairQueue<std::string>;

TEST(FairQueueTest, AFloodingSourceFillsOnlyItsOwnShare) {
  Queue q(3, {.count_max = 4, .bytes_max = 100}, Queue::Overflow::kRefuseNew);
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    if (!q.Push(2, "flood", 5).accepted) ++refused;
  }
  EXPECT_EQ(refused, 996);
  EXPECT_TRUE(q.Push(0, "vote-0", 6).accepted);
  EXPECT_TRUE(q.Push(1, "vote-1", 6).accepted);
  std::vector<std::string> out;
  ASSERT_EQ(q.PopMany(&out, 3, absl::ZeroDuration()), 3u);
  // Round robin: one from each source before a second from any.
  EXPECT_EQ(out[0], "vote-0");
  EXPECT_EQ(out[1], "vote-1");
  EXPECT_EQ(out[2], "flood");
}

TEST(FairQueueTest, BytesAreBoundedAsWellAsCount) {
  Queue q(1, {.count_max = 100, .bytes_max = 10}, Queue::Overflow::kRefuseNew);
  EXPECT_TRUE(q.Push(0, "a", 6).accepted);
  EXPECT_FALSE(q.Push(0, "b", 6).accepted);
  EXPECT_EQ(q.bytes(0), 6u);
  // Alone, an item larger than the share still goes through.
  std::vector<std::string> out;
  q.PopMany(&out, 10, absl::ZeroDuration());
  EXPECT_TRUE(q.Push(0, "big", 50).accepted);
  EXPECT_FALSE(q.Push(0, "small", 1).accepted);
}

TEST(FairQueueTest, DropOldestMakesRoomAndReportsIt) {
  Queue q(1, {.count_max = 3, .bytes_max = 1000}, Queue::Overflow::kDropOldest);
  for (std::string s : {"1", "2", "3"}) EXPECT_TRUE(q.Push(0, s, 1).accepted);
  Queue::PushResult r = q.Push(0, "4", 1);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped_oldest, 1u);
  r = q.Push(0, "huge", 999);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped_oldest, 2u);  // "2" and "3"; "4" + 999 fits.
  std::vector<std::string> out;
  q.PopMany(&out, 10, absl::ZeroDuration());
  EXPECT_EQ(out, (std::vector<std::string>{"4", "huge"}));
}

TEST(FairQueueTest, CloseWakesAndRefuses) {
  Queue q(2, {.count_max = 1, .bytes_max = 1}, Queue::Overflow::kRefuseNew);
  EXPECT_TRUE(q.Push(1, "x", 1).accepted);
  q.Close();
  EXPECT_FALSE(q.Push(0, "y", 1).accepted);
  std::vector<std::string> out;
  EXPECT_EQ(q.PopMany(&out, 10, absl::Seconds(10)), 1u);
  EXPECT_EQ(q.PopMany(&out, 10, absl::Seconds(10)), 0u);
}

// Wake ends a wait with nothing to pop (the next wait waits again), and a
// wake before the wait is not lost.
TEST(FairQueueTest, WakeEndsOneWaitWithoutAnItem) {
  Queue q(1, {.count_max = 1, .bytes_max = 1}, Queue::Overflow::kRefuseNew);
  std::vector<std::string> out;
  q.Wake();
  const absl::Time start = absl::Now();
  EXPECT_EQ(q.PopMany(&out, 10, absl::Seconds(30)), 0u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(q.PopMany(&out, 10, absl::Milliseconds(1)), 0u);  // Timed out.
  std::thread waker([&q] {
    absl::SleepFor(absl::Milliseconds(5));
    q.Wake();
  });
  EXPECT_EQ(q.PopMany(&out, 10, absl::Seconds(30)), 0u);
  waker.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_TRUE(q.Push(0, "x", 1).accepted);
  EXPECT_EQ(q.PopMany(&out, 10, absl::Seconds(30)), 1u);
}

}  // namespace
}  // namespace pbft
