#include "replica/metrics.h"

#include "absl/strings/str_cat.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::replica {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

constexpr char kStoreMemoryHelp[] =
    "Heap bytes LevelDB holds for the store: its memtables and block cache "
    "(bounded by their configured sizes).";

// The names of enum values; an unknown value's name is empty.
const std::string& MessageTypeName(int type) {
  return pbft::v1::MessageType_Name(static_cast<pbft::v1::MessageType>(type));
}

const std::string& ResultCodeName(int code) {
  return ledger::v1::ResultCode_Name(static_cast<ledger::v1::ResultCode>(code));
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
}

}  // namespace

// Members are initialised from the registry in declaration order.
Metrics::Metrics(uint32_t replica_id)
    : view(BuildGauge()
               .Name("ledger_view")
               .Help("Current PBFT view.")
               .Register(*registry_)
               .Add({{"replica", std::to_string(replica_id)}})),
      last_executed_seq(
          BuildGauge()
              .Name("ledger_last_executed_seq")
              .Help("Highest sequence number executed into the ledger.")
              .Register(*registry_)
              .Add({})),
      last_committed_seq(
          BuildGauge()
              .Name("ledger_last_committed_seq")
              .Help(
                  "Highest sequence number committed and handed to execution.")
              .Register(*registry_)
              .Add({})),
      stable_checkpoint_seq(BuildGauge()
                                .Name("ledger_stable_checkpoint_seq")
                                .Help("Sequence number of the last stable "
                                      "checkpoint (low watermark).")
                                .Register(*registry_)
                                .Add({})),
      queued_requests(
          BuildGauge()
              .Name("ledger_queued_requests")
              .Help("Client requests queued in the core, not yet ordered.")
              .Register(*registry_)
              .Add({})),
      waiting_client_calls(
          BuildGauge()
              .Name("ledger_waiting_client_calls")
              .Help("Submit calls waiting for their request to execute.")
              .Register(*registry_)
              .Add({})),
      client_intake_calls(
          BuildGauge()
              .Name("ledger_client_intake_calls")
              .Help("Submit and Query calls taken from gRPC and waiting for "
                    "their signature check.")
              .Register(*registry_)
              .Add({})),
      expected_wait_seconds(
          BuildGauge()
              .Name("ledger_expected_wait_seconds")
              .Help("How long the calls waiting here would take at the rate "
                    "calls were answered in the last second (+Inf: calls "
                    "wait and none was answered).")
              .Register(*registry_)
              .Add({})),
      admission_refused_share(
          BuildGauge()
              .Name("ledger_admission_refused_share")
              .Help("The share of new calls refused at that wait "
                    "(protocol.admission_wait_ms; 0 when off).")
              .Register(*registry_)
              .Add({})),
      caught_up(BuildGauge()
                    .Name("ledger_caught_up")
                    .Help("1 when the replica is caught up with the cluster "
                          "(readiness).")
                    .Register(*registry_)
                    .Add({})),
      in_cluster_view(
          BuildGauge()
              .Name("ledger_in_cluster_view")
              .Help("1 when the replica is active in the cluster's current "
                    "view (no evidence of a higher one).")
              .Register(*registry_)
              .Add({})),
      cluster_view(BuildGauge()
                       .Name("ledger_cluster_view")
                       .Help("Highest view the cluster is proven to be in.")
                       .Register(*registry_)
                       .Add({})),
      seqs_behind(BuildGauge()
                      .Name("ledger_seqs_behind")
                      .Help("Sequence numbers between the cluster's head and "
                            "this replica's last executed one.")
                      .Register(*registry_)
                      .Add({})),
      ledger_memory_bytes(BuildGauge()
                              .Name("ledger_store_memory_bytes")
                              .Help(kStoreMemoryHelp)
                              .Register(*registry_)
                              .Add({{"store", "ledger"}})),
      protocol_memory_bytes(BuildGauge()
                                .Name("ledger_store_memory_bytes")
                                .Help(kStoreMemoryHelp)
                                .Register(*registry_)
                                .Add({{"store", "protocol"}})),
      view_changes(BuildCounter()
                       .Name("ledger_view_changes_total")
                       .Help("Views this replica has entered after view 0.")
                       .Register(*registry_)
                       .Add({})),
      blocks_executed(
          BuildCounter()
              .Name("ledger_blocks_executed_total")
              .Help("Blocks (committed batches, null ones included) executed.")
              .Register(*registry_)
              .Add({})),
      replies_signed(BuildCounter()
                         .Name("ledger_replies_signed_total")
                         .Help("Replies signed and sent to a waiting call.")
                         .Register(*registry_)
                         .Add({})),
      replies_not_signed(
          BuildCounter()
              .Name("ledger_replies_not_signed_total")
              .Help("Replies not signed: no call waited for them here.")
              .Register(*registry_)
              .Add({})),
      batch_requests(
          BuildHistogram()
              .Name("ledger_batch_requests")
              .Help("Client requests per executed block.")
              .Register(*registry_)
              .Add({}, Histogram::BucketBoundaries{0, 1, 2, 5, 10, 20, 50, 100,
                                                   200, 500, 1000})),
      request_latency_seconds(BuildHistogram()
                                  .Name("ledger_request_latency_seconds")
                                  .Help("From a client request's arrival at "
                                        "this replica to its reply.")
                                  .Register(*registry_)
                                  .Add({}, LatencyBuckets())),
      ledger_write_seconds(BuildHistogram()
                               .Name("ledger_storage_write_seconds")
                               .Help("Synced storage writes, by store.")
                               .Register(*registry_)
                               .Add({{"store", "ledger"}}, LatencyBuckets())),
      protocol_write_seconds(
          BuildHistogram()
              .Name("ledger_storage_write_seconds")
              .Help("Synced storage writes, by store.")
              .Register(*registry_)
              .Add({{"store", "protocol"}}, LatencyBuckets())),
      memory_trim_seconds(
          BuildHistogram()
              .Name("ledger_memory_trim_seconds")
              .Help("Returning the allocator's free pages to the system.")
              .Register(*registry_)
              .Add({}, LatencyBuckets())),
      exposer_(nullptr),
      received_(BuildCounter()
                    .Name("ledger_messages_received_total")
                    .Help("Verified messages handed to the core, by type.")
                    .Register(*registry_)),
      dropped_(
          BuildCounter()
              .Name("ledger_messages_dropped_total")
              .Help(
                  "Messages dropped, by layer (verify, core, net) and reason.")
              .Register(*registry_)),
      results_(BuildCounter()
                   .Name("ledger_operations_total")
                   .Help("Executed ledger operations by result code.")
                   .Register(*registry_)),
      peers_(BuildGauge()
                 .Name("ledger_peer_connected")
                 .Help("1 when the outbound stream to the peer is up.")
                 .Register(*registry_)),
      core_events_(BuildCounter()
                       .Name("ledger_protocol_events_total")
                       .Help("PBFT core events, by kind (view changes, "
                             "fetches, retransmissions, checkpoints).")
                       .Register(*registry_)),
      peer_refused_(BuildCounter()
                        .Name("ledger_peer_messages_refused_total")
                        .Help("Messages from a peer replica refused or "
                              "throttled, by peer and reason.")
                        .Register(*registry_)),
      received_by_type_(received_, "type", &MessageTypeName),
      results_by_code_(results_, "result", &ResultCodeName) {}

