#include "common/fair_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

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

TEST(FairQueueTest, PushManyJudgesEachEntryAgainstItsOwnShare) {
  Queue q(2, {.count_max = 2, .bytes_max = 100}, Queue::Overflow::kRefuseNew);
  std::vector<Queue::Entry> entries = {
      {0, "a0", 1}, {0, "a1", 1}, {0, "a2", 1}, {1, "b0", 1}, {1, "big", 500}};
  std::vector<Queue::PushResult> results;
  q.PushMany(&entries, &results);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_TRUE(results[0].accepted);
  EXPECT_TRUE(results[1].accepted);
  EXPECT_FALSE(results[2].accepted);  // Source 0's share holds two.
  EXPECT_TRUE(results[3].accepted);
  EXPECT_FALSE(results[4].accepted);  // Over source 1's bytes.
  // A refused entry keeps its item, so the caller can count it by sender.
  EXPECT_EQ(entries[2].item, "a2");
  EXPECT_EQ(entries[4].item, "big");
  std::vector<std::string> out;
  ASSERT_EQ(q.PopMany(&out, 10, absl::ZeroDuration()), 3u);
  EXPECT_EQ(out, (std::vector<std::string>{"a0", "b0", "a1"}));
}

TEST(FairQueueTest, PushManyWakesAWaitingConsumerWithTheWholeLot) {
  Queue q(1, {.count_max = 100, .bytes_max = 1000},
          Queue::Overflow::kRefuseNew);
  std::vector<std::string> out;
  std::thread consumer([&] { q.PopMany(&out, 100, absl::Seconds(30)); });
  // Whenever the consumer wakes, the lot is there: it was pushed under one
  // lock, so the consumer's single pop takes all of it.
  std::vector<Queue::Entry> entries = {{0, "x", 1}, {0, "y", 1}, {0, "z", 1}};
  std::vector<Queue::PushResult> results;
  q.PushMany(&entries, &results);
  consumer.join();
  EXPECT_EQ(out, (std::vector<std::string>{"x", "y", "z"}));
}

TEST(FairQueueTest, PushManyAfterCloseRefusesAll) {
  Queue q(1, {.count_max = 10, .bytes_max = 10}, Queue::Overflow::kRefuseNew);
  q.Close();
  std::vector<Queue::Entry> entries = {{0, "x", 1}, {0, "y", 1}};
  std::vector<Queue::PushResult> results;
  q.PushMany(&entries, &results);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].accepted);
  EXPECT_FALSE(results[1].accepted);
}

TEST(FairQueueTest, PopManyStopsAtItsByteCapAndKeepsTheTurn) {
  Queue q(2, {.count_max = 10, .bytes_max = 10000},
          Queue::Overflow::kRefuseNew);
  for (std::string s : {"a0", "a1", "a2"}) q.Push(0, s, 400);
  q.Push(1, "b0", 300);
  std::vector<std::string> out;
  // a0 (400) + b0 (300) fit 1000; a1 would make 1100.
  ASSERT_EQ(q.PopMany(&out, 10, absl::ZeroDuration(), 1000), 2u);
  EXPECT_EQ(out, (std::vector<std::string>{"a0", "b0"}));
  // The source that did not fit is first in turn next time.
  out.clear();
  ASSERT_EQ(q.PopMany(&out, 1, absl::ZeroDuration(), 1000), 1u);
  EXPECT_EQ(out, (std::vector<std::string>{"a1"}));
  // Source 1 is next: b1 fits the cap, a2 does not.
  q.Push(1, "b1", 1);
  out.clear();
  ASSERT_EQ(q.PopMany(&out, 10, absl::ZeroDuration(), 100), 1u);
  EXPECT_EQ(out, (std::vector<std::string>{"b1"}));
  // The first item is taken even when it alone is over the cap.
  out.clear();
  ASSERT_EQ(q.PopMany(&out, 10, absl::ZeroDuration(), 100), 1u);
  EXPECT_EQ(out, (std::vector<std::string>{"a2"}));
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

}  // namespace
}  // namespace pbft
