#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace ledger {

absl::Status InitLogging(const LoggingOptions& options) {
  spdlog::level::level_enum level = spdlog::level::from_str(options.level);
  // from_str maps anything unknown to "off"; only "off" itself may do that.
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log_level: unknown level '", options.level,
                     "' (trace, debug, info, warn, error, off)"));
  }
  auto logger = std::make_shared<spdlog::logger>(
      options.component, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_level(level);
  if (options.json) {
    // The message is escaped by the caller's formatting only for quotes and
    // backslashes in values we log; keep messages free of raw newlines.
    logger->set_pattern(
        absl::StrCat(
            R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":")",
            options.component, R"(","msg":"%v"})"),
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %L " + options.component + " %v",
                        spdlog::pattern_time_type::utc);
  }
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(level);
  return absl::OkStatus();
}

}  // namespace ledger