void CounterByNumber::Increment(int number, double by) {
  if (number < 0 || number >= kCached) {
    family_.Add({{label_, name_(number)}}).Increment(by);
    return;
  }
  std::atomic<prometheus::Counter*>& slot = cached_[number];
  prometheus::Counter* c = slot.load(std::memory_order_acquire);
  if (c == nullptr) {
    // Threads that race here get the same counter from the family.
    c = &family_.Add({{label_, name_(number)}});
    slot.store(c, std::memory_order_release);
  }
  c->Increment(by);
}

absl::Status Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat(
        "metrics_address ", address, ": cannot listen: ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  return absl::OkStatus();
}

void Metrics::SetPeerConnected(uint32_t peer, bool connected) {
  peers_.Add({{"peer", std::to_string(peer)}}).Set(connected ? 1 : 0);
}

void Metrics::MirrorCoreEvent(const std::string& event, uint64_t total) {
  absl::MutexLock l(&mu_);
  uint64_t& last = mirrored_[{"event", event}];
  if (total > last) {
    core_events_.Add({{"event", event}})
        .Increment(static_cast<double>(total - last));
    last = total;
  }
}

uint64_t Metrics::MirrorPeerRefused(uint32_t peer, const std::string& reason,
                                    uint64_t total) {
  absl::MutexLock l(&mu_);
  const std::string who = std::to_string(peer);
  uint64_t& last = mirrored_[{"peer/" + who, reason}];
  if (total <= last) return 0;
  const uint64_t grew = total - last;
  peer_refused_.Add({{"peer", who}, {"reason", reason}})
      .Increment(static_cast<double>(grew));
  last = total;
  return grew;
}

void Metrics::MirrorDropped(const std::string& layer, const std::string& reason,
                            uint64_t total) {
  absl::MutexLock l(&mu_);
  uint64_t& last = mirrored_[{layer, reason}];
  if (total > last) {
    dropped_.Add({{"layer", layer}, {"reason", reason}})
        .Increment(static_cast<double>(total - last));
    last = total;
  }
}

}  // namespace pbft::replica
