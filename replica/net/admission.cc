#include "replica/net/admission.h"

#include <algorithm>

namespace pbft::net {

AdmissionGate::AdmissionGate(Options options, absl::Time now)
    : options_(options), width_(options.window / kBuckets), start_(now) {}

void AdmissionGate::AdvanceLocked(absl::Time now) {
  absl::Duration rest;
  const int64_t bucket =
      now <= start_ ? 0 : absl::IDivDuration(now - start_, width_, &rest);
  if (bucket <= current_) return;  // A clock that steps back stays put.
  const int64_t passed = std::min<int64_t>(bucket - current_, kBuckets);
  for (int64_t i = 1; i <= passed; ++i) {
    counts_[static_cast<size_t>((current_ + i) % kBuckets)] = 0;
  }
  current_ = bucket;
}

void AdmissionGate::Answered(absl::Time now, uint64_t n) {
  absl::MutexLock l(&mu_);
  AdvanceLocked(now);
  counts_[static_cast<size_t>(current_ % kBuckets)] += n;
}

double AdmissionGate::RateLocked(absl::Time now) {
  AdvanceLocked(now);
  uint64_t answered = 0;
  for (uint64_t c : counts_) answered += c;
  // The newest bucket is only partly over: the span is the full ones before
  // it (as many as the gate has lived) and the part of it gone by.
  const absl::Duration into_current =
      std::max(absl::ZeroDuration(),
               (now - start_) - width_ * static_cast<double>(current_));
  const int64_t full = std::min<int64_t>(current_, kBuckets - 1);
  const double span_s =
      absl::ToDoubleSeconds(width_ * static_cast<double>(full) + into_current);
  if (answered == 0 || span_s <= 0) return 0;
  return static_cast<double>(answered) / span_s;
}

double AdmissionGate::Rate(absl::Time now) {
  absl::MutexLock l(&mu_);
  return RateLocked(now);
}

AdmissionGate::Verdict AdmissionGate::Check(absl::Time now, size_t waiting) {
  double rate;
  {
    absl::MutexLock l(&mu_);
    rate = RateLocked(now);
  }
  const absl::Duration expected =
      rate > 0 ? absl::Seconds(static_cast<double>(waiting) / rate)
               : absl::InfiniteDuration();
  const bool admit =
      waiting < options_.waiting_min || expected <= options_.wait_max;
  return {admit, expected};
}

}  // namespace pbft::net
