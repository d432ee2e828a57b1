#include "replica/net/replica_service.h"

#include <vector>

#include "common/proto_names.h"

namespace pbft::net {

grpc::Status ReplicaServiceImpl::Stream(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                             ledger::v1::StreamRequest>* stream) {
  ledger::v1::StreamRequest req;
  std::vector<pbft::v1::Envelope> envelopes;
  while (!ctx->IsCancelled() && stream->Read(&req)) {
    envelopes.clear();
    envelopes.reserve(req.envelopes_size());
    for (pbft::v1::Envelope& e : *req.mutable_envelopes()) {
      envelopes.push_back(std::move(e));
    }
    received_.fetch_add(envelopes.size());
    // One queue lock and at most one worker wake-up per stream message.
    pool_->SubmitMany(&envelopes);  // Counts its own drops.
    req.Clear();
  }
  return grpc::Status::OK;
}

}  // namespace pbft::net
