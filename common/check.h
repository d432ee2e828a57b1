// Always-on assertions for programming errors (never for bad input: that is
// an absl::Status, and Byzantine input is dropped and counted).
//
//   CHECK(cond);             aborts with file, line and the expression
//   CHECK_EQ(a, b);          ... and both values (also _NE _LT _LE _GT _GE)
//   CHECK_OK(status);        ... and the status message
//
// They stay on in release builds: a replica that continues past a broken
// invariant can sign a conflicting vote; one that aborts cannot.
#ifndef PBFT_LEDGER_COMMON_CHECK_H_
#define PBFT_LEDGER_COMMON_CHECK_H_

#include <concepts>
#include <sstream>
#include <string>
#include <type_traits>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pbft::internal {

[[noreturn]] void CheckFailed(const char* file, int line, const char* expr,
                              const std::string& detail);

template <typename T>
std::string CheckValueString(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_integral_v<T> || std::is_floating_point_v<T>) {
    return std::to_string(v);
  } else if constexpr (requires(std::ostream & os) { os << v; }) {
    std::ostringstream os;
    os << v;
    return os.str();
  } else {
    return "<unprintable>";
  }
}

template <typename A, typename B>
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE void CheckOpFailed(
    const char* file, int line, const char* expr, const A& a, const B& b) {
  // StrCat, not "(" + std::string&&: GCC 12 at -O3 reports a false
  // -Werror=restrict inside std::string::insert for the latter.
  CheckFailed(file, line, expr,
              absl::StrCat("(", CheckValueString(a), " vs. ",
                           CheckValueString(b), ")"));
}

template <typename Holds, typename A, typename B>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CheckOp(Holds holds, const A& a,
                                                 const B& b, const char* file,
                                                 int line, const char* expr) {
  if (ABSL_PREDICT_FALSE(!holds(a, b))) CheckOpFailed(file, line, expr, a, b);
}

}  // namespace pbft::internal

#define CHECK(cond)                                                 \
  do {                                                              \
    if (ABSL_PREDICT_FALSE(!(cond))) {                              \
      ::pbft::internal::CheckFailed(__FILE__, __LINE__, #cond, ""); \
    }                                                               \
  } while (0)

// One full-expression evaluates both operands, compares them and reports
// them, so an operand that refers into a temporary of `a` or `b` (a getter
// of a returned object) is read while that temporary still lives.
#define LEDGER_CHECK_OP_(a, op, b)                      \
  ::pbft::internal::CheckOp(                            \
      [](const auto& check_a_, const auto& check_b_) {  \
        return static_cast<bool>(check_a_ op check_b_); \
      },                                                \
      (a), (b), __FILE__, __LINE__, #a " " #op " " #b)

#define CHECK_EQ(a, b) LEDGER_CHECK_OP_(a, ==, b)
#define CHECK_NE(a, b) LEDGER_CHECK_OP_(a, !=, b)
#define CHECK_LT(a, b) LEDGER_CHECK_OP_(a, <, b)
#define CHECK_LE(a, b) LEDGER_CHECK_OP_(a, <=, b)
#define CHECK_GT(a, b) LEDGER_CHECK_OP_(a, >, b)
#define CHECK_GE(a, b) LEDGER_CHECK_OP_(a, >=, b)

#define CHECK_OK(expr)                                         \
  do {                                                         \
    const ::absl::Status check_status_ = (expr);               \
    if (ABSL_PREDICT_FALSE(!check_status_.ok())) {             \
      ::pbft::internal::CheckFailed(__FILE__, __LINE__, #expr, \
                                    check_status_.ToString()); \
    }                                                          \
  } while (0)

#endif  // PBFT_LEDGER_COMMON_CHECK_H_
