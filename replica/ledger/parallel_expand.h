// Applies a block's state-hash updates (StateHash::Expand, then add or
// remove the element) on a helper thread and the calling thread together,
// for the ledger's per-block state digest update.
//
// Each thread sums the jobs it claims into its own partial StateHash, right
// after expanding them (the 2 KB lane vector is still in its cache), and
// Finish() adds the partial sums into the caller's hash. Each job is a pure
// function of its inputs and the LtHash sum is lane-wise addition modulo
// 2^16 (commutative and associative), so which thread does which job never
// changes a single bit of the digest. The helper is
// an optimisation only: if it is slow to wake (a loaded machine), Finish()
// computes the remaining jobs on the calling thread and never waits for the
// helper to be scheduled, only for a job it has already claimed.
//
// Owned by the Ledger; Start()/Finish() are called from one thread (the
// ApplyBlock thread), in pairs. The helper thread starts on the first
// Start() with at least kParallelJobsMin jobs and is joined by the
// destructor.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_PARALLEL_EXPAND_H_
#define PBFT_LEDGER_REPLICA_LEDGER_PARALLEL_EXPAND_H_

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "replica/ledger/state_hash.h"

namespace pbft::ledger::internal {

class ParallelExpander {
 public:
  struct Job {
    // The element (key, value), expanded into *out, unless `expanded` is
    // set: an element expanded earlier (the ledger's cache), summed as is.
    absl::string_view key;
    absl::string_view value;
    StateHash::Lanes* out = nullptr;
    const StateHash::Lanes* expanded = nullptr;
    bool remove = false;  // Subtract the element instead of adding it.
  };
  // Below this many jobs the calling thread does them all (waking the
  // helper costs about as much as a dozen expansions).
  static constexpr size_t kParallelJobsMin = 32;

  // use_helper false: every job runs on the calling thread.
  explicit ParallelExpander(bool use_helper);
  ~ParallelExpander();
  ParallelExpander(const ParallelExpander&) = delete;
  ParallelExpander& operator=(const ParallelExpander&) = delete;

  // Hands out `jobs` (the helper may begin at once). `jobs` and what the
  // jobs point to must stay valid and unchanged until Finish() returns.
  void Start(const std::vector<Job>* jobs);
  // Runs the jobs nobody has claimed on the calling thread, then waits for
  // the ones the helper claimed. On return every job's `out` is written and
  // every job's element is added to (or removed from) *hash.
  void Finish(StateHash* hash);

  // Jobs the helper computed since construction (tests, figures).
  size_t helper_jobs() const { return helper_jobs_.load(); }

 private:
  // Claims and runs jobs until none is left, summing them into *sum;
  // returns how many it ran.
  size_t Drain(StateHash* sum);
  void HelperLoop();
  bool HelperIdle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !active_;
  }
  bool HelperHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || pending_;
  }

  const bool use_helper_;
  const std::vector<Job>* jobs_ = nullptr;  // Set by Start(), read by both.
  std::atomic<size_t> next_{0};             // Next unclaimed job.
  std::atomic<size_t> helper_jobs_{0};
  // The helper's partial sum of the current round (the helper writes it
  // while draining; Finish() reads it after the helper went idle).
  StateHash helper_sum_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;  // Work the helper may take.
  bool active_ ABSL_GUARDED_BY(mu_) = false;   // The helper is draining.
  std::thread helper_;                         // Started lazily.
};

}  // namespace pbft::ledger::internal

#endif  // PBFT_LEDGER_REPLICA_LEDGER_PARALLEL_EXPAND_H_
