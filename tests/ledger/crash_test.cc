// Crash consistency (docs/storage_format.md): every block is one synced
// WriteBatch, so a ledger reopened after a crash at any point is at the
// state before or after a block, never in between. Runs on LevelDB's
// in-memory Env wrapped by an Env that tears the N-th write (writes half of
// the bytes, then fails) — a simulated power cut in the middle of a write —
// or by one that drops every byte not synced (a power cut between writes).
#include <atomic>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/ledger.h"
#include "tests/ledger/ledger_test_util.h"
#include "tests/unit/power_cut_env.h"

namespace pbft::ledger {
namespace {

using test::Id;
using test::TransferOp;

// Tears the `fail_at`-th Append/Sync after Arm() (1-based) and every later
// one, until Disarm().
class TearingEnv : public leveldb::EnvWrapper {
 public:
  explicit TearingEnv(leveldb::Env* base) : EnvWrapper(base) {}

  void Arm(int fail_at) {
    count_ = 0;
    fail_at_ = fail_at;
  }
  void Disarm() { fail_at_ = 0; }
  bool tripped() const {
    const int fail_at = fail_at_.load();
    return fail_at > 0 && count_.load() >= fail_at;
  }

  leveldb::Status NewWritableFile(const std::string& name,
                                  leveldb::WritableFile** result) override {
    leveldb::WritableFile* file = nullptr;
    leveldb::Status s = target()->NewWritableFile(name, &file);
    if (s.ok()) *result = new File(this, file);
    return s;
  }
  leveldb::Status NewAppendableFile(const std::string& name,
                                    leveldb::WritableFile** result) override {
    leveldb::WritableFile* file = nullptr;
    leveldb::Status s = target()->NewAppendableFile(name, &file);
    if (s.ok()) *result = new File(this, file);
    return s;
  }

 private:
  // True if this operation must fail. Called from the writing thread and
  // from LevelDB's compaction thread at once (table files), hence atomics.
  bool Trip() {
    const int fail_at = fail_at_.load();
    if (fail_at == 0) return false;
    return count_.fetch_add(1) + 1 >= fail_at;
  }

  class File : public leveldb::WritableFile {
   public:
    File(TearingEnv* env, leveldb::WritableFile* base)
        : env_(env), base_(base) {}
    leveldb::Status Append(const leveldb::Slice& data) override {
      if (env_->Trip()) {
        // A torn write: half the bytes reach the file.
        base_->Append(leveldb::Slice(data.data(), data.size() / 2));
        return leveldb::Status::IOError("injected torn write");
      }
      return base_->Append(data);
    }
    leveldb::Status Close() override { return base_->Close(); }
    leveldb::Status Flush() override { return base_->Flush(); }
    leveldb::Status Sync() override {
      if (env_->Trip()) return leveldb::Status::IOError("injected sync fail");
      return base_->Sync();
    }

   private:
    TearingEnv* env_;
    std::unique_ptr<leveldb::WritableFile> base_;
  };

  std::atomic<int> fail_at_{0};
  std::atomic<int> count_{0};
};

constexpr int kBlocks = 8;

// The blocks every run applies, and the digest after each height.
struct Script {
  test::BlockFactory factory;
  std::vector<BlockInput> blocks;
  std::vector<Digest> digest;  // digest[h] after height h.

