#include "replica/net/replica_service.h"

#include "common/proto_names.h"
#include "common/trace.h"

namespace pbft::net {

grpc::Status ReplicaServiceImpl::Stream(
    grpc::ServerContext* /*ctx*/,
    grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                             ledger::v1::StreamRequest>* stream) {
  ledger::v1::StreamRequest req;
  // Read fails once the stream is cancelled or the server shuts down. No
  // ctx->IsCancelled() per message: on a synchronous stream it polls the
  // call's completion queue each time (a futex round trip, 7.6% of a
  // backup's samples at one client: docs/benchmarks.md, "A cancellation
  // check per peer message").
  while (stream->Read(&req)) {
    for (pbft::v1::Envelope& e : *req.mutable_envelopes()) {
      received_.fetch_add(1);
      trace::Event("read", e.type(), e.sender());
      // Each counts its own drops.
      if (verify_on_stream_) {
        pool_->VerifyHere(std::move(e));
      } else {
        pool_->Submit(std::move(e));
      }
    }
    req.Clear();
  }
  return grpc::Status::OK;
}

}  // namespace pbft::net
