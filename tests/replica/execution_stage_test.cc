#include "replica/execution_stage.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/crypto.h"
#include "tests/net/net_test_util.h"

namespace pbft::replica {
namespace {

// Records the seqs it executes and the thread each ran on; fails at
// `fail_at`. Execute may block until the test opens the gate.
class RecordingMachine final : public node::StateMachine {
 public:
  uint64_t last_executed() const override { return 0; }
  absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t) const override {
    return absl::UnimplementedError("test");
  }
  absl::StatusOr<uint64_t> last_timestamp_ms() const override { return 0; }
  absl::StatusOr<std::vector<ClientEntry>> ClientTable() const override {
    return std::vector<ClientEntry>{};
  }
  absl::StatusOr<Executed> Execute(const core::CommittedBatch& b) override {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(&open));
    seqs.push_back(b.seq.value());
    threads.push_back(std::this_thread::get_id());
    if (b.seq.value() == fail_at) return absl::DataLossError("disk full");
    Executed e;
    e.state_digest = crypto::Sha256(std::to_string(b.seq.value()));
    return e;
  }

  absl::Mutex mu;
  bool open = true;
  std::vector<uint64_t> seqs;
  std::vector<std::thread::id> threads;
  uint64_t fail_at = 0;
};

core::CommittedBatch Batch(uint64_t seq, std::vector<size_t> payloads = {}) {
  core::CommittedBatch b;
  b.seq = Seq(seq);
  for (size_t bytes : payloads) {
    b.pre_prepare.add_batch()->set_payload(std::string(bytes, 'x'));
  }
  return b;
}

// Waits (bounded) until `n` results were taken; returns them all.
std::vector<ExecutionStage::Result> TakeN(ExecutionStage& stage, size_t n) {
  std::vector<ExecutionStage::Result> out;
  net::Eventually([&] {
    stage.TakeResults(&out);
    return out.size() >= n;
  });
  return out;
}

TEST(ExecutionStageTest, ExecutesInOrderOnItsOwnThreadAndWakesPerResult) {
  RecordingMachine machine;
  std::atomic<int> wakes{0};
  std::vector<ExecutionStage::Result> out;
  {
    ExecutionStage stage(&machine, 0, [&wakes] { ++wakes; });
    for (uint64_t s = 1; s <= 5; ++s) stage.Submit(Batch(s));
    out = TakeN(stage, 5);
  }  // Joined: every wake has run.
  ASSERT_EQ(out.size(), 5u);
  for (uint64_t s = 1; s <= 5; ++s) {
    EXPECT_EQ(out[s - 1].seq.value(), s);
    ASSERT_TRUE(out[s - 1].done.ok());
    EXPECT_EQ(out[s - 1].done->state_digest, crypto::Sha256(std::to_string(s)));
  }
  EXPECT_EQ(wakes.load(), 5);
  absl::MutexLock l(&machine.mu);
  EXPECT_EQ(machine.seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  for (std::thread::id t : machine.threads) {
    EXPECT_NE(t, std::this_thread::get_id());
  }
}

// A graceful stop: what was submitted is executed before the destructor
// returns, though the thread was held when the stop began.
TEST(ExecutionStageTest, TheDestructorExecutesEverythingSubmitted) {
  RecordingMachine machine;
  {
    absl::MutexLock l(&machine.mu);
    machine.open = false;
  }
  std::thread opener;
  {
    ExecutionStage stage(&machine, 0, [] {});
    for (uint64_t s = 1; s <= 3; ++s) stage.Submit(Batch(s));
    opener = std::thread([&machine] {
      absl::SleepFor(absl::Milliseconds(20));
      absl::MutexLock l(&machine.mu);
      machine.open = true;
    });
  }
  opener.join();
  absl::MutexLock l(&machine.mu);
  EXPECT_EQ(machine.seqs, (std::vector<uint64_t>{1, 2, 3}));
}

// After a failed block nothing later is executed: the error is the last
// result, and the node stops at it.
TEST(ExecutionStageTest, NothingIsExecutedAfterAFailure) {
  RecordingMachine machine;
  machine.fail_at = 2;
  std::vector<ExecutionStage::Result> out;
  {
    ExecutionStage stage(&machine, 0, [] {});
    for (uint64_t s = 1; s <= 4; ++s) stage.Submit(Batch(s));
    out = TakeN(stage, 2);
  }
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].done.ok());
  EXPECT_EQ(out[1].done.status().code(), absl::StatusCode::kDataLoss);
  absl::MutexLock l(&machine.mu);
  EXPECT_EQ(machine.seqs, (std::vector<uint64_t>{1, 2}));
}

// Inline compares the block's request payload bytes with the bound.
TEST(ExecutionStageTest, InlineKeepsBlocksUpToTheBoundOnTheCoreThread) {
  RecordingMachine machine;
  ExecutionStage stage(&machine, 1000, [] {});
  EXPECT_EQ(ExecutionStage::RequestBytes(Batch(1, {400, 600})), 1000u);
  EXPECT_TRUE(stage.Inline(Batch(1)));  // A null batch.
  EXPECT_TRUE(stage.Inline(Batch(1, {400, 600})));
  EXPECT_FALSE(stage.Inline(Batch(1, {400, 601})));
  ExecutionStage every(&machine, 0, [] {});
  EXPECT_TRUE(every.Inline(Batch(1)));
  EXPECT_FALSE(every.Inline(Batch(1, {1})));
}

}  // namespace
}  // namespace pbft::replica
