// ExecutionStage: ledgerd's node::BatchExecutor. It executes committed
// blocks on a thread of its own, so that the core thread goes on with
// agreement on the next blocks while one is applied (Ledger::ApplyBlock,
// its synced write). Blocks are executed in the order submitted, each once;
// the results wait, in that order, until the core thread takes them
// (TakeResults) and hands them to ReplicaNode::Executed. After each result
// the stage calls `wake` (the core loop's intake: FairQueue::Wake).
//
// The hand-off costs two thread switches per block, which a small block
// need not pay: Inline() keeps a block whose requests total at most
// `inline_bytes_max` bytes on the core thread (the node asks only while no
// block is outstanding, so order is kept). ledgerd runs without a stage
// unless --inline-execution-bytes is set: docs/architecture.md,
// "Execution", has the measurements behind both.
//
// Thread-safe: Submit, Inline and TakeResults from the core thread, the
// rest of the work on the stage's. The destructor executes what was
// submitted (synced writes, as a graceful stop promises), then joins.
#ifndef PBFT_LEDGER_REPLICA_EXECUTION_STAGE_H_
#define PBFT_LEDGER_REPLICA_EXECUTION_STAGE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "replica/core/core.h"
#include "replica/node/node_interfaces.h"

namespace pbft::replica {

class ExecutionStage final : public node::BatchExecutor {
 public:
  struct Result {
    Seq seq;
    absl::StatusOr<node::StateMachine::Executed> done;
  };

  // `state` must outlive the stage; only the stage's thread executes on it
  // while a block is outstanding. `wake` runs on the stage's thread.
  ExecutionStage(node::StateMachine* state, size_t inline_bytes_max,
                 std::function<void()> wake);
  ~ExecutionStage() override;
  ExecutionStage(const ExecutionStage&) = delete;
  ExecutionStage& operator=(const ExecutionStage&) = delete;

  bool Inline(const core::CommittedBatch& batch) override;
  void Submit(core::CommittedBatch batch) override;
  // Appends the results ready so far, in seq order.
  void TakeResults(std::vector<Result>* out);

  // The bytes Inline() compares: the sizes of the block's request payloads.
  static size_t RequestBytes(const core::CommittedBatch& batch);

 private:
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run();

  node::StateMachine* const state_;
  const size_t inline_bytes_max_;
  const std::function<void()> wake_;
  mutable absl::Mutex mu_;
  std::deque<core::CommittedBatch> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Result> results_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pbft::replica

#endif  // PBFT_LEDGER_REPLICA_EXECUTION_STAGE_H_
