// The SDK's timer thread, one per Client.
#ifndef PBFT_LEDGER_CLIENT_TIMER_THREAD_H_
#define PBFT_LEDGER_CLIENT_TIMER_THREAD_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "client/replica_session.h"

namespace pbft::client {

// Runs callbacks at given times on one thread: retries, widening a request
// to every replica, and the deadlines of requests sent on a Session
// (cancelled when answered, so an answered request does not wake the
// thread). A callback runs and is destroyed without the lock held, so what
// it holds may schedule or cancel timers as it goes; so may the callbacks
// that never ran, which the destructor destroys.
class TimerThread final : public Timers {
 public:
  TimerThread();
  ~TimerThread() override;

  Id At(std::chrono::steady_clock::time_point when, std::function<void()> fn);
  Id After(absl::Duration d, std::function<void()> fn) override;
  void Cancel(const Id& id) override;

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  // By time, then in the order scheduled.
  std::map<Id, std::function<void()>> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_TIMER_THREAD_H_
