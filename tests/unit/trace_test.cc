// common/trace.h: the event file of a process, and no file without the
// variable. Each case runs in a fresh process (a "threadsafe" death test
// re-executes the binary), since the variable is read once per process.
#include "common/trace.h"

#include <glob.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pbft::trace {
namespace {

std::vector<std::string> Files(const std::string& prefix) {
  glob_t g;
  std::vector<std::string> out;
  if (glob((prefix + ".*").c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return out;
}

TEST(TraceTest, EventsGoToTheNamedFileOfTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string prefix = ::testing::TempDir() + "trace_test_events";
  for (const std::string& f : Files(prefix)) std::remove(f.c_str());
  EXPECT_EXIT(
      {
        setenv("PBFT_TRACE_EVENTS", prefix.c_str(), 1);
        if (!Enabled()) std::_Exit(2);
        Event("send", 3, ~uint64_t{0});
        Event("in", 2, 1);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  const std::vector<std::string> files = Files(prefix);
  ASSERT_EQ(files.size(), 1u);
  std::ifstream in(files[0]);
  std::string line;
  std::vector<std::string> what;
  long long last_us = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    long long us = 0;
    std::string name;
    unsigned long long a = 0, b = 0;
    ASSERT_TRUE(fields >> us >> name >> a >> b) << line;
    EXPECT_GE(us, last_us);
    last_us = us;
    what.push_back(name + " " + std::to_string(a) + " " + std::to_string(b));
  }
  EXPECT_EQ(what, (std::vector<std::string>{"send 3 18446744073709551615",
                                            "in 2 1"}));
  std::remove(files[0].c_str());
}

TEST(TraceTest, NothingWithoutTheVariable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        unsetenv("PBFT_TRACE_EVENTS");
        Event("send", 1, 2);
        std::_Exit(Enabled() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace pbft::trace
