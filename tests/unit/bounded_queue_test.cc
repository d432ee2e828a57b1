#include "common/bounded_queue.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace pbft {
namespace {

TEST(BoundedQueueTest, RefusesBeyondCapacity) {
  BoundedQueue<int> q(2);
  EXPECT_TRUE(q.TryPush(1));
  EXPECT_TRUE(q.TryPush(2));
  EXPECT_FALSE(q.TryPush(3));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.Pop(absl::ZeroDuration()), 1);
  EXPECT_TRUE(q.TryPush(3));
  std::vector<int> out;
  EXPECT_EQ(q.PopMany(&out, 10, absl::ZeroDuration()), 2u);
  EXPECT_EQ(out, (std::vector<int>{2, 3}));
  EXPECT_EQ(q.Pop(absl::ZeroDuration()), std::nullopt);
}

TEST(BoundedQueueTest, CloseWakesWaitersAndRefusesPushes) {
  BoundedQueue<int> q(4);
  std::thread t([&] { EXPECT_EQ(q.Pop(absl::Seconds(30)), std::nullopt); });
  q.Close();
  t.join();
  EXPECT_FALSE(q.TryPush(1));
}

TEST(BoundedQueueTest, ManyProducersOneConsumerLoseNothingAccepted) {
  BoundedQueue<int> q(64);
  std::atomic<int> accepted{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (q.TryPush(i)) accepted.fetch_add(1);
      }
    });
  }
  int consumed = 0;
  std::thread consumer([&] {
    while (auto v = q.Pop(absl::Milliseconds(200))) ++consumed;
  });
  for (auto& t : producers) t.join();
  consumer.join();
  EXPECT_EQ(consumed, accepted.load());
  EXPECT_GT(accepted.load(), 0);
}

}  // namespace
}  // namespace pbft
