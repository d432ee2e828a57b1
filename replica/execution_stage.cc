#include "replica/execution_stage.h"

#include <utility>

#include "common/thread_name.h"

namespace pbft::replica {

ExecutionStage::ExecutionStage(node::StateMachine* state,
                               size_t inline_bytes_max,
                               std::function<void()> wake)
    : state_(state),
      inline_bytes_max_(inline_bytes_max),
      wake_(std::move(wake)) {
  thread_ = std::thread([this] {
    NameThisThread("execute");
    Run();
  });
}

ExecutionStage::~ExecutionStage() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

size_t ExecutionStage::RequestBytes(const core::CommittedBatch& batch) {
  size_t bytes = 0;
  for (const pbft::v1::Envelope& e : batch.pre_prepare.batch()) {
    bytes += e.payload().size();
  }
  return bytes;
}

bool ExecutionStage::Inline(const core::CommittedBatch& batch) {
  return RequestBytes(batch) <= inline_bytes_max_;
}

void ExecutionStage::Submit(core::CommittedBatch batch) {
  absl::MutexLock l(&mu_);
  queue_.push_back(std::move(batch));
}

void ExecutionStage::TakeResults(std::vector<Result>* out) {
  absl::MutexLock l(&mu_);
  for (Result& r : results_) out->push_back(std::move(r));
  results_.clear();
}

bool ExecutionStage::HasWork() const { return stopping_ || !queue_.empty(); }

// After an error nothing more is executed: the node stops at that result,
// and a block applied past one that failed would fork the ledger.
void ExecutionStage::Run() {
  bool failed = false;
  for (;;) {
    core::CommittedBatch batch;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &ExecutionStage::HasWork));
      if (queue_.empty()) return;  // Stopping, and everything executed.
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    if (failed) continue;
    Result r{batch.seq, state_->Execute(batch)};
    failed = !r.done.ok();
    {
      absl::MutexLock l(&mu_);
      results_.push_back(std::move(r));
    }
    wake_();
  }
}

}  // namespace pbft::replica
