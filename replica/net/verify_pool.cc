#include "replica/net/verify_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/codec.h"
#include "common/crypto.h"
#include "common/thread_name.h"

namespace pbft::net {
namespace {
constexpr size_t kVerifiedCacheMax = 1 << 16;
}  // namespace

Digest VerifiedCache::Key(const pbft::v1::Envelope& e) {
  std::string head;
  codec::Writer w(&head);
  w.PutU32(static_cast<uint32_t>(e.type()));
  w.PutU64(e.sender());
  w.PutU32(static_cast<uint32_t>(e.payload().size()));
  return crypto::Sha256Of({head, e.payload(), e.signature()});
}

bool VerifiedCache::Contains(const Digest& key) const {
  absl::MutexLock l(&mu_);
  return set_.contains(key);
}

void VerifiedCache::Insert(const Digest& key) {
  absl::MutexLock l(&mu_);
  if (!set_.insert(key).second) return;
  order_.push_back(key);
  while (order_.size() > capacity_) {
    set_.erase(order_.front());
    order_.pop_front();
  }
}

const char* DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kQueueFull:
      return "queue_full";
    case DropReason::kBadEnvelope:
      return "bad_envelope";
    case DropReason::kMalformedPayload:
      return "malformed_payload";
    case DropReason::kBadNestedRequest:
      return "bad_nested_request";
    case DropReason::kOversizeForType:
      return "oversize_for_type";
    case DropReason::kNonCanonical:
      return "non_canonical";
    case DropReason::kTooManyEntries:
      return "too_many_entries";
    case DropReason::kOutOfWindowThrottled:
      return "out_of_window_throttled";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

VerifyPool::VerifyPool(const EnvelopeVerifier* verifier, int threads,
                       const WireLimits& limits, QueueShare share,
                       Deliver deliver)
    : verifier_(verifier),
      limits_(limits),
      deliver_(std::move(deliver)),
      queue_(limits.n + 1, share,
             FairQueue<pbft::v1::Envelope>::Overflow::kRefuseNew),
      cache_(kVerifiedCacheMax),
      by_sender_(
          new std::atomic<uint64_t>[(limits.n + 1) *
                                    static_cast<size_t>(DropReason::kCount)]()),
      allowance_(limits.n + 1),
      here_mu_(new absl::Mutex[limits.n + 1]) {
  CHECK_GE(threads, 0);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      NameThisThread("verify");
      Run();
    });
  }
}

VerifyPool::~VerifyPool() {
  queue_.Close();
  for (std::thread& t : threads_) t.join();
}

size_t VerifyPool::Source(const pbft::v1::Envelope& e) const {
  if (e.type() == pbft::v1::MESSAGE_TYPE_REQUEST || e.sender() >= limits_.n)
    return limits_.n;
  return static_cast<size_t>(e.sender());
}

uint64_t VerifyPool::dropped(DropReason r) const {
  uint64_t total = 0;
  for (size_t s = 0; s <= limits_.n; ++s) total += by_sender_[Slot(s, r)];
  return total;
}

bool VerifyPool::Admissible(const pbft::v1::Envelope& e, size_t* source) {
  // Cheap first: a payload over its type's limit is never checked further.
  const size_t max = limits_.PayloadMax(e.type());
  if (e.payload().size() > max) {
    Count(e,
          max == 0 ? DropReason::kBadEnvelope : DropReason::kOversizeForType);
    return false;
  }
  *source = Source(e);
  if (!WithinWindowAllowance(e, *source)) {
    by_sender_[Slot(*source, DropReason::kOutOfWindowThrottled)]++;
    return false;
  }
  return true;
}

bool VerifyPool::Submit(pbft::v1::Envelope e) {
  CHECK(!threads_.empty());
  size_t source = 0;
  if (!Admissible(e, &source)) return false;
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  if (queue_.Push(source, std::move(e), bytes).accepted) return true;
  by_sender_[Slot(source, DropReason::kQueueFull)]++;
  return false;
}

bool VerifyPool::VerifyHere(pbft::v1::Envelope e) {
  size_t source = 0;
  if (!Admissible(e, &source)) return false;
  // One check at a time per claimed sender: a sender that opens many
  // streams still verifies on one thread's time, as in the pool's share.
  absl::MutexLock l(&here_mu_[source]);
  return CheckAndDeliver(std::move(e));
}

