#include "replica/net/verify_pool.h"

#include "common/codec.h"
#include "common/crypto.h"

namespace ledger::net {
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
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

VerifyPool::VerifyPool(const EnvelopeVerifier* verifier, int threads,
                       size_t queue_max, Deliver deliver)
    : verifier_(verifier),
      deliver_(std::move(deliver)),
      queue_(queue_max),
      cache_(kVerifiedCacheMax) {
  CHECK_GT(threads, 0);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

VerifyPool::~VerifyPool() {
  queue_.Close();
  for (std::thread& t : threads_) t.join();
}

bool VerifyPool::Submit(pbft::v1::Envelope e) {
  if (queue_.TryPush(std::move(e))) return true;
  dropped_[static_cast<size_t>(DropReason::kQueueFull)].fetch_add(1);
  return false;
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
  if (s.ok()) {
    cache_.Insert(key);
    verified_.fetch_add(1);
  }
  return s;
}

DropReason VerifyPool::Check(const pbft::v1::Envelope& e) {
  if (!CheckOne(e)) return DropReason::kBadEnvelope;
  if (e.type() == pbft::v1::MESSAGE_TYPE_PRE_PREPARE) {
    pbft::v1::PrePrepare pp;
    if (!pp.ParseFromString(e.payload())) return DropReason::kMalformedPayload;
    for (const pbft::v1::Envelope& r : pp.requests()) {
      if (r.type() != pbft::v1::MESSAGE_TYPE_REQUEST || !CheckOne(r)) {
        return DropReason::kBadNestedRequest;
      }
    }
  }
  return DropReason::kCount;
}

void VerifyPool::Run() {
  while (true) {
    std::optional<pbft::v1::Envelope> e = queue_.Pop(absl::Seconds(1));
    if (!e.has_value()) {
      if (queue_.closed()) return;
      continue;
    }
    DropReason r = Check(*e);
    if (r != DropReason::kCount) {
      dropped_[static_cast<size_t>(r)].fetch_add(1);
      continue;
    }
    verified_.fetch_add(1);
    deliver_(*std::move(e));
  }
}

}  // namespace ledger::net
