// Signature verification off the core's thread.
//
// Envelopes from peers and clients are queued here; worker threads check the
// envelope signature and, for a PRE-PREPARE, every client request inside it
// (a primary must not be able to forge requests, PBFT.md §4.2), and hand only
// verified envelopes to `deliver`. What fails is dropped and counted by
// reason; nothing unverified reaches the core.
//
// A bounded cache remembers envelopes already verified (keyed by a SHA-256
// of type, sender, payload and signature), so a client request verified
// when it arrived by Submit is not verified again inside the pre-prepare.
//
// Thread-safe. Owns its threads; the destructor stops and joins them.
#ifndef PBFT_LEDGER_REPLICA_NET_VERIFY_POOL_H_
#define PBFT_LEDGER_REPLICA_NET_VERIFY_POOL_H_

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/bounded_queue.h"
#include "common/envelope.h"
#include "pbft/v1/pbft.pb.h"

namespace ledger::net {

// A bounded set of envelopes known to verify. Thread-safe.
class VerifiedCache {
 public:
  explicit VerifiedCache(size_t capacity) : capacity_(capacity) {}
  static Digest Key(const pbft::v1::Envelope& e);
  bool Contains(const Digest& key) const;
  void Insert(const Digest& key);

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<Digest> set_ ABSL_GUARDED_BY(mu_);
  std::deque<Digest> order_ ABSL_GUARDED_BY(mu_);  // FIFO eviction.
};

// Why a message was dropped before the core; metric labels.
enum class DropReason {
  kQueueFull,
  kBadEnvelope,       // Unknown type or sender, bad signature, oversize.
  kMalformedPayload,  // Payload does not decode.
  kBadNestedRequest,  // A request inside a pre-prepare fails to verify.
  kCount,
};
const char* DropReasonName(DropReason r);

class VerifyPool {
 public:
  using Deliver = std::function<void(pbft::v1::Envelope)>;

  // `verifier` must outlive the pool. `deliver` runs on a worker thread.
  VerifyPool(const EnvelopeVerifier* verifier, int threads, size_t queue_max,
             Deliver deliver);
  ~VerifyPool();
  VerifyPool(const VerifyPool&) = delete;
  VerifyPool& operator=(const VerifyPool&) = delete;

  // Queues `e` for verification; false (and counted) if the queue is full.
  bool Submit(pbft::v1::Envelope e);

  // Verifies synchronously on the caller's thread (client Submit path) and
  // remembers the result in the cache.
  absl::Status VerifyNow(const pbft::v1::Envelope& e);

  uint64_t dropped(DropReason r) const {
    return dropped_[static_cast<size_t>(r)].load();
  }
  uint64_t verified() const { return verified_.load(); }
  uint64_t cache_hits() const { return cache_hits_.load(); }
  size_t queue_size() const { return queue_.size(); }

 private:
  void Run();
  // kCount means "ok".
  DropReason Check(const pbft::v1::Envelope& e);
  bool CheckOne(const pbft::v1::Envelope& e);

  const EnvelopeVerifier* verifier_;
  Deliver deliver_;
  BoundedQueue<pbft::v1::Envelope> queue_;
  VerifiedCache cache_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(DropReason::kCount)>
      dropped_{};
  std::atomic<uint64_t> verified_{0};
  std::atomic<uint64_t> cache_hits_{0};
  std::vector<std::thread> threads_;
};

}  // namespace ledger::net

#endif  // PBFT_LEDGER_REPLICA_NET_VERIFY_POOL_H_
