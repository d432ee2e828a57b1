// Admission by expected wait: whether a replica lets in one more call that
// will wait for execution, judged by how long the calls already waiting at
// it would take at the rate it has been answering them (Little's law:
// waiting / rate).
//
// A count of waiting calls differs from replica to replica: the SDK sends
// a call to f+1 replicas, so a backup holds a share of the primary's
// calls. A wait is about the same at every replica a client calls,
// whatever its share, because all of them wait for the same order, so the
// replicas refuse at about the same load.
//
// Each replica still decides alone, and its wait is never exactly another's.
// So that their verdicts agree all the same, a replica does not refuse every
// call once its wait passes a line; it refuses a share of them that grows
// with the wait (none at half of `wait_max`, all at `wait_max`), and which
// calls make up that share is the same at every replica: a call's draw
// (CallDraw), a number in [0, 1) hashed from its client id, its request
// number and the current second, is refused where it is below the share.
// Two replicas refusing 40% and 50% of the calls then disagree on 10% of
// them, where with one line each they would disagree on all of the calls
// arriving while one is over it and the other not. A call one refused and
// another admitted is ordered through the other; under an overload whose
// clients do not back off that wastes enough to lower what is served,
// which is why ledgerd leaves it off unless configured (docs/operations.md,
// "Admission by expected wait").
//
// The second in the draw gives a call that is refused and sent again a new
// draw the next second: the same request is not refused to its deadline
// while others pass. A client that chooses its request numbers can choose
// their draws, which lets it in first under the same per-client bounds as
// every other client; the draw orders calls under overload, it is no
// authorization.
//
// The rate is measured from the oldest answer in the window (one second):
// after an idle spell the first answers of a burst give the burst's rate.
// While nothing was answered in the window there is no rate to judge by,
// and calls are let in until `waiting_min` wait; beyond that, with none
// answered for a second, the replica has stalled and refuses. With a rate,
// no count lets a call in: a replica holding a third of the calls another
// holds would cross a count at three times the load, and the two would
// refuse different calls.
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
    // The expected wait at which every new call is refused (a share of
    // them from half of it); InfiniteDuration: never refuse.
    absl::Duration wait_max = absl::InfiniteDuration();
    // Calls let in while nothing was answered in the window.
    size_t waiting_min = 64;
    // The span the answer rate is measured over.
    absl::Duration window = absl::Seconds(1);
  };
  struct Verdict {
    bool admit;
    // waiting / rate; InfiniteDuration when nothing was answered in the
    // window.
    absl::Duration expected_wait;
    // The share of calls refused at that wait, in [0, 1]; 0 while nothing
    // was answered in the window and fewer than waiting_min calls wait.
    double refused_share;
  };

  AdmissionGate(Options options, absl::Time now);

  // `n` waiting calls were answered at `now`.
  void Answered(absl::Time now, uint64_t n);
  // A call with draw `draw` (CallDraw) arriving at `now` behind `waiting`
  // calls that wait for execution.
  Verdict Check(absl::Time now, size_t waiting, double draw);
  // The expected wait and the share of calls refused at `now` with
  // `waiting` calls waiting, without a call (for the metrics); `admit` is
  // true.
  Verdict Estimate(absl::Time now, size_t waiting);

  // The call's draw in [0, 1): the same for the same client id, request
  // number and second of `now` at every replica.
  static double CallDraw(uint64_t client_id, uint64_t request_number,
                         absl::Time now);
  // Answers per second from the oldest answer in the window ending at
  // `now`; 0 when there is none.
  double Rate(absl::Time now);

 private:
  static constexpr int kBuckets = 4;
  // The share of calls refused at an expected wait of `expected`.
  double RefusedShare(absl::Duration expected) const;
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