bool VerifyPool::CheckAndDeliver(pbft::v1::Envelope e) {
  const DropReason r = Check(e);
  if (r != DropReason::kCount) {
    Count(e, r);
    return false;
  }
  verified_.fetch_add(1);
  deliver_(std::move(e));
  return true;
}

bool VerifyPool::WithinWindowAllowance(const pbft::v1::Envelope& e,
                                       size_t source) {
  const uint64_t high = high_.load();
  if (high == 0) return true;
  uint64_t seq = 0;
  switch (e.type()) {
    case pbft::v1::MESSAGE_TYPE_PREPARE:
    case pbft::v1::MESSAGE_TYPE_COMMIT: {
      pbft::v1::Prepare v;  // COMMIT has the same fields.
      if (!v.ParseFromString(e.payload())) return true;  // Refused later.
      seq = v.seq();
      break;
    }
    case pbft::v1::MESSAGE_TYPE_CHECKPOINT: {
      pbft::v1::Checkpoint c;
      if (!c.ParseFromString(e.payload())) return true;
      seq = c.seq();
      break;
    }
    default:
      return true;
  }
  // The core keeps some messages above H while it catches up, so only
  // what lies beyond a second window counts against the allowance.
  const uint64_t low = low_.load();
  if (seq > low && seq <= high + (high - low)) return true;
  absl::MutexLock l(&allowance_mu_);
  Allowance& a = allowance_[source];
  const absl::Time now = absl::Now();
  if (a.refilled != absl::InfinitePast()) {
    a.tokens = std::min(kOutOfWindowPerSecond,
                        a.tokens + kOutOfWindowPerSecond *
                                       absl::ToDoubleSeconds(now - a.refilled));
  }
  a.refilled = now;
  if (a.tokens < 1.0) return false;
  a.tokens -= 1.0;
  return true;
}

bool VerifyPool::CheckOne(const pbft::v1::Envelope& e) {
  const Digest key = VerifiedCache::Key(e);
  if (cache_.Contains(key)) {
    cache_hits_.fetch_add(1);
    return true;
  }
  if (verifier_->Check(e) != EnvelopeError::kOk) return false;
  cache_.Insert(key);
  return true;
}

absl::Status VerifyPool::VerifyNow(const pbft::v1::Envelope& e) {
  const Digest key = VerifiedCache::Key(e);
  if (cache_.Contains(key)) {
    cache_hits_.fetch_add(1);
    return absl::OkStatus();
  }
  absl::Status s = verifier_->Verify(e);
  // A request that backups would refuse inside a PRE-PREPARE must not
  // reach the primary's batch (it would stall the view).
  if (const WireError w = CheckWireMessage(e, limits_);
      s.ok() && w != WireError::kOk) {
    s = w == WireError::kOversize
            ? absl::ResourceExhaustedError(
                  "request.payload: over the request size limit")
            : absl::InvalidArgumentError(absl::StrCat(
                  "request.payload: ", WireErrorName(w),
                  " (unknown fields or a non-canonical protobuf encoding)"));
  }
  if (s.ok()) {
    cache_.Insert(key);
    verified_.fetch_add(1);
  }
  return s;
}

DropReason VerifyPool::Check(const pbft::v1::Envelope& e) {
  if (!CheckOne(e)) return DropReason::kBadEnvelope;
  switch (CheckWireMessage(e, limits_)) {
    case WireError::kOk:
      break;
    case WireError::kOversize:
      return DropReason::kOversizeForType;
    case WireError::kNonCanonical:
      return DropReason::kNonCanonical;
    case WireError::kTooMany:
      return DropReason::kTooManyEntries;
    case WireError::kMalformed:
    case WireError::kCount:
      return DropReason::kMalformedPayload;
  }
  if (e.type() == pbft::v1::MESSAGE_TYPE_PRE_PREPARE) {
    pbft::v1::PrePrepare pp;
    if (!pp.ParseFromString(e.payload())) return DropReason::kMalformedPayload;
    for (const pbft::v1::Envelope& r : BatchOf(e, pp)) {
      if (r.type() != pbft::v1::MESSAGE_TYPE_REQUEST || !CheckOne(r)) {
        return DropReason::kBadNestedRequest;
      }
    }
  }
  return DropReason::kCount;
}

void VerifyPool::Run() {
  std::vector<pbft::v1::Envelope> one;
  while (true) {
    one.clear();
    if (queue_.PopMany(&one, 1, absl::Seconds(1)) == 0) {
      if (queue_.closed()) return;
      continue;
    }
    CheckAndDeliver(std::move(one.front()));
  }
}

}  // namespace pbft::net
