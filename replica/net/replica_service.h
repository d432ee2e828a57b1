// The inbound half of replica-to-replica transport: the ReplicaService
// stream handler. Every envelope read goes to the verification pool; the
// stream itself carries no authority (each envelope is signed).
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
  explicit ReplicaServiceImpl(VerifyPool* pool) : pool_(pool) {}

  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                               ledger::v1::StreamRequest>* stream) override;

  uint64_t received() const { return received_.load(); }

 private:
  VerifyPool* pool_;
  std::atomic<uint64_t> received_{0};
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_REPLICA_SERVICE_H_
