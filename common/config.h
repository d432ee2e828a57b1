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
#include "common/types.h"
#include "ledger/v1/config.pb.h"

namespace ledger {

// Protocol parameters with defaults applied (a zero in the file means
// "default"). Limits are named so that what exceeds them is refused.
struct ProtocolParams {
  static constexpr uint32_t kDefaultCheckpointInterval = 128;  // K
  static constexpr uint32_t kDefaultWatermarkWindow = 256;     // L = 2K
  static constexpr uint32_t kDefaultBatchRequestsMax = 256;
  static constexpr uint32_t kDefaultBatchBytesMax = 4 << 20;
  static constexpr uint32_t kDefaultBatchDelayTicks = 1;
  static constexpr uint32_t kDefaultTickMs = 10;
  static constexpr uint32_t kDefaultViewChangeTimeoutTicks = 200;
  static constexpr uint32_t kDefaultRequestQueueMax = 10000;
  static constexpr uint32_t kDefaultTimestampSkewMaxMs = 5000;
  static constexpr uint32_t kDefaultMessageBytesMax = 8 << 20;
  static constexpr uint32_t kDefaultRequestOperationsMax = 8192;
  // Per-client shares (docs/operations.md, "Per-client limits").
  static constexpr uint32_t kDefaultClientCallsMax = 256;
  static constexpr uint32_t kDefaultClientQueueMax = 256;
  static_assert(kDefaultWatermarkWindow % kDefaultCheckpointInterval == 0);
  static_assert(kDefaultWatermarkWindow >= 2 * kDefaultCheckpointInterval);
  static_assert(kDefaultBatchBytesMax < kDefaultMessageBytesMax);

  uint32_t checkpoint_interval = kDefaultCheckpointInterval;
  uint32_t watermark_window = kDefaultWatermarkWindow;
  uint32_t batch_requests_max = kDefaultBatchRequestsMax;
  uint32_t batch_bytes_max = kDefaultBatchBytesMax;
  uint32_t batch_delay_ticks = kDefaultBatchDelayTicks;
  uint32_t tick_ms = kDefaultTickMs;
  uint32_t view_change_timeout_ticks = kDefaultViewChangeTimeoutTicks;
  uint32_t request_queue_max = kDefaultRequestQueueMax;
  uint32_t timestamp_skew_max_ms = kDefaultTimestampSkewMaxMs;
  uint32_t message_bytes_max = kDefaultMessageBytesMax;
  uint32_t request_operations_max = kDefaultRequestOperationsMax;
  // Submit calls one client may have waiting at a replica, requests it may
  // have in the request queue and their bytes; one client over its share is
  // refused (RESOURCE_EXHAUSTED / REJECT_REASON_CLIENT_SHARE_FULL), nobody
  // else is. Zero in the file: the default (bytes: 4 x batch_bytes_max).
  uint32_t client_calls_max = kDefaultClientCallsMax;
  uint32_t client_queue_max = kDefaultClientQueueMax;
  uint32_t client_queue_bytes_max = 4 * kDefaultBatchBytesMax;
  // The request queue's bytes (default 64 x batch_bytes_max).
  uint32_t request_queue_bytes_max = 64 * kDefaultBatchBytesMax;
  // Byte budgets of query answers (docs/api.md, "Answer budgets"): one
  // answer, and all answers of one reply. Default for both:
  // message_bytes_max - 1 MiB (room for the results and the envelope).
  uint32_t answer_bytes_max = kDefaultMessageBytesMax - (1 << 20);
  uint32_t reply_bytes_max = kDefaultMessageBytesMax - (1 << 20);
  // false (default): the primary cuts a batch at once when none is in
  // flight, and batches up while one is. true: always wait for a full batch
  // or batch_delay_ticks.
  bool batch_wait_when_idle = false;
};

class Cluster {
 public:
  // Reads and validates a cluster.json file.
  static absl::StatusOr<Cluster> LoadFile(const std::string& path);
  // `source` names the origin in error messages (usually the file name).
  static absl::StatusOr<Cluster> FromJson(absl::string_view json,
                                          absl::string_view source);
  static absl::StatusOr<Cluster> FromProto(const v1::ClusterConfig& config,
                                           absl::string_view source);

  const v1::ClusterConfig& config() const { return *config_; }
  const std::string& cluster_id() const { return config_->cluster_id(); }
  const ProtocolParams& protocol() const { return protocol_; }

  uint32_t n() const { return static_cast<uint32_t>(replica_keys_.size()); }
  uint32_t f() const { return config_->f(); }
  // Smallest quorum any two of which share f+1 replicas: 2f+1 when
  // n = 3f+1, ceil((n+f+1)/2) in general.
  uint32_t quorum() const { return (n() + f() + 2) / 2; }
  uint32_t weak_quorum() const { return f() + 1; }

  const v1::ReplicaConfig& replica(ReplicaId id) const;
  const crypto::PublicKey& replica_key(ReplicaId id) const;
  const std::vector<crypto::PublicKey>& replica_keys() const {
    return replica_keys_;
  }
  // nullptr if no such client.
  const v1::ClientConfig* client(uint64_t id) const;
  const v1::ClientConfig* client_by_key(const crypto::PublicKey& key) const;
  // Replica id whose key is `key`, or -1.
  int replica_by_key(const crypto::PublicKey& key) const;
  bool IsIssuer(uint64_t client_id, uint32_t ledger) const;

  // A verifier for envelopes of this cluster.
  EnvelopeVerifier MakeVerifier() const;

 private:
  Cluster() = default;

  std::shared_ptr<const v1::ClusterConfig> config_;
  ProtocolParams protocol_;
  std::vector<crypto::PublicKey> replica_keys_;
  absl::flat_hash_map<uint64_t, size_t> client_index_;
  absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys_;
};

// The protobuf JSON mapping, pretty-printed, field names as in the proto.
std::string ClusterConfigToJson(const v1::ClusterConfig& config);

// n = 3f+1 exactly: the one rule the config loader (and so `ledgerctl config
// check`) and ledgerd's core (pbft::Options::Validate) both apply.
absl::Status ValidateReplicaCount(uint32_t n, uint32_t f);

// Splits "host:port"; fails naming `field` if malformed.
absl::Status ParseHostPort(absl::string_view address, absl::string_view field,
                           std::string* host, uint16_t* port);

}  // namespace ledger

#endif  // PBFT_LEDGER_COMMON_CONFIG_H_
