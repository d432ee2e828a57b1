// A LevelDB Env that can lose power: every file written through it keeps,
// at PowerCut(), only the bytes it held at its last Sync() (a file never
// synced loses all it was written). Wraps another Env, usually LevelDB's
// in-memory one. Call PowerCut() with no file open (the databases closed).
#ifndef PBFT_LEDGER_TESTS_UNIT_POWER_CUT_ENV_H_
#define PBFT_LEDGER_TESTS_UNIT_POWER_CUT_ENV_H_

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "leveldb/env.h"

namespace pbft::test {

class PowerCutEnv : public leveldb::EnvWrapper {
 public:
  explicit PowerCutEnv(leveldb::Env* base) : EnvWrapper(base) {}

  leveldb::Status NewWritableFile(const std::string& name,
                                  leveldb::WritableFile** result) override {
    leveldb::WritableFile* file = nullptr;
    leveldb::Status s = target()->NewWritableFile(name, &file);
    if (!s.ok()) return s;
    SetSynced(name, 0);
    *result = new File(this, name, 0, file);
    return s;
  }
  leveldb::Status NewAppendableFile(const std::string& name,
                                    leveldb::WritableFile** result) override {
    uint64_t size = 0;
    if (!target()->GetFileSize(name, &size).ok()) size = 0;
    leveldb::WritableFile* file = nullptr;
    leveldb::Status s = target()->NewAppendableFile(name, &file);
    if (!s.ok()) return s;
    {
      absl::MutexLock lock(&mu_);
      synced_.try_emplace(name, size);  // What was there survived.
    }
    *result = new File(this, name, size, file);
    return s;
  }
  leveldb::Status RenameFile(const std::string& from,
                             const std::string& to) override {
    leveldb::Status s = target()->RenameFile(from, to);
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = synced_.find(from);
    if (it != synced_.end()) {
      synced_[to] = it->second;
      synced_.erase(from);
    }
    return s;
  }
  leveldb::Status RemoveFile(const std::string& name) override {
    {
      absl::MutexLock lock(&mu_);
      synced_.erase(name);
    }
    return target()->RemoveFile(name);
  }

  // Truncates every file written through this Env to its last synced size.
  // A file it cannot cut is a CHECK failure: a cut that silently did
  // nothing would let a durability test pass.
  void PowerCut() {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, synced] : synced_) {
      uint64_t size = 0;
      CHECK(target()->GetFileSize(name, &size).ok());
      if (size <= synced) continue;
      std::string kept(synced, '\0');
      if (synced > 0) {
        leveldb::SequentialFile* in = nullptr;
        CHECK(target()->NewSequentialFile(name, &in).ok());
        std::unique_ptr<leveldb::SequentialFile> owned(in);
        leveldb::Slice got;
        CHECK(in->Read(synced, &got, kept.data()).ok());
        CHECK_EQ(got.size(), synced);
        kept.assign(got.data(), got.size());
      }
      leveldb::WritableFile* out = nullptr;
      CHECK(target()->NewWritableFile(name, &out).ok());
      std::unique_ptr<leveldb::WritableFile> owned(out);
      CHECK(owned->Append(kept).ok() && owned->Close().ok());
    }
  }

 private:
  void SetSynced(const std::string& name, uint64_t size) {
    absl::MutexLock lock(&mu_);
    synced_[name] = size;
  }

  class File : public leveldb::WritableFile {
   public:
    File(PowerCutEnv* env, std::string name, uint64_t size,
         leveldb::WritableFile* base)
        : env_(env), name_(std::move(name)), size_(size), base_(base) {}
    leveldb::Status Append(const leveldb::Slice& data) override {
      leveldb::Status s = base_->Append(data);
      if (s.ok()) size_ += data.size();
      return s;
    }
    leveldb::Status Close() override { return base_->Close(); }
    leveldb::Status Flush() override { return base_->Flush(); }
    leveldb::Status Sync() override {
      leveldb::Status s = base_->Sync();
      if (s.ok()) env_->SetSynced(name_, size_);
      return s;
    }

   private:
    PowerCutEnv* env_;
    const std::string name_;
    uint64_t size_;
    std::unique_ptr<leveldb::WritableFile> base_;
  };

  absl::Mutex mu_;
  std::map<std::string, uint64_t> synced_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pbft::test

#endif  // PBFT_LEDGER_TESTS_UNIT_POWER_CUT_ENV_H_
