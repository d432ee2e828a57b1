// Process logging for the shell and the tools (spdlog). The PBFT core and
// the ledger state machine do not log: they report through their outputs.
//
//   InitLogging({.level = "info", .json = true, .component = "ledgerd"});
//   LOG_INFO("replica {} entered view {}", id, view);
//
// JSON mode writes one object per line: {"ts", "level", "component", "msg"}.
#ifndef PBFT_LEDGER_COMMON_LOGGING_H_
#define PBFT_LEDGER_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian's Abseil has its own string_view type; let fmt print it.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view v, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(
        fmt::string_view(v.data(), v.size()), ctx);
  }
};

namespace pbft {

struct LoggingOptions {
  std::string level = "info";  // trace, debug, info, warn, error, off.
  bool json = false;
  std::string component = "pbft-ledger";
};

// Fails with INVALID_ARGUMENT naming the level if it is unknown.
absl::Status InitLogging(const LoggingOptions& options);

}  // namespace pbft

#define LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define LOG_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define LOG_WARN(...) SPDLOG_WARN(__VA_ARGS__)
#define LOG_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)

#endif  // PBFT_LEDGER_COMMON_LOGGING_H_
