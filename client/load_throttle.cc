#include "client/load_throttle.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pbft::client {

absl::StatusOr<std::shared_ptr<LoadThrottle>> LoadThrottle::Create(
    const Options& options) {
  if (!(options.k >= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("throttle.k: ", options.k, " must be at least 1"));
  }
  if (options.window < absl::Seconds(1) || options.window > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("throttle.window: ", absl::FormatDuration(options.window),
                     " must be between 1 s and 1 h"));
  }
  return std::shared_ptr<LoadThrottle>(new LoadThrottle(options));
}

LoadThrottle::LoadThrottle(const Options& options)
    : k_(options.k),
      seconds_(static_cast<size_t>(absl::ToInt64Seconds(options.window))),
      random_(std::random_device{}()) {}

LoadThrottle::Second& LoadThrottle::At(absl::Time now) {
  const int64_t second = absl::ToUnixSeconds(now);
  Second& s = seconds_[static_cast<uint64_t>(second) % seconds_.size()];
  if (s.second != second) s = Second{.second = second};
  return s;
}

double LoadThrottle::ShareLocked(absl::Time now) {
  const int64_t second = absl::ToUnixSeconds(now);
  const auto window = static_cast<int64_t>(seconds_.size());
  double requests = 0;
  double accepted = 0;
  for (const Second& s : seconds_) {
    if (s.second > second - window && s.second <= second) {
      requests += static_cast<double>(s.requests);
      accepted += static_cast<double>(s.accepted);
    }
  }
  return std::max(0.0, (requests - k_ * accepted) / (requests + 1));
}

bool LoadThrottle::Admit(absl::Time now, double draw) {
  absl::MutexLock l(&mu_);
  return AdmitLocked(now, draw);
}

bool LoadThrottle::Admit(absl::Time now) {
  absl::MutexLock l(&mu_);
  return AdmitLocked(now,
                     std::uniform_real_distribution<double>(0.0, 1.0)(random_));
}

bool LoadThrottle::AdmitLocked(absl::Time now, double draw) {
  if (draw >= ShareLocked(now)) return true;
  ++At(now).requests;
  ++refused_;
  return false;
}

void LoadThrottle::Ended(absl::Time now, bool accepted) {
  absl::MutexLock l(&mu_);
  Second& s = At(now);
  ++s.requests;
  if (accepted) ++s.accepted;
}

double LoadThrottle::RefusedShare(absl::Time now) {
  absl::MutexLock l(&mu_);
  return ShareLocked(now);
}

uint64_t LoadThrottle::refused() const {
  absl::MutexLock l(&mu_);
  return refused_;
}

}  // namespace pbft::client
