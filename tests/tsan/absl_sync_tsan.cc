// ThreadSanitizer build only (PBFT_LEDGER_TSAN, tests/tsan.sh): makes the
// synchronisation of Debian's Abseil visible to TSan.
//
// libabsl_synchronization is not built with -fsanitize=thread, so TSan does
// not see absl::Mutex (a futex of its own, not pthreads) lock or unlock, and
// reports every access guarded by one as a race. The linker wraps the
// out-of-line entry points our code calls (-Wl,--wrap, set up in the root
// CMakeLists.txt) and these wrappers tell TSan what they do: whatever a
// thread did before releasing a mutex (Unlock, or waiting in Await or
// CondVar::Wait) happens-before what the next holder does after acquiring it;
// Notify happens-before the return of WaitForNotification*. That is all a data
// race detector needs (lock-order checking of absl::Mutex is not covered).
// gRPC and LevelDB internals stay uninstrumented: TSan sees none of their
// accesses, so it reports none of them either.
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}

namespace {

void Acquire(const void* addr) { __tsan_acquire(const_cast<void*>(addr)); }
void Release(const void* addr) { __tsan_release(const_cast<void*>(addr)); }

}  // namespace

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

// Each WRAP_* defines __wrap_SYMBOL, which calls __real_SYMBOL (the
// library's) with the same arguments; `this` is the first argument.
#define DECLARE(ret, sym, ...)   \
  ret __real_##sym(__VA_ARGS__); \
  ret __wrap_##sym(__VA_ARGS__)

extern "C" {

// Acquire after locking.
#define WRAP_LOCK(sym)           \
  DECLARE(void, sym, Mutex* mu); \
  void __wrap_##sym(Mutex* mu) { \
    __real_##sym(mu);            \
    Acquire(mu);                 \
  }
WRAP_LOCK(_ZN4absl7debian35Mutex4LockEv)
WRAP_LOCK(_ZN4absl7debian35Mutex10ReaderLockEv)

#define WRAP_TRYLOCK(sym)           \
  DECLARE(bool, sym, Mutex* mu);    \
  bool __wrap_##sym(Mutex* mu) {    \
    bool locked = __real_##sym(mu); \
    if (locked) Acquire(mu);        \
    return locked;                  \
  }
WRAP_TRYLOCK(_ZN4absl7debian35Mutex7TryLockEv)
WRAP_TRYLOCK(_ZN4absl7debian35Mutex13ReaderTryLockEv)

// Release before unlocking.
#define WRAP_UNLOCK(sym)         \
  DECLARE(void, sym, Mutex* mu); \
  void __wrap_##sym(Mutex* mu) { \
    Release(mu);                 \
    __real_##sym(mu);            \
  }
WRAP_UNLOCK(_ZN4absl7debian35Mutex6UnlockEv)
WRAP_UNLOCK(_ZN4absl7debian35Mutex12ReaderUnlockEv)

// LockWhen*: the mutex is held on return, whatever the result.
DECLARE(void, _ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE, Mutex* mu,
        const Condition& c);
void __wrap__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(mu, c);
  Acquire(mu);
}
DECLARE(void, _ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE,
        Mutex* mu, const Condition& c);
void __wrap__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  __real__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(mu, c);
  Acquire(mu);
}
#define WRAP_LOCK_WHEN_ARG(sym, T)                        \
  DECLARE(bool, sym, Mutex* mu, const Condition& c, T t); \
  bool __wrap_##sym(Mutex* mu, const Condition& c, T t) { \
    bool ok = __real_##sym(mu, c, t);                     \
    Acquire(mu);                                          \
    return ok;                                            \
  }
WRAP_LOCK_WHEN_ARG(
    _ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    Duration)
WRAP_LOCK_WHEN_ARG(
    _ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE,
    Time)
WRAP_LOCK_WHEN_ARG(
    _ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    Duration)
WRAP_LOCK_WHEN_ARG(
    _ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE,
    Time)

// Await* releases the mutex while it waits and holds it again on return.
DECLARE(void, _ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE, Mutex* mu,
        const Condition& c);
void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu,
                                                           const Condition& c) {
  Release(mu);
  __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(mu, c);
  Acquire(mu);
}
#define WRAP_AWAIT_ARG(sym, T)                            \
  DECLARE(bool, sym, Mutex* mu, const Condition& c, T t); \
  bool __wrap_##sym(Mutex* mu, const Condition& c, T t) { \
    Release(mu);                                          \
    bool ok = __real_##sym(mu, c, t);                     \
    Acquire(mu);                                          \
    return ok;                                            \
  }
WRAP_AWAIT_ARG(
    _ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    Duration)
WRAP_AWAIT_ARG(
    _ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE, Time)

// CondVar::Wait* releases `mu` while it waits and holds it again on return.
DECLARE(void, _ZN4absl7debian37CondVar4WaitEPNS0_5MutexE, CondVar* cv,
        Mutex* mu);
void __wrap__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(CondVar* cv, Mutex* mu) {
  Release(mu);
  __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(cv, mu);
  Acquire(mu);
}
#define WRAP_CV_WAIT_ARG(sym, T)                   \
  DECLARE(bool, sym, CondVar* cv, Mutex* mu, T t); \
  bool __wrap_##sym(CondVar* cv, Mutex* mu, T t) { \
    Release(mu);                                   \
    bool timed_out = __real_##sym(cv, mu, t);      \
    Acquire(mu);                                   \
    return timed_out;                              \
  }
WRAP_CV_WAIT_ARG(
    _ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE,
    Duration)
WRAP_CV_WAIT_ARG(
    _ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE, Time)

// Notification: Notify happens-before every WaitForNotification* that
// returns true.
DECLARE(void, _ZN4absl7debian312Notification6NotifyEv, Notification* n);
void __wrap__ZN4absl7debian312Notification6NotifyEv(Notification* n) {
  Release(n);
  __real__ZN4absl7debian312Notification6NotifyEv(n);
}
DECLARE(void, _ZNK4absl7debian312Notification19WaitForNotificationEv,
        const Notification* n);
void __wrap__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const Notification* n) {
  __real__ZNK4absl7debian312Notification19WaitForNotificationEv(n);
  Acquire(n);
}
#define WRAP_NOTIFICATION_ARG(sym, T)             \
  DECLARE(bool, sym, const Notification* n, T t); \
  bool __wrap_##sym(const Notification* n, T t) { \
    bool notified = __real_##sym(n, t);           \
    if (notified) Acquire(n);                     \
    return notified;                              \
  }
WRAP_NOTIFICATION_ARG(
    _ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE,
    Duration)
WRAP_NOTIFICATION_ARG(
    _ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE,
    Time)

}  // extern "C"
