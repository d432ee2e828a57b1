#include "client/first_replicas.h"

#include <algorithm>

namespace pbft::client {

FirstReplicas::FirstReplicas(const Options& options) : options_(options) {
  absl::MutexLock l(&mu_);
  widen_after_ = options_.widen_after_initial;
  avoid_until_.assign(options_.n, absl::InfinitePast());
  strikes_.assign(options_.n, 0);
}

std::vector<uint32_t> FirstReplicas::Choose(
    uint32_t needed, absl::Time now, std::optional<uint64_t>* primary_view) {
  const uint32_t n = options_.n;
  const uint64_t v = view_.load();
  if (primary_view != nullptr) primary_view->reset();
  std::vector<uint32_t> all(n);
  for (uint32_t r = 0; r < n; ++r) all[r] = r;
  if (needed >= n) return all;
  absl::MutexLock l(&mu_);
  ++counts_.ordered_sends;
  const auto primary = static_cast<uint32_t>(v % n);
  if (options_.send_to_all || avoid_until_[primary] > now) {
    ++counts_.sent_to_all_first;
    return all;
  }
  std::vector<uint32_t> out = {primary};
  const uint64_t start = options_.client_id % (n - 1);
  for (uint64_t i = 0; i < n - 1 && out.size() < needed; ++i) {
    const auto r =
        static_cast<uint32_t>((primary + 1 + (start + i) % (n - 1)) % n);
    if (avoid_until_[r] <= now) out.push_back(r);
  }
  if (out.size() < needed) {
    ++counts_.sent_to_all_first;
    return all;
  }
  if (primary_view != nullptr) *primary_view = v;
  return out;
}

ClientStats FirstReplicas::counts() const {
  absl::MutexLock l(&mu_);
  return counts_;
}

void FirstReplicas::CountWidened(WidenCause cause) {
  absl::MutexLock l(&mu_);
  switch (cause) {
    case WidenCause::kTimer:
      ++counts_.widened_by_timer;
      return;
    case WidenCause::kEarly:
      ++counts_.widened_early;
      return;
    case WidenCause::kHedge:
      ++counts_.widened_by_hedge;
      return;
  }
}

absl::Duration FirstReplicas::WidenAfter() {
  absl::MutexLock l(&mu_);
  return widen_after_;
}

void FirstReplicas::NoteLatency(absl::Duration latency) {
  absl::MutexLock l(&mu_);
  if (!sampled_) {
    sampled_ = true;
    smoothed_ = latency;
    variation_ = latency / 2;
  } else {
    variation_ = (3 * variation_ + absl::AbsDuration(smoothed_ - latency)) / 4;
    smoothed_ = (7 * smoothed_ + latency) / 8;
  }
  widen_after_ = std::clamp(smoothed_ + 4 * variation_,
                            options_.widen_after_min, options_.widen_after_max);
}

void FirstReplicas::NoteWidenedByTimer(const std::vector<uint32_t>& silent,
                                       absl::Time now) {
  {
    absl::MutexLock l(&mu_);
    widen_after_ = std::min(2 * widen_after_, options_.widen_after_max);
  }
  Strike(silent, now);
}

void FirstReplicas::Strike(const std::vector<uint32_t>& silent,
                           absl::Time now) {
  absl::MutexLock l(&mu_);
  for (uint32_t r : silent) {
    if (strikes_[r] == 0) {
      strikes_[r] = kAnswersPerStrike;
      continue;
    }
    strikes_[r] = 0;
    avoid_until_[r] = now + options_.avoid_for;
    ++counts_.replicas_left_out;
  }
}

void FirstReplicas::NoteAnswered(const std::set<uint32_t>& replicas) {
  absl::MutexLock l(&mu_);
  for (uint32_t r : replicas) {
    if (r < strikes_.size() && strikes_[r] > 0) --strikes_[r];
  }
}

void FirstReplicas::Avoid(uint32_t replica, absl::Time now) {
  absl::MutexLock l(&mu_);
  avoid_until_[replica] = now + options_.avoid_for;
  ++counts_.replicas_left_out;
}

void FirstReplicas::NoteView(uint64_t view) {
  uint64_t prev = view_.load();
  while (prev < view && !view_.compare_exchange_weak(prev, view)) {
  }
}

}  // namespace pbft::client
