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
// drain what is left, then return nothing.
#ifndef PBFT_LEDGER_COMMON_FAIR_QUEUE_H_
#define PBFT_LEDGER_COMMON_FAIR_QUEUE_H_

#include <cstddef>
#include <cstdint>
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
    absl::MutexLock l(&mu_);
    return PushLocked(source, std::move(item), bytes);
  }

  // One item of PushMany: where it goes and what it is charged.
  struct Entry {
    size_t source = 0;
    T item;
    size_t bytes = 0;
  };
  // Push for each entry in order, each judged against its source's share
  // exactly as Push judges it, but under one lock: a waiting consumer is
  // woken once for the lot, not once per item. Moves the accepted items
  // out (a refused entry keeps its item); `results` gets one PushResult
  // per entry.
  void PushMany(std::vector<Entry>* entries, std::vector<PushResult>* results) {
    results->clear();
    results->reserve(entries->size());
    for (const Entry& e : *entries) CHECK_LT(e.source, sources_.size());
    absl::MutexLock l(&mu_);
    for (Entry& e : *entries) {
      results->push_back(PushLocked(e.source, std::move(e.item), e.bytes));
    }
  }

  // Moves up to `max` items into `out` (appending), one source at a time in
  // turn, waiting up to `timeout` for the first. Stops before an item that
  // would take the bytes taken over `bytes_max` (the first is always
  // taken). Returns how many.
  size_t PopMany(std::vector<T>* out, size_t max, absl::Duration timeout,
                 size_t bytes_max = SIZE_MAX) {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &FairQueue::ReadyToPop),
                         timeout);
    size_t n = 0;
    size_t bytes = 0;
    while (n < max && size_ > 0) {
      Source& s = sources_[next_];
      if (s.items.empty()) {
        next_ = (next_ + 1) % sources_.size();
        continue;
      }
      const size_t item_bytes = s.items.front().second;
      if (n > 0 && (bytes >= bytes_max || item_bytes > bytes_max - bytes)) {
        break;  // The source stays next in turn.
      }
      next_ = (next_ + 1) % sources_.size();
      bytes += item_bytes;
      s.bytes -= item_bytes;
      out->push_back(std::move(s.items.front().first));
      s.items.pop_front();
      --size_;
      ++n;
    }
    return n;
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

  // Moves `item` in only if it is accepted.
  PushResult PushLocked(size_t source, T&& item, size_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PushResult r;
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

  bool Fits(const Source& s, size_t bytes) const {
    return s.items.size() < share_.count_max &&
           s.bytes + bytes <= share_.bytes_max;
  }
  bool ReadyToPop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || size_ > 0;
  }

  const QueueShare share_;
  const Overflow overflow_;
  mutable absl::Mutex mu_;
  std::vector<Source> sources_ ABSL_GUARDED_BY(mu_);
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_FAIR_QUEUE_H_
