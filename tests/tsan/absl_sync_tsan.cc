// ThreadSanitizer build only (PBFT_LEDGER_TSAN, tests/tsan.sh): makes the
// synchronisation of Debian's Abseil visible to TSan.
//
// libabsl_synchronization is not built with -fsanitize=thread, so TSan does
// not see absl::Mutex (a futex of its own, not pthreads) lock or unlock, and
// reports every access guarded by one as a race. The linker wraps the
// out-of-line entry points our code calls (-Wl,--wrap, set up in the root
// CMakeLists.txt) and these wrappers tell TSan what they do: whatever a
// thread did before releasing a mutex (Unlock, or waiting in CondVar::Wait)
// happens-before what the next holder does after acquiring it; Notify
// happens-before the return of WaitForNotification*. That is all a data race
// detector needs (lock-order checking of absl::Mutex is not covered).
//
// Await and LockWhen are not forwarded: Abseil evaluates a waiter's
// Condition inside the library, in the waiter's thread and in whichever
// thread unlocks, at points these wrappers cannot tell TSan about (the
// reads would look unguarded). Here they poll instead: evaluate the
// condition while holding the mutex, else unlock, sleep 100 us, lock again.
// Slower, same semantics; only in the TSan build. They assume the mutex is
// held (or taken) in writer mode, as all of this repository's waits are.
// gRPC and LevelDB internals stay uninstrumented: TSan sees none of their
// accesses, so it reports none of them either.
#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);

// The library's own entry points (the linker's __real_ names).
void __real__ZN4absl7debian35Mutex4LockEv(Mutex* mu);
void __real__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu);
void __real__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu);
void __real__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu);
bool __real__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu);
bool __real__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu);
void __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(CondVar* cv, Mutex* mu);
bool __real__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
    CondVar* cv, Mutex* mu, Duration d);
bool __real__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
    CondVar* cv, Mutex* mu, Time t);
void __real__ZN4absl7debian312Notification6NotifyEv(Notification* n);
void __real__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const Notification* n);
bool __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d);
bool __real__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
    const Notification* n, Time t);
}

namespace {

void Acquire(const void* addr) { __tsan_acquire(const_cast<void*>(addr)); }
void Release(const void* addr) { __tsan_release(const_cast<void*>(addr)); }

void Lock(Mutex* mu, bool reader) {
  if (reader) {
    __real__ZN4absl7debian35Mutex10ReaderLockEv(mu);
  } else {
    __real__ZN4absl7debian35Mutex4LockEv(mu);
  }
  Acquire(mu);
}

void Unlock(Mutex* mu, bool reader) {
  Release(mu);
  if (reader) {
    __real__ZN4absl7debian35Mutex12ReaderUnlockEv(mu);
  } else {
    __real__ZN4absl7debian35Mutex6UnlockEv(mu);
  }
}

// With `mu` held: until `c` holds (true) or `deadline` passes (false).
bool AwaitPolling(Mutex* mu, bool reader, const Condition& c, Time deadline) {
  while (!c.Eval()) {
    if (absl::Now() >= deadline) return false;
    Unlock(mu, reader);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    Lock(mu, reader);
  }
  return true;
}

}  // namespace

extern "C" {

void __wrap__ZN4absl7debian35Mutex4LockEv(Mutex* mu) { Lock(mu, false); }
void __wrap__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu) { Lock(mu, true); }
void __wrap__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu) { Unlock(mu, false); }
void __wrap__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu) {
  Unlock(mu, true);
}
bool __wrap__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu) {
  const bool locked = __real__ZN4absl7debian35Mutex7TryLockEv(mu);
  if (locked) Acquire(mu);
  return locked;
}
bool __wrap__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu) {
  const bool locked = __real__ZN4absl7debian35Mutex13ReaderTryLockEv(mu);
  if (locked) Acquire(mu);
  return locked;
}

// LockWhen*: the mutex is held on return, whatever the result.
void __wrap__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  Lock(mu, false);
  AwaitPolling(mu, false, c, absl::InfiniteFuture());
}
void __wrap__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  Lock(mu, true);
  AwaitPolling(mu, true, c, absl::InfiniteFuture());
}
bool __wrap__ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  Lock(mu, false);
  return AwaitPolling(mu, false, c, absl::Now() + d);
}
bool __wrap__ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  Lock(mu, false);
  return AwaitPolling(mu, false, c, t);
}
bool __wrap__ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  Lock(mu, true);
  return AwaitPolling(mu, true, c, absl::Now() + d);
}
bool __wrap__ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  Lock(mu, true);
  return AwaitPolling(mu, true, c, t);
}

// Await*: called with the mutex held (writer mode); held again on return.
void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu,
                                                           const Condition& c) {
  AwaitPolling(mu, false, c, absl::InfiniteFuture());
}
bool __wrap__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  return AwaitPolling(mu, false, c, absl::Now() + d);
}
bool __wrap__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  return AwaitPolling(mu, false, c, t);
}

// CondVar::Wait* releases `mu` while it waits and holds it again on return;
// the waiting thread touches nothing meanwhile.
void __wrap__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(CondVar* cv, Mutex* mu) {
  Release(mu);
  __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(cv, mu);
  Acquire(mu);
}
bool __wrap__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
    CondVar* cv, Mutex* mu, Duration d) {
  Release(mu);
  const bool timed_out =
      __real__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
          cv, mu, d);
  Acquire(mu);
  return timed_out;
}
bool __wrap__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
    CondVar* cv, Mutex* mu, Time t) {
  Release(mu);
  const bool timed_out =
      __real__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
          cv, mu, t);
  Acquire(mu);
  return timed_out;
}

// Notification: Notify happens-before every WaitForNotification* that
// returns true.
void __wrap__ZN4absl7debian312Notification6NotifyEv(Notification* n) {
  Release(n);
  __real__ZN4absl7debian312Notification6NotifyEv(n);
}
void __wrap__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const Notification* n) {
  __real__ZNK4absl7debian312Notification19WaitForNotificationEv(n);
  Acquire(n);
}
bool __wrap__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d) {
  const bool notified =
      __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
          n, d);
  if (notified) Acquire(n);
  return notified;
}
bool __wrap__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
    const Notification* n, Time t) {
  const bool notified =
      __real__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
          n, t);
  if (notified) Acquire(n);
  return notified;
}

}  // extern "C"
