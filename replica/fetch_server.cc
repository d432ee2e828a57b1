#include "replica/fetch_server.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/check.h"
#include "common/thread_name.h"

namespace pbft::replica {

FetchServer::FetchServer(FetchServerOptions options,
                         const node::BlockSource* blocks,
                         const node::ProtocolStorage* bodies,
                         const EnvelopeSigner* signer, Send send)
    : options_(options),
      responder_({options.self, options.n, options.response_bytes_max,
                  options.blocks_max},
                 blocks, bodies),
      signer_(signer),
      send_(std::move(send)),
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
  thread_ = std::thread([this] {
    NameThisThread("fetch");
    Run();
  });
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
  if (!responder_.Parse(e, &req)) return Admit::kMalformed;
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
  pbft::v1::CheckpointProof stable;
  {
    absl::MutexLock l(&mu_);
    stable = stable_;
  }
  return responder_.Build(req, stable);
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

}  // namespace pbft::replica
