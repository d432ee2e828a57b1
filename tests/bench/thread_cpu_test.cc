// Reading threads' CPU from /proc and summing it by thread name
// (tools/bench/thread_cpu.h).
#include "tools/bench/thread_cpu.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace pbft::bench {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

class ThreadCpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("thread_cpu_" + std::to_string(getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ThreadCpuTest, ReadsSchedstatElseStatAndSkipsWhatIsNotAThread) {
  Write(dir_ / "10" / "comm", "sdk-poll\n");
  Write(dir_ / "10" / "schedstat", "2500000000 7 9\n");
  // No schedstat: utime 300 and stime 100 ticks, after a name holding
  // spaces and parentheses.
  Write(dir_ / "11" / "comm", "odd (name)\n");
  Write(dir_ / "11" / "stat",
        "11 (odd (name)) S 1 11 11 0 -1 4194560 100 0 0 0 300 100 0 0 20 0 "
        "1 0 5 0 0\n");
  Write(dir_ / "not-a-tid" / "comm", "x\n");
  Write(dir_ / "12" / "schedstat", "1 1 1\n");  // No comm: gone.
  // Unreadable tick counts read as none, not as a failure.
  Write(dir_ / "13" / "comm", "bad\n");
  Write(dir_ / "13" / "stat", "13 (bad) S 1 2 3 4 5 6 7 8 9 10 x y\n");
  const std::map<int64_t, ThreadCpu> t = ReadThreadCpu(dir_.string());
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.at(13).seconds, 0.0);
  EXPECT_EQ(t.at(10).name, "sdk-poll");
  EXPECT_DOUBLE_EQ(t.at(10).seconds, 2.5);
  EXPECT_EQ(t.at(11).name, "odd (name)");
  EXPECT_DOUBLE_EQ(t.at(11).seconds,
                   400.0 / static_cast<double>(sysconf(_SC_CLK_TCK)));
}

TEST_F(ThreadCpuTest, MissingDirectoryReadsAsNoThreads) {
  EXPECT_TRUE(ReadThreadCpu((dir_ / "absent").string()).empty());
}

TEST(CpuByNameTest, SumsDifferencesByNameLargestFirst) {
  const std::map<int64_t, ThreadCpu> before = {{1, {"loop", 1.0}},
                                               {2, {"loop", 2.0}},
                                               {3, {"poll", 5.0}},
                                               {4, {"gone", 9.0}},
                                               {5, {"old", 1.0}}};
  const std::map<int64_t, ThreadCpu> after = {
      {1, {"loop", 1.5}},     // +0.5
      {2, {"loop", 2.25}},    // +0.25
      {3, {"poll", 6.0}},     // +1.0
      {5, {"renamed", 3.0}},  // +2.0, under its new name
      {6, {"new", 0.125}}};   // started meanwhile: all of it
  const auto by = CpuByName(before, after);
  ASSERT_EQ(by.size(), 4u);
  EXPECT_EQ(by[0], std::make_pair(std::string("renamed"), 2.0));
  EXPECT_EQ(by[1], std::make_pair(std::string("poll"), 1.0));
  EXPECT_EQ(by[2], std::make_pair(std::string("loop"), 0.75));
  EXPECT_EQ(by[3], std::make_pair(std::string("new"), 0.125));
}

TEST(CpuByNameTest, NeverNegative) {
  const auto by = CpuByName({{1, {"a", 2.0}}}, {{1, {"a", 1.0}}});
  ASSERT_EQ(by.size(), 1u);
  EXPECT_EQ(by[0].second, 0.0);
}

TEST(CpuByNameTest, CountsABusyThreadOfThisProcessUnderItsName) {
  const std::map<int64_t, ThreadCpu> before = ReadThreadCpu();
  std::atomic<double> used{0};
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "cpu-test-spin");
    const double start = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
    while (CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - start < 0.05) {
    }
    used = CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - start;
    // Stay until read, so the thread is in the second reading.
    while (used.load() >= 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (used.load() == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto by = CpuByName(before, ReadThreadCpu());
  used = -1;
  t.join();
  double spin = 0;
  for (const auto& [name, seconds] : by) {
    if (name == "cpu-test-spin") spin = seconds;
  }
  EXPECT_GE(spin, 0.04);
  EXPECT_LT(spin, 5.0);
}

}  // namespace
}  // namespace pbft::bench
