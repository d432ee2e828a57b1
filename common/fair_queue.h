// A bounded queue fed by a fixed set of sources (one per peer replica, one
// for clients), each with its own share: at most `count_max` items and
// `bytes_max` bytes queued per source. Consumers take items round robin
// across sources, so a source that floods fills only its own share and
// never crowds out another's messages.
//
// What does not fit is never buffered. kRefuseNew (intake) refuses the new
// item and the caller counts it; kDropOldest (send queues, where PBFT
// retransmits what matters) drops the source's oldest items to make room
// and reports how many. An item alone in its source's queue is always
// accepted, so one message of the largest allowed size still goes through.
//
// Thread-safe. Close() wakes every waiter; after it, pushes fail and pops
// drain what is left, then return nothing. Wake() ends one wait early.
#ifndef PBFT_LEDGER_COMMON_FAIR_QUEUE_H_
#define PBFT_LEDGER_COMMON_FAIR_QUEUE_H_

#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/check.h"

namespace pbft {

struct QueueShare {
  size_t count_max = 0;
  size_t bytes_max = 0;
};

template <typename T>
class FairQueue {
 public:
  enum class Overflow { kRefuseNew, kDropOldest };
  struct PushResult {
    bool accepted = false;
    size_t dropped_oldest = 0;  // kDropOldest only.
  };

  FairQueue(size_t sources, QueueShare share, Overflow overflow)
      : share_(share), overflow_(overflow), sources_(sources) {
    CHECK_GT(sources, 0u);
    CHECK_GT(share.count_max, 0u);
    CHECK_GT(share.bytes_max, 0u);
  }

  // `source` < sources(); `bytes` is what the item is charged.
  PushResult Push(size_t source, T item, size_t bytes) {
    CHECK_LT(source, sources_.size());
    PushResult r;
    absl::MutexLock l(&mu_);
    if (closed_) return r;
    Source& s = sources_[source];
    while (!s.items.empty() && !Fits(s, bytes)) {
      if (overflow_ == Overflow::kRefuseNew) return r;
      s.bytes -= s.items.front().second;
      s.items.pop_front();
      --size_;
      ++r.dropped_oldest;
    }
    s.items.emplace_back(std::move(item), bytes);
    s.bytes += bytes;
    ++size_;
    r.accepted = true;
    return r;
  }

  // Moves up to `max` items into `out` (appending), one source at a time in
  // turn, waiting up to `timeout` for the first. Returns how many.
  size_t PopMany(std::vector<T>* out, size_t max, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &FairQueue::ReadyToPop),
                         timeout);
    woken_ = false;
    size_t n = 0;
    while (n < max && size_ > 0) {
      Source& s = sources_[next_];
      next_ = (next_ + 1) % sources_.size();
      if (s.items.empty()) continue;
      s.bytes -= s.items.front().second;
      out->push_back(std::move(s.items.front().first));
      s.items.pop_front();
      --size_;
      ++n;
    }
    return n;
  }

  // Ends the current or the next wait of PopMany, which may then return
  // nothing (a consumer woken for work of its own, not for an item).
  void Wake() {
    absl::MutexLock l(&mu_);
    woken_ = true;
  }

  void Close() {
    absl::MutexLock l(&mu_);
    closed_ = true;
  }
  bool closed() const {
    absl::MutexLock l(&mu_);
    return closed_;
  }
  size_t size() const {
    absl::MutexLock l(&mu_);
    return size_;
  }
  size_t bytes(size_t source) const {
    absl::MutexLock l(&mu_);
    return sources_.at(source).bytes;
  }
  size_t sources() const { return sources_.size(); }
  const QueueShare& share() const { return share_; }

 private:
  struct Source {
    std::deque<std::pair<T, size_t>> items;
    size_t bytes = 0;
  };

  bool Fits(const Source& s, size_t bytes) const {
    return s.items.size() < share_.count_max &&
           s.bytes + bytes <= share_.bytes_max;
  }
  bool ReadyToPop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || woken_ || size_ > 0;
  }

  const QueueShare share_;
  const Overflow overflow_;
  mutable absl::Mutex mu_;
  std::vector<Source> sources_ ABSL_GUARDED_BY(mu_);
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_FAIR_QUEUE_H_
