// Signature verification off the core's thread.
//
// Envelopes from peers and clients are checked here, either on the thread
// that received them (VerifyHere: ledgerd's stream of each peer, so a
// message reaches the core with one thread hand-off less, and a peer that
// floods spends its own stream's thread) or queued for a pool of worker
// threads (Submit). Either way the checks are the envelope signature and, for a
// PRE-PREPARE, every client request inside it (a primary must not be able to
// forge requests, Castro–Liskov §4.2), and hand only verified envelopes to
// `deliver`. What fails is dropped and counted by reason; nothing unverified
// reaches the core.
//
// Before a signature is checked, a message over its type's byte limit is
// refused; after, its payload must be canonical and within its type's
// limits, nested envelopes included (common/wire_limits.h). Each claimed
// sender has its own share of the queue (common/fair_queue.h), so a peer
// that floods fills only its own share; every refusal is counted by sender
// and reason.
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
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/envelope.h"
#include "common/fair_queue.h"
#include "common/wire_limits.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::net {

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
  kQueueFull,         // The sender's share of the queue is full.
  kBadEnvelope,       // Unknown type or sender, bad signature, oversize.
  kMalformedPayload,  // Payload does not decode (or wrong nested type).
  kBadNestedRequest,  // A request inside a pre-prepare fails to verify.
  kOversizeForType,   // Over its message type's byte limit.
  kNonCanonical,      // Unknown fields or not the canonical encoding.
  kTooManyEntries,    // More nested entries than its type allows.
  // A vote or checkpoint outside the receiver's window, beyond the few a
  // second per sender the core needs to notice that it lags.
  kOutOfWindowThrottled,
  kCount,
};
const char* DropReasonName(DropReason r);

class VerifyPool {
 public:
  using Deliver = std::function<void(pbft::v1::Envelope)>;

  // `verifier` must outlive the pool. `deliver` runs on a worker thread
  // (Submit) or the caller's (VerifyHere). Senders 0..limits.n-1 each have
  // `share` of the queue; anything claiming another sender shares one
  // more. With `threads` 0 there is no queue: only VerifyHere.
  VerifyPool(const EnvelopeVerifier* verifier, int threads,
             const WireLimits& limits, QueueShare share, Deliver deliver);
  ~VerifyPool();
  VerifyPool(const VerifyPool&) = delete;
  VerifyPool& operator=(const VerifyPool&) = delete;

  // Queues `e` for verification; false (and counted) if it is over its
  // type's limit or its sender's share is full.
  // Needs threads.
  bool Submit(pbft::v1::Envelope e);

  // The same checks as Submit and a worker, on the caller's thread: `e` is
  // delivered (true) or dropped and counted (false) before this returns.
  // Envelopes of one claimed sender are checked one at a time (callers on
  // other threads wait), so a sender's many streams use one thread's time.
  bool VerifyHere(pbft::v1::Envelope e);

  // The core's window (h, H], published by its owner: votes and checkpoints
  // at or below h or beyond H + (H - h) are useful to the core only as a
  // sign that it lags, so beyond `kOutOfWindowPerSecond` a second per
  // sender they are refused before their signature is checked. (0, 0): no
  // window known yet.
  void SetWindow(uint64_t low, uint64_t high) {
    low_ = low;
    high_ = high;
  }
  static constexpr double kOutOfWindowPerSecond = 100;

  // Verifies synchronously on the caller's thread (client Submit path) and
  // remembers the result in the cache.
  absl::Status VerifyNow(const pbft::v1::Envelope& e);

  // What a worker checks before it delivers a queued envelope: sender and
  // signature, then CheckWireMessage, then (PRE-PREPARE) every client
  // request inside it. DropReason::kCount means it passes. Thread-safe
  // (the peer-message fuzz target calls it directly).
  DropReason Check(const pbft::v1::Envelope& e);

  uint64_t dropped(DropReason r) const;
  // Refusals of what claimed to come from replica `sender` (< limits.n).
  uint64_t dropped_from(uint32_t sender, DropReason r) const {
    return by_sender_[Slot(sender < limits_.n ? sender : limits_.n, r)].load();
  }
  uint64_t verified() const { return verified_.load(); }
  uint64_t cache_hits() const { return cache_hits_.load(); }

 private:
  void Run();
  // Submit's checks before anything is queued or verified: the type's byte
  // limit and the out-of-window allowance. Counts what it refuses.
  bool Admissible(const pbft::v1::Envelope& e, size_t* source);
  bool CheckAndDeliver(pbft::v1::Envelope e);
  // False if `e` is a vote or checkpoint outside the window and its
  // sender's out-of-window allowance is spent.
  bool WithinWindowAllowance(const pbft::v1::Envelope& e, size_t source);
  // Replica messages are charged to their claimed sender; client requests
  // (forwarded by peers) and unknown senders share one more slot.
  size_t Source(const pbft::v1::Envelope& e) const;
  size_t Slot(size_t source, DropReason r) const {
    return source * static_cast<size_t>(DropReason::kCount) +
           static_cast<size_t>(r);
  }
  void Count(const pbft::v1::Envelope& e, DropReason r) {
    by_sender_[Slot(Source(e), r)]++;
  }
  bool CheckOne(const pbft::v1::Envelope& e);

  const EnvelopeVerifier* verifier_;
  const WireLimits limits_;
  Deliver deliver_;
  FairQueue<pbft::v1::Envelope> queue_;
  VerifiedCache cache_;
  // (limits.n + 1) x DropReason::kCount counters.
  std::unique_ptr<std::atomic<uint64_t>[]> by_sender_;
  std::atomic<uint64_t> low_{0}, high_{0};
  absl::Mutex allowance_mu_;
  struct Allowance {
    double tokens = kOutOfWindowPerSecond;
    absl::Time refilled = absl::InfinitePast();
  };
  std::vector<Allowance> allowance_ ABSL_GUARDED_BY(allowance_mu_);
  std::atomic<uint64_t> verified_{0};
  std::atomic<uint64_t> cache_hits_{0};
  // VerifyHere's lock per source (Source()).
  std::unique_ptr<absl::Mutex[]> here_mu_;
  std::vector<std::thread> threads_;
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_VERIFY_POOL_H_
