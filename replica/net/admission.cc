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
  // The newest bucket is only partly over. The span runs from the start of
  // the oldest bucket with answers in it (at most the window, at most as
  // far back as the gate has lived) to now: after an idle spell the first
  // answers of a burst measure the burst, not the quiet before it.
  const absl::Duration into_current =
      std::max(absl::ZeroDuration(),
               (now - start_) - width_ * static_cast<double>(current_));
  const int64_t full = std::min<int64_t>(current_, kBuckets - 1);
  uint64_t answered = 0;
  int64_t oldest = -1;  // Full buckets between the oldest answered and now.
  for (int64_t back = full; back >= 0; --back) {
    const uint64_t c =
        counts_[static_cast<size_t>((current_ - back) % kBuckets)];
    if (c > 0 && oldest < 0) oldest = back;
    answered += c;
  }
  if (answered == 0) return 0;
  const absl::Duration span =
      std::max(width_ * static_cast<double>(oldest) + into_current,
               absl::Milliseconds(1));
  return static_cast<double>(answered) / absl::ToDoubleSeconds(span);
}

double AdmissionGate::Rate(absl::Time now) {
  absl::MutexLock l(&mu_);
  return RateLocked(now);
}

namespace {

// SplitMix64's finalizer: every input bit moves every output bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

double AdmissionGate::CallDraw(uint64_t client_id, uint64_t request_number,
                               absl::Time now) {
  const uint64_t second = static_cast<uint64_t>(absl::ToUnixSeconds(now));
  const uint64_t h = Mix(Mix(Mix(client_id) ^ request_number) ^
                         (second * 0x9e3779b97f4a7c15ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;  // 53 bits: [0, 1).
}

double AdmissionGate::RefusedShare(absl::Duration expected) const {
  if (options_.wait_max == absl::InfiniteDuration()) return 0;
  if (expected >= options_.wait_max) return 1;
  const absl::Duration half = options_.wait_max / 2;
  if (expected <= half) return 0;
  return absl::FDivDuration(expected - half, options_.wait_max - half);
}

AdmissionGate::Verdict AdmissionGate::Check(absl::Time now, size_t waiting,
                                            double draw) {
  double rate;
  {
    absl::MutexLock l(&mu_);
    rate = RateLocked(now);
  }
  const absl::Duration expected =
      rate > 0 ? absl::Seconds(static_cast<double>(waiting) / rate)
               : absl::InfiniteDuration();
  const double share = RefusedShare(expected);
  // With a rate to judge by, the share alone decides: a count would differ
  // between replicas holding different shares of the same calls.
  const bool unmeasured = rate <= 0 && waiting < options_.waiting_min;
  const bool admit = unmeasured || draw >= share;
  return {admit, expected, unmeasured ? 0.0 : share};
}

AdmissionGate::Verdict AdmissionGate::Estimate(absl::Time now, size_t waiting) {
  if (waiting == 0) return {true, absl::ZeroDuration(), 0.0};
  Verdict v = Check(now, waiting, 1.0);
  v.admit = true;
  return v;
}

}  // namespace pbft::net
