#include "replica/ledger/parallel_expand.h"

#include "common/check.h"
#include "common/thread_name.h"

namespace pbft::ledger::internal {

ParallelExpander::ParallelExpander(bool use_helper) : use_helper_(use_helper) {}

ParallelExpander::~ParallelExpander() {
  {
    absl::MutexLock lock(&mu_);
    CHECK(!pending_ && !active_);  // Start() without Finish().
    stop_ = true;
  }
  if (helper_.joinable()) helper_.join();
}

void ParallelExpander::Start(const std::vector<Job>* jobs) {
  CHECK(jobs != nullptr);
  CHECK(jobs_ == nullptr);  // Start() twice without Finish().
  jobs_ = jobs;
  next_.store(0);
  if (!use_helper_ || jobs->size() < kParallelJobsMin) return;
  if (!helper_.joinable()) {
    helper_ = std::thread([this] {
      NameThisThread("state-hash");
      HelperLoop();
    });
  }
  absl::MutexLock lock(&mu_);  // Publishes jobs_ and next_ to the helper.
  pending_ = true;
}

void ParallelExpander::Finish(StateHash* hash) {
  CHECK(jobs_ != nullptr);  // Finish() without Start().
  Drain(hash);
  {
    absl::MutexLock lock(&mu_);
    // Not picked up yet: withdrawn, the helper never sees these jobs.
    pending_ = false;
    // Picked up: it may still be expanding a job it claimed.
    mu_.Await(absl::Condition(this, &ParallelExpander::HelperIdle));
  }
  CHECK_GE(next_.load(), jobs_->size());
  hash->Merge(helper_sum_);
  helper_sum_ = StateHash();
  jobs_ = nullptr;
}

size_t ParallelExpander::Drain(StateHash* sum) {
  const std::vector<Job>& jobs = *jobs_;
  size_t done = 0;
  StateHash::Lanes scratch;
  for (size_t i = next_.fetch_add(1); i < jobs.size(); i = next_.fetch_add(1)) {
    const Job& job = jobs[i];
    // A cached expansion is 2 KB of cold memory: start loading the next
    // one's while this job runs.
    if (i + 1 < jobs.size() && jobs[i + 1].expanded != nullptr) {
      const char* p = reinterpret_cast<const char*>(jobs[i + 1].expanded);
      for (size_t off = 0; off < sizeof(StateHash::Lanes); off += 64) {
        __builtin_prefetch(p + off);
      }
    }
    const StateHash::Lanes* element = job.expanded;
    if (element == nullptr) {
      StateHash::Lanes* out = job.out != nullptr ? job.out : &scratch;
      StateHash::Expand(job.key, job.value, out);
      element = out;
    }
    if (job.remove) {
      sum->RemoveLanes(*element);
    } else {
      sum->AddLanes(*element);
    }
    ++done;
  }
  return done;
}

void ParallelExpander::HelperLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &ParallelExpander::HelperHasWork));
      if (stop_) return;
      pending_ = false;
      active_ = true;
    }
    // The lock hand-over orders Start()'s writes (jobs_, next_, the job
    // inputs) before these reads, and these writes before Finish()'s reads.
    helper_jobs_.fetch_add(Drain(&helper_sum_));
    absl::MutexLock lock(&mu_);
    active_ = false;
  }
}

}  // namespace pbft::ledger::internal
