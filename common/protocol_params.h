// The protocol's parameters (the cluster config's `protocol` section with
// defaults applied) and the replica-count rule: what the PBFT core needs of
// the configuration, without the JSON loading of common/config.h.
#ifndef PBFT_LEDGER_COMMON_PROTOCOL_PARAMS_H_
#define PBFT_LEDGER_COMMON_PROTOCOL_PARAMS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace pbft {

// Protocol parameters with defaults applied (a zero in the file means
// "default"). Limits are named so that what exceeds them is refused.
struct ProtocolParams {
  static constexpr uint32_t kDefaultCheckpointInterval = 128;  // K
  static constexpr uint32_t kDefaultWatermarkWindow = 256;     // L = 2K
  static constexpr uint32_t kDefaultBatchRequestsMax = 256;
  static constexpr uint32_t kDefaultBatchBytesMax = 4 << 20;
  // While a batch is in flight, the primary waits up to this many ticks
  // for more requests; it cuts at once when none is in flight (looked at
  // again as each batch is handed out) or the batch is full. Fewer, fuller
  // batches where the replicas' CPU is the limit (docs/benchmarks.md,
  // "Fuller batches while one is in flight").
  static constexpr uint32_t kDefaultBatchDelayTicks = 4;
  static constexpr uint32_t kDefaultTickMs = 10;
  static constexpr uint32_t kDefaultViewChangeTimeoutTicks = 200;
  static constexpr uint32_t kDefaultRequestQueueMax = 10000;
  static constexpr uint32_t kDefaultTimestampSkewMaxMs = 5000;
  static constexpr uint32_t kDefaultMessageBytesMax = 8 << 20;
  static constexpr uint32_t kDefaultRequestOperationsMax = 8192;
  // Per-client shares (docs/operations.md, "Per-client limits").
  static constexpr uint32_t kDefaultClientCallsMax = 256;
  static constexpr uint32_t kDefaultClientQueueMax = 256;
  static constexpr uint32_t kAdmissionWaitMsMax = 3'600'000;  // An hour.
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
  // Non-zero: a replica refuses a new Submit call or ordered Session
  // request (RESOURCE_EXHAUSTED) while the calls waiting at it would take
  // longer than this to execute at the rate it has been executing them,
  // unless fewer than 64 wait (replica/net/admission.h). 0 (the default):
  // only the limits above.
  uint32_t admission_wait_ms = 0;
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

// The quorums of n = 3f+1 replicas: any two sets of 2f+1 share at least one
// correct replica (certificates, view changes); any f+1 include at least one
// correct replica (what a client or a replica may believe on their word).
constexpr uint32_t Quorum(uint32_t f) { return 2 * f + 1; }
constexpr uint32_t WeakQuorum(uint32_t f) { return f + 1; }

// n = 3f+1 exactly: the one rule the config loader (and so `ledgerctl config
// check`) and ledgerd's core (core::Options::Validate) both apply. Defined in
// config.cc.
absl::Status ValidateReplicaCount(uint32_t n, uint32_t f);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_PROTOCOL_PARAMS_H_
