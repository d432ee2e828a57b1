#include "replica/storage/background_env.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_name.h"

namespace pbft::storage {
namespace {

class LowPriorityBackground final : public leveldb::EnvWrapper {
 public:
  LowPriorityBackground(leveldb::Env* target, int nice_increment)
      : leveldb::EnvWrapper(target), nice_increment_(nice_increment) {}

  void Schedule(void (*function)(void*), void* arg) override {
    target()->Schedule(&Run, new Job{function, arg, nice_increment_});
  }

 private:
  struct Job {
    void (*function)(void*);
    void* arg;
    int nice_increment;
  };

  static void Run(void* p) {
    const Job job = *static_cast<Job*>(p);
    delete static_cast<Job*>(p);
    thread_local bool lowered = false;
    if (!lowered) {
      lowered = true;
      NameThisThread("leveldb-bg");
      // Raising a thread's nice value needs no privilege; should it fail,
      // the thread keeps its priority and nothing else changes.
      const auto tid = static_cast<id_t>(syscall(SYS_gettid));
      errno = 0;
      const int now = getpriority(PRIO_PROCESS, tid);
      if (now != -1 || errno == 0) {
        (void)setpriority(PRIO_PROCESS, tid, now + job.nice_increment);
      }
    }
    job.function(job.arg);
  }

  const int nice_increment_;
};

// Runs the jobs LevelDB schedules one at a time, in order, on a thread
// started at the first; as with Env::Default(), the thread lives as long
// as the process.
class OwnBackgroundThread final : public leveldb::EnvWrapper {
 public:
  explicit OwnBackgroundThread(leveldb::Env* target)
      : leveldb::EnvWrapper(target) {}

  void Schedule(void (*function)(void*), void* arg) override {
    absl::MutexLock lock(&mu_);
    if (!started_) {
      started_ = true;
      std::thread([this] { Loop(); }).detach();
    }
    jobs_.push_back(Job{function, arg});
  }

 private:
  struct Job {
    void (*function)(void*);
    void* arg;
  };

  void Loop() {
    NameThisThread("protocol-bg");
    for (;;) {
      Job job{};
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](std::deque<Job>* jobs) { return !jobs->empty(); }, &jobs_));
        job = jobs_.front();
        jobs_.pop_front();
      }
      job.function(job.arg);
    }
  }

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

leveldb::Env* ProtocolStoreEnv() {
  static leveldb::Env* const env =
      new OwnBackgroundThread(leveldb::Env::Default());
  return env;
}

leveldb::Env* BackgroundEnv(int nice_increment) {
  static leveldb::Env* const env =
      nice_increment <= 0
          ? leveldb::Env::Default()
          : new LowPriorityBackground(leveldb::Env::Default(), nice_increment);
  return env;
}

}  // namespace pbft::storage
