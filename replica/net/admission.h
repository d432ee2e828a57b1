// Admission by expected wait: whether a replica lets in one more call that
// will wait for execution, judged by how long the calls already waiting at
// it would take at the rate it has been answering them (Little's law:
// waiting / rate).
//
// A count of waiting calls differs from replica to replica: the SDK sends
// a call to f+1 replicas, so a backup holds a share of the primary's
// calls. A wait is about the same at every replica a client calls,
// whatever its share, because all of them wait for the same order, so the
// replicas refuse at about the same load. Each still decides alone: near
// the bound their verdicts differ, and a call one refused and another
// admitted is ordered through the other; under an overload whose clients
// do not back off that wastes enough to lower what is served, which is
// why ledgerd leaves it off unless configured (docs/operations.md,
// "Admission by expected wait").
//
// Fewer than `waiting_min` waiting calls are always let in: an idle
// replica, or one that has answered too few calls to measure a rate, does
// not refuse the first calls of a burst.
//
// Thread-safe.
#ifndef PBFT_LEDGER_REPLICA_NET_ADMISSION_H_
#define PBFT_LEDGER_REPLICA_NET_ADMISSION_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pbft::net {

class AdmissionGate {
 public:
  struct Options {
    // The expected wait beyond which a call is refused; InfiniteDuration:
    // never refuse.
    absl::Duration wait_max = absl::InfiniteDuration();
    size_t waiting_min = 64;
    // The span the answer rate is measured over.
    absl::Duration window = absl::Seconds(1);
  };
  struct Verdict {
    bool admit;
    // waiting / rate; InfiniteDuration when nothing was answered in the
    // window.
    absl::Duration expected_wait;
  };

  AdmissionGate(Options options, absl::Time now);

  // `n` waiting calls were answered at `now`.
  void Answered(absl::Time now, uint64_t n);
  // A call arriving at `now` behind `waiting` calls that wait for execution.
  Verdict Check(absl::Time now, size_t waiting);

  // Answers per second over the window ending at `now`.
  double Rate(absl::Time now);

 private:
  static constexpr int kBuckets = 4;
  // Moves the ring to the bucket of `now`, clearing those it passes.
  void AdvanceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double RateLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const absl::Duration width_;  // window / kBuckets
  const absl::Time start_;
  absl::Mutex mu_;
  int64_t current_ ABSL_GUARDED_BY(mu_) = 0;  // Bucket number of the newest.
  std::array<uint64_t, kBuckets> counts_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_ADMISSION_H_
