// pbft::client::LoadThrottle: a client that sees the cluster refuse its
// ordered requests for load refuses a share of new ones itself, without
// signing or sending them (docs/api.md, "Throttling in the client").
//
// A refused call costs the cluster almost what an admitted one costs to
// receive: each replica asked reads it, scans it and answers
// RESOURCE_EXHAUSTED, and the client signed it and waits for f+1 of those
// answers. Clients that keep sending at twice what the cluster serves have
// the replicas answer several refusals for each call served.
// The throttle counts, over the last `window`, the calls that ended
// (`requests`: those it refused, at once, and those sent, when they ended)
// and of them the calls the cluster accepted (`accepted`: any end but a
// refusal for load or no answer), and refuses a new call with probability
//
//     max(0, (requests - k * accepted) / (requests + 1))
//
// so the cluster goes on receiving about k times what it accepts: enough
// to notice at once when it accepts more, few enough that refusing costs
// it little. With nothing refused the share is 0 (requests <= accepted).
// This is the adaptive throttling of Google's "Handling Overload" (Site
// Reliability Engineering, chapter 21), with k = 2 there, except that a
// sent call counts when it ends, not when it is sent: counted at the send,
// the calls in flight at the start of a burst would count as not accepted
// and the throttle would refuse calls the cluster never refused.
//
// After the cluster refused nearly everything (a view change), the share
// of calls sent grows by about k times per window as they are accepted:
// a larger k recovers sooner and wastes more on refusals meanwhile.
//
// Clients created with one LoadThrottle (ClientOptions::throttle) share
// what they learn: a process with many keys reacts as one client.
//
// Thread-safe.
#ifndef PBFT_LEDGER_CLIENT_LOAD_THROTTLE_H_
#define PBFT_LEDGER_CLIENT_LOAD_THROTTLE_H_

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pbft::client {

class LoadThrottle {
 public:
  struct Options {
    // How many times what the cluster accepts it goes on receiving: at
    // least 1 (1: none beyond what it accepted; the throttle then reacts
    // slowest to a cluster that recovers).
    double k = 2.0;
    // How far back the counts go: whole seconds, at least one.
    absl::Duration window = absl::Seconds(10);
  };
  // INVALID_ARGUMENT naming the field when `options` is out of range.
  static absl::StatusOr<std::shared_ptr<LoadThrottle>> Create(
      const Options& options);

  // Whether a call about to be sent at `now` may go; a call refused here is
  // counted at once. `draw` is uniform in [0, 1): the call is refused when
  // it is below the refused share.
  bool Admit(absl::Time now, double draw);
  // Admit with a draw of its own.
  bool Admit(absl::Time now);
  // A call that Admit let through ended at `now`, accepted by the cluster
  // or not.
  void Ended(absl::Time now, bool accepted);
  // The share of new calls refused at `now`.
  double RefusedShare(absl::Time now);

  // Calls Admit refused since the throttle was created.
  uint64_t refused() const;

 private:
  explicit LoadThrottle(const Options& options);

  struct Second {
    int64_t second = -1;  // Unix second these counts are for.
    uint64_t requests = 0;
    uint64_t accepted = 0;
  };
  // The counts of `now`'s second, reset if they were an older second's.
  Second& At(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double ShareLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AdmitLocked(absl::Time now, double draw)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double k_;
  mutable absl::Mutex mu_;
  std::vector<Second> seconds_ ABSL_GUARDED_BY(mu_);  // A ring, by second.
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_LOAD_THROTTLE_H_
