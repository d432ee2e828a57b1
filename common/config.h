// The cluster configuration: loading (the protobuf JSON mapping of
// ledger.v1.ClusterConfig), validation, defaults, and look-ups.
//
// Every validation error names the file and the field, e.g.
//   "cluster.json: replicas[2].public_key: must be 32 bytes, got 31".
//
// A Cluster is immutable once built and thread-safe.
#ifndef PBFT_LEDGER_COMMON_CONFIG_H_
#define PBFT_LEDGER_COMMON_CONFIG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/protocol_params.h"
#include "common/types.h"
#include "ledger/v1/config.pb.h"

namespace pbft {

class Cluster {
 public:
  // Reads and validates a cluster.json file.
  static absl::StatusOr<Cluster> LoadFile(const std::string& path);
  // `source` names the origin in error messages (usually the file name).
  static absl::StatusOr<Cluster> FromJson(absl::string_view json,
                                          absl::string_view source);
  static absl::StatusOr<Cluster> FromProto(
      const ledger::v1::ClusterConfig& config, absl::string_view source);

  const ledger::v1::ClusterConfig& config() const { return *config_; }
  const std::string& cluster_id() const { return config_->cluster_id(); }
  const ProtocolParams& protocol() const { return protocol_; }

  uint32_t n() const { return static_cast<uint32_t>(replica_keys_.size()); }
  uint32_t f() const { return config_->f(); }
  // n = 3f+1 (ValidateReplicaCount), so 2f+1 and f+1.
  uint32_t quorum() const { return Quorum(f()); }
  uint32_t weak_quorum() const { return WeakQuorum(f()); }

  const ledger::v1::ReplicaConfig& replica(ReplicaId id) const;
  const crypto::PublicKey& replica_key(ReplicaId id) const;
  const std::vector<crypto::PublicKey>& replica_keys() const {
    return replica_keys_;
  }
  // nullptr if no such client.
  const ledger::v1::ClientConfig* client(uint64_t id) const;
  const ledger::v1::ClientConfig* client_by_key(
      const crypto::PublicKey& key) const;
  // Replica id whose key is `key`, or -1.
  int replica_by_key(const crypto::PublicKey& key) const;
  bool IsIssuer(uint64_t client_id, uint32_t ledger) const;

  // A verifier for envelopes of this cluster.
  EnvelopeVerifier MakeVerifier() const;

 private:
  Cluster() = default;

  std::shared_ptr<const ledger::v1::ClusterConfig> config_;
  ProtocolParams protocol_;
  std::vector<crypto::PublicKey> replica_keys_;
  absl::flat_hash_map<uint64_t, size_t> client_index_;
  absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys_;
};

// The protobuf JSON mapping, pretty-printed, field names as in the proto.
std::string ClusterConfigToJson(const ledger::v1::ClusterConfig& config);

// Splits "host:port"; fails naming `field` if malformed.
absl::Status ParseHostPort(absl::string_view address, absl::string_view field,
                           std::string* host, uint16_t* port);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_CONFIG_H_
