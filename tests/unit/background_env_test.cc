// storage::BackgroundEnv: LevelDB's background work runs lowered and named,
// the protocol store's on a thread of its own, and a database written
// through the first (memtable writes, compactions) reads
// back whole after a reopen.
#include "replica/storage/background_env.h"

#include <pthread.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "tests/unit/held_thread.h"
#include "tests/unit/test_util.h"

namespace pbft::storage {
namespace {

struct Seen {
  int nice = 0;
  std::string name;
  absl::Notification done;
};

void Record(void* arg) {
  auto* seen = static_cast<Seen*>(arg);
  seen->nice = getpriority(PRIO_PROCESS, 0);  // This thread's (Linux).
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  seen->name = name;
  seen->done.Notify();
}

TEST(BackgroundEnvTest, JobsRunOnALoweredNamedThread) {
  const int base = getpriority(PRIO_PROCESS, 0);
  leveldb::Env* env = BackgroundEnv(5);
  ASSERT_NE(env, leveldb::Env::Default());
  Seen seen;
  env->Schedule(&Record, &seen);
  ASSERT_TRUE(seen.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(seen.nice, std::min(19, base + 5));
  EXPECT_EQ(seen.name, "leveldb-bg");
  // The first call decided for the process.
  EXPECT_EQ(BackgroundEnv(0), env);
}

// The protocol store's jobs run apart from the ledger's, at the process's
// priority: a job of it completes while the ledger's thread is held.
TEST(BackgroundEnvTest, ProtocolStoreJobsRunOnTheirOwnNamedThread) {
  const int base = getpriority(PRIO_PROCESS, 0);
  leveldb::Env* env = ProtocolStoreEnv();
  ASSERT_NE(env, leveldb::Env::Default());
  ASSERT_NE(env, BackgroundEnv(5));
  test::HeldThread ledgers_thread(BackgroundEnv(5));
  Seen seen;
  env->Schedule(&Record, &seen);
  const bool ran = seen.done.WaitForNotificationWithTimeout(absl::Seconds(10));
  ledgers_thread.Release();
  ASSERT_TRUE(ran);
  EXPECT_EQ(seen.nice, base);
  EXPECT_EQ(seen.name, "protocol-bg");
  EXPECT_EQ(ProtocolStoreEnv(), env);
}

TEST(BackgroundEnvTest, DatabaseThroughItReadsBackAfterCompactions) {
  test::TempDir dir;
  leveldb::Options o;
  o.create_if_missing = true;
  o.env = BackgroundEnv(5);
  o.write_buffer_size = 64 << 10;  // Many flushes, then compactions.
  const std::string value(1000, 'v');
  constexpr int kKeys = 6000;  // About 6 MB.
  {
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(o, dir.file("db"), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_TRUE(db->Put(leveldb::WriteOptions(), "k" + std::to_string(i),
                          value + std::to_string(i))
                      .ok());
    }
    db->CompactRange(nullptr, nullptr);
  }
  leveldb::DB* raw = nullptr;
  ASSERT_TRUE(leveldb::DB::Open(o, dir.file("db"), &raw).ok());
  std::unique_ptr<leveldb::DB> db(raw);
  for (int i = 0; i < kKeys; ++i) {
    std::string got;
    ASSERT_TRUE(
        db->Get(leveldb::ReadOptions(), "k" + std::to_string(i), &got).ok())
        << i;
    ASSERT_EQ(got, value + std::to_string(i));
  }
}

// Lines of /proc/self/maps that map a file under `dir`.
int MappedFilesUnder(const std::string& dir) {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    n += line.find(dir) != std::string::npos;
  }
  return n;
}

// Mapped, every table page a read touched counted in the replica's resident
// memory, growing with the chain; read with pread, none is mapped.
TEST(BackgroundEnvTest, TableFilesAreReadNotMapped) {
  for (leveldb::Env* env : {BackgroundEnv(5), ProtocolStoreEnv()}) {
    test::TempDir dir;
    leveldb::Options o;
    o.create_if_missing = true;
    o.env = env;
    o.write_buffer_size = 64 << 10;
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(o, dir.file("db"), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    const std::string value(1000, 'v');
    constexpr int kKeys = 2000;
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_TRUE(
          db->Put(leveldb::WriteOptions(), "k" + std::to_string(i), value)
              .ok());
    }
    db->CompactRange(nullptr, nullptr);
    int tables = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir.file("db"))) {
      tables += f.path().extension() == ".ldb";
    }
    ASSERT_GE(tables, 1);
    for (int i = 0; i < kKeys; i += 7) {
      std::string got;
      ASSERT_TRUE(
          db->Get(leveldb::ReadOptions(), "k" + std::to_string(i), &got).ok());
      ASSERT_EQ(got, value);
    }
    EXPECT_EQ(MappedFilesUnder(dir.file("db")), 0);
  }
}

// Over the descriptor budget (a fifth of the soft open-file limit), a table
// file is opened for each read: a database of more tables than the budget
// reads back whole. In a child process of its own ("threadsafe" death
// tests re-run the binary), whose budget is counted from a lowered limit.
TEST(BackgroundEnvTest, TablesBeyondTheDescriptorBudgetReadBack) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  test::TempDir dir;
  EXPECT_EXIT(
      {
        struct rlimit limit;
        getrlimit(RLIMIT_NOFILE, &limit);
        limit.rlim_cur = 30;  // A budget of 6 descriptors.
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::exit(2);
        leveldb::Options o;
        o.create_if_missing = true;
        o.env = BackgroundEnv(0);
        o.write_buffer_size = 64 << 10;
        o.max_file_size = 1 << 20;  // LevelDB's least: 12 tables.
        o.compression = leveldb::kNoCompression;
        leveldb::DB* raw = nullptr;
        if (!leveldb::DB::Open(o, dir.file("db"), &raw).ok()) std::exit(3);
        std::unique_ptr<leveldb::DB> db(raw);
        constexpr int kKeys = 12000;  // About 12 MB.
        for (int i = 0; i < kKeys; ++i) {
          const std::string k = "k" + std::to_string(i);
          if (!db->Put(leveldb::WriteOptions(), k,
                       std::string(1000, 'a' + i % 26) + k)
                   .ok()) {
            std::exit(4);
          }
        }
        db->CompactRange(nullptr, nullptr);
        int tables = 0;
        for (const auto& f :
             std::filesystem::directory_iterator(dir.file("db"))) {
          tables += f.path().extension() == ".ldb";
        }
        if (tables <= 6) std::exit(5);
        for (int i = 0; i < kKeys; ++i) {
          const std::string k = "k" + std::to_string(i);
          std::string got;
          if (!db->Get(leveldb::ReadOptions(), k, &got).ok() ||
              got != std::string(1000, 'a' + i % 26) + k) {
            std::exit(6);
          }
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace pbft::storage
