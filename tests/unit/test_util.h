// Helpers shared by unit tests.
#ifndef PBFT_LEDGER_TESTS_UNIT_TEST_UTIL_H_
#define PBFT_LEDGER_TESTS_UNIT_TEST_UTIL_H_

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace pbft::test {

// A fresh directory under the test's temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(::testing::TempDir()) /
            (std::string("pbft-ledger-") + info->test_suite_name() + "-" +
             info->name() + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace pbft::test

#endif  // PBFT_LEDGER_TESTS_UNIT_TEST_UTIL_H_
