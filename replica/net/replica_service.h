// The inbound half of replica-to-replica transport: the ReplicaService
// stream handler. Every envelope read is verified (VerifyPool::VerifyHere
// on this stream's thread, or queued for the pool's threads with
// `verify_on_stream` false) and only then handed on; the stream itself
// carries no authority (each envelope is signed).
//
// Thread-safe (gRPC runs one handler thread per open stream).
#ifndef PBFT_LEDGER_REPLICA_NET_REPLICA_SERVICE_H_
#define PBFT_LEDGER_REPLICA_NET_REPLICA_SERVICE_H_

#include <atomic>

#include "common/proto_names.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/net/verify_pool.h"

namespace pbft::net {

class ReplicaServiceImpl final : public ledger::v1::ReplicaService::Service {
 public:
  ReplicaServiceImpl(VerifyPool* pool, bool verify_on_stream)
      : pool_(pool), verify_on_stream_(verify_on_stream) {}

  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                               ledger::v1::StreamRequest>* stream) override;

  uint64_t received() const { return received_.load(); }

 private:
  VerifyPool* pool_;
  const bool verify_on_stream_;
  std::atomic<uint64_t> received_{0};
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_REPLICA_SERVICE_H_
