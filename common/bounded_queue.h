// A bounded multi-producer, multi-consumer FIFO queue. What does not fit is
// refused (TryPush returns false), never buffered: the caller counts it and
// answers RESOURCE_EXHAUSTED or drops it, as the protocol allows.
//
// Thread-safe. Close() wakes every waiter; after it, pushes fail and pops
// drain what is left, then return nothing.
#ifndef PBFT_LEDGER_COMMON_BOUNDED_QUEUE_H_
#define PBFT_LEDGER_COMMON_BOUNDED_QUEUE_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/check.h"

namespace pbft {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {
    CHECK_GT(capacity, 0u);
  }

  // False if the queue is full or closed.
  bool TryPush(T item) {
    absl::MutexLock l(&mu_);
    if (closed_ || items_.size() >= capacity_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  // Waits up to `timeout` for an item.
  std::optional<T> Pop(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &BoundedQueue::ReadyToPop),
                         timeout);
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  // Moves up to `max` items into `out` (appending), waiting up to `timeout`
  // for the first one. Returns how many were moved.
  size_t PopMany(std::vector<T>* out, size_t max, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &BoundedQueue::ReadyToPop),
                         timeout);
    size_t n = 0;
    while (n < max && !items_.empty()) {
      out->push_back(std::move(items_.front()));
      items_.pop_front();
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
    return items_.size();
  }
  size_t capacity() const { return capacity_; }

 private:
  bool ReadyToPop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || !items_.empty();
  }

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_BOUNDED_QUEUE_H_
