// A replica's Prometheus metrics (prometheus-cpp), served at /metrics on the
// replica's metrics address. Every name starts with "ledger_"; each is
// documented in docs/operations.md.
//
// Counters kept elsewhere as plain atomics (the verification pool's drops,
// the core's drop reasons and events) are mirrored here by MirrorDropped,
// MirrorCoreEvent and MirrorPeerRefused, which the owner calls about once a
// second: counters only ever grow.
//
// Thread-safe (prometheus-cpp metrics are).
#ifndef PBFT_LEDGER_REPLICA_METRICS_H_
#define PBFT_LEDGER_REPLICA_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace pbft::replica {

// The counters of one family by a label whose values are the names of small
// numbers (a protobuf enum's values): each is looked up in the family once,
// so counting is an atomic add, not a hash of the label set under the
// family's lock (those lookups, once per executed transfer and once per
// message, were 2.9% of the primary's samples at 100 transfers per
// request). Thread-safe.
class CounterByNumber {
 public:
  using NameFn = const std::string& (*)(int number);

  CounterByNumber(prometheus::Family<prometheus::Counter>& family,
                  std::string label, NameFn name)
      : family_(family), label_(std::move(label)), name_(name) {}

  // Counts `by` under label = name(number); numbers outside [0, kCached)
  // are looked up every time.
  void Increment(int number, double by = 1);

 private:
  static constexpr int kCached = 64;
  prometheus::Family<prometheus::Counter>& family_;
  const std::string label_;
  const NameFn name_;
  std::array<std::atomic<prometheus::Counter*>, kCached> cached_{};
};

class Metrics {
 private:
  // First: every metric below is registered in it during construction.
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();

 public:
  explicit Metrics(uint32_t replica_id);

  // Serves /metrics on host:port. Fails naming the address.
  absl::Status Serve(const std::string& address);
  prometheus::Registry& registry() { return *registry_; }

  // Protocol state.
  prometheus::Gauge& view;
  prometheus::Gauge& last_executed_seq;
  prometheus::Gauge& last_committed_seq;
  prometheus::Gauge& stable_checkpoint_seq;
  prometheus::Gauge& queued_requests;
  prometheus::Gauge& waiting_client_calls;
  prometheus::Gauge& client_intake_calls;
  prometheus::Gauge& expected_wait_seconds;
  prometheus::Gauge& admission_refused_share;
  prometheus::Gauge& caught_up;
  prometheus::Gauge& in_cluster_view;
  prometheus::Gauge& cluster_view;
  prometheus::Gauge& seqs_behind;
  // Heap bytes LevelDB holds (memtables, block cache), by store.
  prometheus::Gauge& ledger_memory_bytes;
  prometheus::Gauge& protocol_memory_bytes;
  prometheus::Counter& view_changes;
  prometheus::Counter& blocks_executed;
  // Replies to clients: signed and sent to a waiting call, or not signed
  // (no call waits here: the client sent the request to other replicas).
  prometheus::Counter& replies_signed;
  prometheus::Counter& replies_not_signed;

  // Latencies and sizes.
  prometheus::Histogram& batch_requests;           // Requests per block.
  prometheus::Histogram& request_latency_seconds;  // Arrival to reply.
  prometheus::Histogram& ledger_write_seconds;     // ApplyBlock (synced).
  prometheus::Histogram& protocol_write_seconds;   // Protocol store (synced).
  // ReplicaServer::ReleaseFreeMemory.
  prometheus::Histogram& memory_trim_seconds;

  // A verified message of pbft.v1.MessageType `type` handed to the core.
  void MessageReceived(int type) { received_by_type_.Increment(type); }
  // `n` executed operations with ledger.v1.ResultCode `code`.
  void TransferResult(int code, uint64_t n = 1) {
    results_by_code_.Increment(code, static_cast<double>(n));
  }
  void SetPeerConnected(uint32_t peer, bool connected);
  // Sets counter {layer, reason} to `total` (monotonic; see file comment).
  void MirrorDropped(const std::string& layer, const std::string& reason,
                     uint64_t total);
  // Sets the protocol event counter {event} to `total` (monotonic).
  void MirrorCoreEvent(const std::string& event, uint64_t total);
  // Sets ledger_peer_messages_refused_total{peer, reason} to `total`
  // (monotonic); returns how much it grew since the last call.
  uint64_t MirrorPeerRefused(uint32_t peer, const std::string& reason,
                             uint64_t total);

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& dropped_;
  prometheus::Family<prometheus::Counter>& results_;
  prometheus::Family<prometheus::Gauge>& peers_;
  prometheus::Family<prometheus::Counter>& core_events_;
  prometheus::Family<prometheus::Counter>& peer_refused_;
  CounterByNumber received_by_type_;
  CounterByNumber results_by_code_;
  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> mirrored_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pbft::replica

#endif  // PBFT_LEDGER_REPLICA_METRICS_H_
