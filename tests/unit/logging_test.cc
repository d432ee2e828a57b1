#include "common/logging.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace pbft {
namespace {

// Runs `fn` with stderr captured into a file; returns what it wrote.
template <typename F>
std::string CaptureStderr(F fn) {
  char path[] = "/tmp/logging_test_XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  std::fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  fn();
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(path);
  return ss.str();
}

TEST(LoggingTest, JsonLinesEscapeTheMessage) {
  ASSERT_TRUE(
      InitLogging({.level = "info", .json = true, .component = "test"}).ok());
  std::string out = CaptureStderr([] {
    LOG_INFO("quote \" backslash \\ newline\nend");
    LOG_DEBUG("hidden below the level");
  });
  EXPECT_NE(
      out.find(
          R"("level":"info","component":"test","msg":"quote \" backslash \\ newline\nend"})"),
      std::string::npos)
      << out;
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  // One line per record: the embedded newline was escaped.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(LoggingTest, UnknownLevelIsRefusedNamingTheFlag) {
  absl::Status s =
      InitLogging({.level = "loud", .json = false, .component = "x"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--log-level"), std::string::npos);
  EXPECT_TRUE(
      InitLogging({.level = "off", .json = false, .component = "x"}).ok());
}

}  // namespace
}  // namespace pbft
