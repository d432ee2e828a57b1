#include "replica/storage/background_env.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>
#include <utility>

#include "absl/time/time.h"
#include "common/bounded_queue.h"
#include "common/check.h"
#include "common/thread_name.h"

namespace pbft::storage {
namespace {

// Env::Default() whose background work (memtable writes, compactions) runs
// one job at a time, in order, on a thread of its own: named, and with
// `nice_increment` (0-19) added to its nice value. As with Env::Default(),
// the thread lives as long as the process.
class OwnBackgroundThread final : public leveldb::EnvWrapper {
 public:
  OwnBackgroundThread(std::string name, int nice_increment)
      : leveldb::EnvWrapper(leveldb::Env::Default()) {
    std::thread([this, name = std::move(name), nice_increment] {
      NameThisThread(name);
      Lower(nice_increment);
      for (;;) {
        const std::optional<Job> job = jobs_.Pop(absl::InfiniteDuration());
        if (job.has_value()) job->function(job->arg);
      }
    }).detach();
  }

  void Schedule(void (*function)(void*), void* arg) override {
    // LevelDB keeps at most one job scheduled per open database.
    CHECK(jobs_.TryPush(Job{function, arg}));
  }

 private:
  struct Job {
    void (*function)(void*);
    void* arg;
  };

  // Raising a thread's nice value needs no privilege; should it fail, the
  // thread keeps its priority and nothing else changes.
  static void Lower(int nice_increment) {
    if (nice_increment <= 0) return;
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    errno = 0;
    const int now = getpriority(PRIO_PROCESS, tid);
    if (now != -1 || errno == 0) {
      (void)setpriority(PRIO_PROCESS, tid, now + nice_increment);
    }
  }

  // Far above the databases a process opens on one Env.
  BoundedQueue<Job> jobs_{1024};
};

}  // namespace

leveldb::Env* BackgroundEnv(int nice_increment) {
  static leveldb::Env* const env =
      new OwnBackgroundThread("leveldb-bg", nice_increment);
  return env;
}

leveldb::Env* ProtocolStoreEnv() {
  static leveldb::Env* const env = new OwnBackgroundThread("protocol-bg", 0);
  return env;
}

}  // namespace pbft::storage