  Script() {
    for (int b = 1; b <= kBlocks; ++b) {
      std::vector<pbft::v1::Envelope> requests;
      for (uint64_t c = 1; c <= 3; ++c) {
        std::vector<v1::Operation> ops;
        for (int i = 0; i < 40; ++i) {
          ops.push_back(TransferOp(Id(b * 1000 + c * 100 + i, 3), Id(c),
                                   Id(1 + c % 3), 1 + i, 1,
                                   std::string(20, 'x')));
        }
        requests.push_back(factory.Request(c, test::Ops(ops)));
      }
      blocks.push_back(factory.NextBlock(requests));
    }
    std::unique_ptr<leveldb::Env> env(
        leveldb::NewMemEnv(leveldb::Env::Default()));
    LedgerOptions o;
    o.env = env.get();
    std::unique_ptr<Ledger> reference =
        *Ledger::Open(factory.cluster(), "/reference", o);
    digest.push_back(reference->state_digest());
    for (const BlockInput& in : blocks) {
      digest.push_back(reference->ApplyBlock(in)->state_digest);
    }
  }
};

TEST(LedgerCrash, ReopenAfterEveryBlockKeepsState) {
  Script script;
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  LedgerOptions o;
  o.env = env.get();
  for (int h = 0; h < kBlocks; ++h) {
    std::unique_ptr<Ledger> l =
        *Ledger::Open(script.factory.cluster(), "/l", o);
    ASSERT_EQ(l->last_executed(), static_cast<uint64_t>(h));
    ASSERT_EQ(l->state_digest(), script.digest[h]);
    ASSERT_EQ(*l->TEST_RecomputeStateDigest(), script.digest[h]);
    ASSERT_TRUE(l->ApplyBlock(script.blocks[h]).ok());
  }
}

// Tear the N-th write after genesis, for every N that lands inside the
// script (log appends, syncs, table and MANIFEST writes of compactions with
// a small write buffer): the reopened ledger is exactly at some block
// boundary, and replaying the rest reaches the reference digest.
TEST(LedgerCrash, TornWriteAtEveryPointLeavesABlockBoundary) {
  Script script;
  int tested = 0;
  for (int fail_at = 1; fail_at <= 200; ++fail_at) {
    SCOPED_TRACE(::testing::Message() << "fail_at " << fail_at);
    std::unique_ptr<leveldb::Env> mem(
        leveldb::NewMemEnv(leveldb::Env::Default()));
    TearingEnv env(mem.get());
    LedgerOptions o;
    o.env = &env;
    o.write_buffer_bytes = 64 << 10;  // Compactions inside the script.
    std::unique_ptr<Ledger> l =
        *Ledger::Open(script.factory.cluster(), "/l", o);
    env.Arm(fail_at);
    int applied = 0;
    bool failed = false;
    for (const BlockInput& in : script.blocks) {
      if (!l->ApplyBlock(in).ok()) {
        failed = true;
        break;
      }
      ++applied;
    }
    if (!failed && !env.tripped()) break;  // Past the last write: done.
    if (failed) {
      // Fail-stop: nothing more is accepted until reopened.
      EXPECT_EQ(l->ApplyBlock(script.blocks[applied]).status().code(),
                absl::StatusCode::kFailedPrecondition);
    }
    l.reset();  // The "crash".
    env.Disarm();
    absl::StatusOr<std::unique_ptr<Ledger>> reopened =
        Ledger::Open(script.factory.cluster(), "/l", o);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    const uint64_t h = (*reopened)->last_executed();
    // Before or after the torn block, never in between.
    ASSERT_TRUE(h == static_cast<uint64_t>(applied) ||
                h == static_cast<uint64_t>(applied) + 1)
        << h << " vs " << applied;
    ASSERT_EQ((*reopened)->state_digest(), script.digest[h]);
    ASSERT_EQ(*(*reopened)->TEST_RecomputeStateDigest(), script.digest[h]);
    for (uint64_t next = h; next < script.blocks.size(); ++next) {
      ASSERT_TRUE((*reopened)->ApplyBlock(script.blocks[next]).ok());
    }
    ASSERT_EQ((*reopened)->state_digest(), script.digest[kBlocks]);
    ++tested;
  }
  EXPECT_GT(tested, 8);  // At least one torn write per block.
}

// A power cut after `cut_after` blocks: every file keeps only what it held
// at its last sync. Each block's write was synced, so the reopened ledger
// is at the last block applied, with the reference digest. The same run
// with the block writes unsynced loses blocks: the cut does drop what was
// not synced, so the first half can fail.
TEST(LedgerCrash, PowerCutKeepsEveryAppliedBlock) {
  Script script;
  for (const bool sync : {true, false}) {
    for (int cut_after = 1; cut_after <= kBlocks; ++cut_after) {
      SCOPED_TRACE(::testing::Message()
                   << "cut after block " << cut_after << ", sync " << sync);
      std::unique_ptr<leveldb::Env> mem(
          leveldb::NewMemEnv(leveldb::Env::Default()));
      test::PowerCutEnv env(mem.get());
      LedgerOptions o;
      o.env = &env;
      {
        std::unique_ptr<Ledger> l =
            *Ledger::Open(script.factory.cluster(), "/l", o);
        o.sync = sync;  // Genesis synced either way.
        l.reset();
        l = *Ledger::Open(script.factory.cluster(), "/l", o);
        for (int b = 0; b < cut_after; ++b) {
          ASSERT_TRUE(l->ApplyBlock(script.blocks[b]).ok());
        }
      }
      env.PowerCut();
      absl::StatusOr<std::unique_ptr<Ledger>> reopened =
          Ledger::Open(script.factory.cluster(), "/l", o);
      ASSERT_TRUE(reopened.ok()) << reopened.status();
      const uint64_t h = (*reopened)->last_executed();
      if (sync) {
        ASSERT_EQ(h, static_cast<uint64_t>(cut_after));
      } else {
        ASSERT_LT(h, static_cast<uint64_t>(cut_after));
      }
      ASSERT_EQ((*reopened)->state_digest(), script.digest[h]);
      ASSERT_EQ(*(*reopened)->TEST_RecomputeStateDigest(), script.digest[h]);
    }
  }
}

}  // namespace
}  // namespace pbft::ledger
