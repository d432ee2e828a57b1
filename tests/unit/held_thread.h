// A job that holds a background thread of a leveldb::Env until released, as
// a long compaction would: what waits behind it shows in a test.
#ifndef PBFT_LEDGER_TESTS_UNIT_HELD_THREAD_H_
#define PBFT_LEDGER_TESTS_UNIT_HELD_THREAD_H_

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "leveldb/env.h"

namespace pbft::test {

class HeldThread {
 public:
  explicit HeldThread(leveldb::Env* env) { env->Schedule(&Hold, &state_); }
  HeldThread(const HeldThread&) = delete;
  HeldThread& operator=(const HeldThread&) = delete;
  // Releases the thread and waits until the job no longer uses this.
  ~HeldThread() { Release(); }

  // True once the job runs on the thread.
  bool WaitRunning(absl::Duration timeout) {
    return state_.running.WaitForNotificationWithTimeout(timeout);
  }

  void Release() {
    if (!state_.release.HasBeenNotified()) state_.release.Notify();
    state_.finished.WaitForNotification();
  }

 private:
  struct State {
    absl::Notification running;
    absl::Notification release;
    absl::Notification finished;
  };

  static void Hold(void* arg) {
    auto* state = static_cast<State*>(arg);
    state->running.Notify();
    state->release.WaitForNotification();
    state->finished.Notify();
  }

  State state_;
};

}  // namespace pbft::test

#endif  // PBFT_LEDGER_TESTS_UNIT_HELD_THREAD_H_
