// The outbound half of replica-to-replica transport: one long-lived gRPC
// stream to one peer (ReplicaService.Stream), fed from a bounded queue by a
// dedicated thread, reconnecting with exponential back-off.
//
// PBFT tolerates lost messages (retransmission happens at the protocol
// level: view change, checkpoints, state transfer), so the queue is bounded
// in messages and in bytes; when a peer stops reading, its oldest queued
// messages are dropped and counted rather than buffered without bound. A
// slow peer never blocks the others or the core.
//
// Thread-safe. Owns its thread; the destructor cancels the stream and joins.
#ifndef PBFT_LEDGER_REPLICA_NET_PEER_SENDER_H_
#define PBFT_LEDGER_REPLICA_NET_PEER_SENDER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fair_queue.h"
#include "common/proto_names.h"
#include "ledger/v1/service.grpc.pb.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::net {

struct PeerSenderOptions {
  size_t queue_max = 4096;
  size_t queue_bytes_max = 16 << 20;  // Payload + signature bytes queued.
  size_t batch_envelopes_max = 256;   // Envelopes per stream message.
  size_t batch_bytes_max = 4 << 20;   // Payload bytes per stream message.
  int message_bytes_max = 16 << 20;   // gRPC max send size.
  absl::Duration backoff_initial = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(2);
};

class PeerSender {
 public:
  PeerSender(uint32_t peer_id, std::string address,
             std::shared_ptr<grpc::ChannelCredentials> creds,
             PeerSenderOptions options);
  ~PeerSender();
  PeerSender(const PeerSender&) = delete;
  PeerSender& operator=(const PeerSender&) = delete;

  // Queues `e`, dropping (and counting) the oldest queued messages when the
  // queue is over its count or byte limit. False once stopped.
  bool Send(pbft::v1::Envelope e);

  uint32_t peer_id() const { return peer_id_; }
  // The channel to the peer is up (asking also starts connecting, so an
  // idle replica still learns when its peers are reachable).
  bool connected() const;
  uint64_t sent() const { return sent_.load(); }
  uint64_t dropped() const { return dropped_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run();

  const uint32_t peer_id_;
  const std::string address_;
  const PeerSenderOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ledger::v1::ReplicaService::Stub> stub_;
  FairQueue<pbft::v1::Envelope> queue_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> sent_{0}, dropped_{0}, reconnects_{0};
  absl::Mutex ctx_mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(ctx_mu_) = nullptr;
  std::thread thread_;
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_PEER_SENDER_H_
