#include "replica/node/fetch_responder.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace pbft::node {

FetchResponder::FetchResponder(FetchResponderOptions options,
                               const BlockSource* blocks,
                               const ProtocolStorage* bodies)
    : options_(options), blocks_(blocks), bodies_(bodies) {
  CHECK(blocks_ != nullptr);
  CHECK_GT(options_.n, 0u);
  CHECK_GT(options_.response_bytes_max, 0u);
  CHECK_GT(options_.blocks_max, 0u);
}

bool FetchResponder::Parse(const pbft::v1::Envelope& e,
                           pbft::v1::FetchRequest* req) const {
  return req->ParseFromString(e.payload()) && req->replica_id() == e.sender() &&
         e.sender() < options_.n && e.sender() != options_.self;
}

pbft::v1::FetchResponse FetchResponder::Build(
    const pbft::v1::FetchRequest& req,
    const pbft::v1::CheckpointProof& stable) const {
  pbft::v1::FetchResponse resp;
  resp.set_replica_id(options_.self);
  *resp.mutable_stable_checkpoint() = stable;
  if (!req.batch_digest().empty()) {
    BuildBody(req, &resp);
    return resp;
  }
  // Room left for blocks, with each repeated entry's tag and length.
  size_t bytes = resp.ByteSizeLong();
  const uint64_t last = blocks_->last_executed();
  const uint32_t count =
      std::min(req.max_blocks() == 0 ? options_.blocks_max : req.max_blocks(),
               options_.blocks_max);
  const uint64_t from = std::max<uint64_t>(req.from_seq(), 1);
  for (uint64_t h = from; h <= last && h - from < count; ++h) {
    absl::StatusOr<pbft::v1::CertifiedBatch> cb = blocks_->GetCertifiedBatch(h);
    if (!cb.ok()) break;
    const size_t entry = cb->ByteSizeLong() + 6;
    if (bytes + entry > options_.response_bytes_max) break;
    bytes += entry;
    *resp.add_batches() = *std::move(cb);
  }
  return resp;
}

void FetchResponder::BuildBody(const pbft::v1::FetchRequest& req,
                               pbft::v1::FetchResponse* resp) const {
  std::optional<pbft::v1::Envelope> body;
  if (bodies_ != nullptr) {
    // A read error is answered as "not held": the requester asks another.
    absl::StatusOr<std::optional<pbft::v1::Envelope>> found =
        bodies_->FindBody(req.from_seq(), req.batch_digest());
    if (found.ok()) body = *std::move(found);
  }
  if (!body && req.from_seq() >= 1 &&
      req.from_seq() <= blocks_->last_executed()) {
    absl::StatusOr<pbft::v1::CertifiedBatch> cb =
        blocks_->GetCertifiedBatch(req.from_seq());
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

InlineFetchService::InlineFetchService(const FetchResponder* responder,
                                       Respond respond)
    : responder_(responder), respond_(std::move(respond)) {
  CHECK(responder_ != nullptr);
}

FetchService::Admit InlineFetchService::Offer(const pbft::v1::Envelope& e) {
  pbft::v1::FetchRequest req;
  if (!responder_->Parse(e, &req)) return Admit::kMalformed;
  ++served_;
  respond_(static_cast<uint32_t>(e.sender()), req,
           responder_->Build(req, stable_));
  return Admit::kQueued;
}

}  // namespace pbft::node
