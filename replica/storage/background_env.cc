#include "replica/storage/background_env.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "absl/time/time.h"
#include "common/bounded_queue.h"
#include "common/check.h"
#include "common/thread_name.h"

namespace pbft::storage {
namespace {

leveldb::Status FileError(const std::string& name, int error) {
  if (error == ENOENT) return leveldb::Status::NotFound(name, strerror(error));
  return leveldb::Status::IOError(name, strerror(error));
}

// Descriptors the table files of the process keep open, as Env::Default()
// budgets its own: a fifth of the soft limit on open files. A table file
// opened beyond it opens its descriptor for each read.
class ReadDescriptors {
 public:
  static ReadDescriptors& Get() {
    static ReadDescriptors* const budget = new ReadDescriptors;
    return *budget;
  }
  bool Acquire() {
    if (left_.fetch_sub(1, std::memory_order_acquire) > 0) return true;
    left_.fetch_add(1, std::memory_order_release);
    return false;
  }
  void Release() { left_.fetch_add(1, std::memory_order_release); }

 private:
  ReadDescriptors() {
    struct rlimit limit;
    const bool known = getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
                       limit.rlim_cur != RLIM_INFINITY;
    left_ = known ? static_cast<int>(limit.rlim_cur / 5) : 50;
  }
  std::atomic<int> left_;
};

// A table file read with pread(2). Env::Default() maps up to a thousand
// table files into the process instead: the pages it reads through the
// mapping count in the replica's resident memory and grow with the chain
// (hundreds of MB within minutes at 100 transfers per request;
// docs/benchmarks.md, "Table files read, not mapped"). Read, the pages stay
// in the kernel's page cache and the blocks LevelDB keeps are in its block
// cache, whose size the ledger bounds.
class PreadFile final : public leveldb::RandomAccessFile {
 public:
  // `fd` -1: open the file for each read (over the descriptor budget).
  PreadFile(std::string name, int fd) : name_(std::move(name)), fd_(fd) {}
  ~PreadFile() override {
    if (fd_ == -1) return;
    ::close(fd_);
    ReadDescriptors::Get().Release();
  }

  leveldb::Status Read(uint64_t offset, size_t n, leveldb::Slice* result,
                       char* scratch) const override {
    int fd = fd_;
    if (fd == -1) {
      fd = ::open(name_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return FileError(name_, errno);
    }
    const ssize_t got = ::pread(fd, scratch, n, static_cast<off_t>(offset));
    const int error = errno;
    if (fd != fd_) ::close(fd);
    *result = leveldb::Slice(scratch, got < 0 ? 0 : static_cast<size_t>(got));
    return got < 0 ? FileError(name_, error) : leveldb::Status::OK();
  }

 private:
  const std::string name_;
  const int fd_;
};

// Env::Default() whose background work (memtable writes, compactions) runs
// one job at a time, in order, on a thread of its own: named, and with
// `nice_increment` (0-19) added to its nice value, and whose table files
// are read with pread(2) rather than mapped (PreadFile). As with
// Env::Default(), the thread lives as long as the process.
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

  leveldb::Status NewRandomAccessFile(
      const std::string& name, leveldb::RandomAccessFile** result) override {
    *result = nullptr;
    int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FileError(name, errno);
    if (!ReadDescriptors::Get().Acquire()) {
      ::close(fd);
      fd = -1;
    }
    *result = new PreadFile(name, fd);
    return leveldb::Status::OK();
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
