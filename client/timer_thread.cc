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
  bool wake;
  Id id;
  {
    std::lock_guard<std::mutex> l(mu_);
    id = Id{when, seq_++};
    queue_.emplace(id, std::move(fn));
    // Wake the thread only if it would sleep past this item.
    wake = when < sleeping_until_;
    if (wake) {
      ++woken_;
      sleeping_until_ = Clock::time_point::min();  // Once is enough.
    }
  }
  if (wake) cv_.notify_all();
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

uint64_t TimerThread::woken() const {
  std::lock_guard<std::mutex> l(mu_);
  return woken_;
}

std::optional<std::chrono::steady_clock::time_point>
TimerThread::sleeping_until() const {
  std::lock_guard<std::mutex> l(mu_);
  if (sleeping_until_ == Clock::time_point::min()) return std::nullopt;
  return sleeping_until_;
}

void TimerThread::SleepUntil(std::unique_lock<std::mutex>& l,
                             Clock::time_point until) {
  sleeping_until_ = until;
  if (until == Clock::time_point::max()) {
    cv_.wait(l);
  } else {
    cv_.wait_until(l, until);
  }
  sleeping_until_ = Clock::time_point::min();
}

void TimerThread::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      SleepUntil(l, Clock::time_point::max());
      continue;
    }
    auto first = queue_.begin();
    // A copy: Cancel may erase the item while this waits.
    const Clock::time_point when = first->first.when;
    if (Clock::now() < when) {
      SleepUntil(l, when);
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
