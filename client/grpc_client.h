// What Client::Create (client_create.cc) hands the SDK's gRPC client
// (client.cc): the cluster, the client's key and one channel per replica.
// Internal to the SDK: not installed.
#ifndef PBFT_LEDGER_CLIENT_GRPC_CLIENT_H_
#define PBFT_LEDGER_CLIENT_GRPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "client/client.h"
#include "common/config.h"
#include "common/crypto.h"

namespace pbft::client::internal {

// A client of `cluster` as `client_id` signing with `key`, over
// `channels[i]` to replica i (one for each replica, in id order).
std::unique_ptr<Client> NewGrpcClient(
    Cluster cluster, uint64_t client_id, crypto::SecretKey key,
    const ClientOptions& options,
    const std::vector<std::shared_ptr<grpc::Channel>>& channels);

}  // namespace pbft::client::internal

#endif  // PBFT_LEDGER_CLIENT_GRPC_CLIENT_H_
