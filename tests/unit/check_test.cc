// CHECK and CHECK_op: they pass silently, abort naming the expression and
// both values, and read their operands while every temporary of the
// expression is still alive (an operand may be a reference into one).
#include "common/check.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace pbft {
namespace {

// A reference into a temporary Holder stays valid until the end of the
// full-expression that made the Holder, and no further.
struct Holder {
  std::string text;
  const std::string& value() const { return text; }
};

Holder Make(const char* s) { return Holder{s}; }

TEST(CheckTest, OperandsThatReferToTemporariesAreReadWhileTheyLive) {
  // A long string is on the heap, so AddressSanitizer sees a read of a
  // freed one (and without it the comparison would read garbage).
  const std::string long_text(100, 'x');
  CHECK_EQ(Make(long_text.c_str()).value(), long_text);
  CHECK_EQ(long_text, Make(long_text.c_str()).value());
  CHECK_NE(Make("a").value(), Make("b").value());
  CHECK_LT(Make("a").value(), Make("b").value());
  CHECK_LE(Make("a").value().size(), Make("b").value().size());
}

TEST(CheckTest, EachOperandIsEvaluatedOnce) {
  int calls = 0;
  auto next = [&calls] { return ++calls; };
  CHECK_EQ(next(), 1);
  CHECK_GE(next(), 2);
  EXPECT_EQ(calls, 2);
}

TEST(CheckDeathTest, AFailedCheckNamesTheExpressionAndBothValues) {
  const int three = 3;
  EXPECT_DEATH(CHECK_EQ(three, 4), "three == 4.*\\(3 vs\\. 4\\)");
  EXPECT_DEATH(CHECK_GT(Make("a").value(), Make("b").value()),
               "\\(a vs\\. b\\)");
  EXPECT_DEATH(CHECK(three == 4), "three == 4");
  EXPECT_DEATH(CHECK_OK(absl::InternalError("disk gone")), "disk gone");
}

}  // namespace
}  // namespace pbft
