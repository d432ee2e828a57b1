// The SDK's timer thread, one per Client.
#ifndef PBFT_LEDGER_CLIENT_TIMER_THREAD_H_
#define PBFT_LEDGER_CLIENT_TIMER_THREAD_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/time/time.h"
#include "client/replica_session.h"

namespace pbft::client {

// Runs callbacks at given times on one thread: retries, widening a request
// to every replica, and the deadlines of requests sent on a Session
// (cancelled when answered). The thread wakes at the earliest item's time,
// also if it was cancelled meanwhile, and for a new item only if it is due
// before that time: a client sending one request after another wakes it
// about once per request. A callback runs and is destroyed without the lock
// held, so what it holds may schedule or cancel timers as it goes; so may the
// callbacks that never ran, which the destructor destroys.
class TimerThread final : public Timers {
 public:
  TimerThread();
  ~TimerThread() override;

  Id At(std::chrono::steady_clock::time_point when, std::function<void()> fn);
  Id After(absl::Duration d, std::function<void()> fn) override;
  void Cancel(const Id& id) override;

  // How often a new item woke the thread (for tests: an item due no earlier
  // than the time the thread sleeps until does not).
  uint64_t woken() const;
  // The time the thread sleeps until, once it sleeps (time_point::max():
  // until woken); nullopt while it is awake.
  std::optional<std::chrono::steady_clock::time_point> sleeping_until() const;

 private:
  using Clock = std::chrono::steady_clock;
  void Run();
  // Sleeps until `until` or a notification, with `sleeping_until_` set.
  void SleepUntil(std::unique_lock<std::mutex>& l, Clock::time_point until);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // By time, then in the order scheduled.
  std::map<Id, std::function<void()>> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  // When the thread wakes by itself; min() while it is awake (it looks at
  // the queue before it sleeps again, so nothing needs to wake it).
  // Cancelling an item does not wake it: it wakes at that item's time and
  // finds the next, so a new item due after that time needs no wake-up
  // either (a client's next request's timer, mostly).
  Clock::time_point sleeping_until_ = Clock::time_point::min();
  uint64_t woken_ = 0;
  std::thread thread_;
};

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_TIMER_THREAD_H_
