#include "client/timer_thread.h"

#include <algorithm>

#include "common/thread_name.h"

namespace pbft::client {

TimerThread::TimerThread()
    : thread_([this] {
        NameThisThread("sdk-timer");
        Run();
      }) {}

TimerThread::~TimerThread() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // The callbacks that never ran are destroyed here, unlocked and while
  // this object is whole: what they hold (the last reference to a call)
  // may cancel or add timers as it goes.
  while (true) {
    std::map<Id, std::function<void()>> pending;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (queue_.empty()) break;
      pending.swap(queue_);
    }
  }
}

Timers::Id TimerThread::At(std::chrono::steady_clock::time_point when,
                           std::function<void()> fn) {
  bool earliest;
  Id id;
  {
    std::lock_guard<std::mutex> l(mu_);
    id = Id{when, seq_++};
    earliest = queue_.empty() || id < queue_.begin()->first;
    queue_.emplace(id, std::move(fn));
  }
  // The thread sleeps until the earliest item: wake it only for an
  // earlier one.
  if (earliest) cv_.notify_all();
  return id;
}

Timers::Id TimerThread::After(absl::Duration d, std::function<void()> fn) {
  return At(std::chrono::steady_clock::now() +
                absl::ToChronoNanoseconds(std::max(d, absl::ZeroDuration())),
            std::move(fn));
}

void TimerThread::Cancel(const Id& id) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.erase(id);  // Nothing if it ran already.
}

void TimerThread::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      cv_.wait(l);
      continue;
    }
    auto first = queue_.begin();
    // A copy: Cancel may erase the item while this waits.
    const std::chrono::steady_clock::time_point when = first->first.when;
    if (std::chrono::steady_clock::now() < when) {
      cv_.wait_until(l, when);
      continue;
    }
    std::function<void()> fn = std::move(first->second);
    queue_.erase(first);
    l.unlock();
    fn();
    fn = nullptr;  // Destroyed unlocked too.
    l.lock();
  }
}

}  // namespace pbft::client
