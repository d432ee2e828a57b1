#include "replica/storage/background_env.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace

leveldb::Env* BackgroundEnv(int nice_increment) {
  static leveldb::Env* const env =
      nice_increment <= 0
          ? leveldb::Env::Default()
          : new LowPriorityBackground(leveldb::Env::Default(), nice_increment);
  return env;
}

}  // namespace pbft::storage
