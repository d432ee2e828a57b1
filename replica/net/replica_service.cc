#include "replica/net/replica_service.h"

namespace ledger::net {

grpc::Status ReplicaServiceImpl::Stream(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) {
  v1::StreamRequest req;
  while (!ctx->IsCancelled() && stream->Read(&req)) {
    for (pbft::v1::Envelope& e : *req.mutable_envelopes()) {
      received_.fetch_add(1);
      pool_->Submit(std::move(e));  // Counts its own drops.
    }
    req.Clear();
  }
  return grpc::Status::OK;
}

}  // namespace ledger::net
