#include "replica/fetch_server.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/check.h"

namespace ledger {

FetchServer::FetchServer(FetchServerOptions options, const Ledger* ledger,
                         const EnvelopeSigner* signer, Send send,
                         FindBody find_body)
    : options_(options),
      ledger_(ledger),
      signer_(signer),
      send_(std::move(send)),
      find_body_(std::move(find_body)),
      peers_(options.n) {
  CHECK_GT(options_.n, 0u);
  CHECK_GT(options_.response_bytes_max, 0u);
  CHECK_GT(options_.rate_per_s, 0.0);
  CHECK_GE(options_.burst, 1.0);
  const absl::Time now = absl::Now();
  for (Peer& p : peers_) {
    p.tokens = options_.burst;
    p.refilled = now;
  }
  thread_ = std::thread([this] { Run(); });
}

FetchServer::~FetchServer() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

FetchServer::Admit FetchServer::Offer(const pbft::v1::Envelope& e) {
  pbft::v1::FetchRequest req;
  if (!req.ParseFromString(e.payload()) || req.replica_id() != e.sender() ||
      e.sender() >= options_.n || e.sender() == options_.self) {
    return Admit::kMalformed;
  }
  absl::MutexLock l(&mu_);
  Peer& p = peers_[e.sender()];
  const absl::Time now = absl::Now();
  p.tokens = std::min(
      options_.burst,
      p.tokens + options_.rate_per_s * absl::ToDoubleSeconds(now - p.refilled));
  p.refilled = now;
  if (p.tokens < 1.0) {
    ++p.throttled;
    return Admit::kThrottled;
  }
  p.tokens -= 1.0;
  const bool replacing = p.pending.has_value();
  if (replacing) ++p.replaced;
  p.pending = std::move(req);
  return replacing ? Admit::kReplaced : Admit::kQueued;
}

void FetchServer::SetStableCheckpoint(const pbft::v1::CheckpointProof& proof) {
  absl::MutexLock l(&mu_);
  stable_ = proof;
}

uint64_t FetchServer::throttled(uint32_t peer) const {
  absl::MutexLock l(&mu_);
  return peers_.at(peer).throttled;
}

uint64_t FetchServer::replaced(uint32_t peer) const {
  absl::MutexLock l(&mu_);
  return peers_.at(peer).replaced;
}

bool FetchServer::HasWork() const {
  if (stopping_) return true;
  for (const Peer& p : peers_) {
    if (p.pending.has_value()) return true;
  }
  return false;
}

pbft::v1::FetchResponse FetchServer::Build(
    const pbft::v1::FetchRequest& req) const {
  pbft::v1::FetchResponse resp;
  resp.set_replica_id(options_.self);
  {
    absl::MutexLock l(&mu_);
    *resp.mutable_stable_checkpoint() = stable_;
  }
  if (!req.batch_digest().empty()) {
    BuildBody(req, &resp);
    return resp;
  }
  // Room left for blocks, with each repeated entry's tag and length.
  size_t bytes = resp.ByteSizeLong();
  const uint64_t last = ledger_->last_executed();
  const uint32_t count =
      std::min(req.max_blocks() == 0 ? options_.blocks_max : req.max_blocks(),
               options_.blocks_max);
  const uint64_t from = std::max<uint64_t>(req.from_seq(), 1);
  for (uint64_t h = from; h <= last && h - from < count; ++h) {
    absl::StatusOr<pbft::v1::CertifiedBatch> cb = ledger_->GetCertifiedBatch(h);
    if (!cb.ok()) break;
    const size_t entry = cb->ByteSizeLong() + 6;
    if (bytes + entry > options_.response_bytes_max) break;
    bytes += entry;
    *resp.add_batches() = *std::move(cb);
  }
  return resp;
}

void FetchServer::BuildBody(const pbft::v1::FetchRequest& req,
                            pbft::v1::FetchResponse* resp) const {
  std::optional<pbft::v1::Envelope> body;
  if (find_body_) body = find_body_(req.from_seq(), req.batch_digest());
  if (!body && req.from_seq() >= 1 &&
      req.from_seq() <= ledger_->last_executed()) {
    absl::StatusOr<pbft::v1::CertifiedBatch> cb =
        ledger_->GetCertifiedBatch(req.from_seq());
    pbft::v1::PrePrepare pp;
    if (cb.ok() && pp.ParseFromString(cb->pre_prepare().payload()) &&
        pp.batch_digest() == req.batch_digest()) {
      body = std::move(*cb->mutable_pre_prepare());
    }
  }
  // A body is at most batch_bytes_max (< message_bytes_max) and a header.
  if (body && resp->ByteSizeLong() + body->ByteSizeLong() + 6 <=
                  options_.response_bytes_max) {
    *resp->mutable_batch_pre_prepare() = *std::move(body);
  }
}

void FetchServer::Run() {
  while (true) {
    uint32_t peer = 0;
    pbft::v1::FetchRequest req;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &FetchServer::HasWork));
      if (stopping_) return;
      // Serve peers in turn.
      while (!peers_[next_].pending.has_value())
        next_ = (next_ + 1) % options_.n;
      peer = static_cast<uint32_t>(next_);
      req = *std::move(peers_[next_].pending);
      peers_[next_].pending.reset();
      next_ = (next_ + 1) % options_.n;
    }
    pbft::v1::FetchResponse resp = Build(req);
    send_(peer,
          signer_->SignMessage(pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE, resp));
    served_.fetch_add(1);
  }
}

}  // namespace ledger
