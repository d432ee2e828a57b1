// Serves peers' FETCH_REQUESTs (state transfer, Castro–Liskov §4.3 and
// §5.3) on its own thread, off the core's, from the ledger's read path.
//
// A FETCH costs the server block reads and a signature; a faulty peer must
// not be able to turn that into a slower primary, so each peer has:
//  - one pending request at a time: a newer request replaces the one not
//    yet served (replays and repeats collapse into one answer);
//  - a token bucket (`rate_per_s`, `burst`): requests beyond it are refused
//    and counted as throttled, never queued.
// Peers are served in turn. A response is cut by bytes so that its payload
// never exceeds `response_bytes_max` (the peers' limit for the type).
//
// What a response holds (blocks, or one batch body) is built by
// node::FetchResponder (replica/node/fetch_responder.h), the code the
// simulator's replicas serve with.
//
// Thread-safe: Offer() and SetStableCheckpoint() from any thread. Owns its
// thread; the destructor stops and joins it.
#ifndef PBFT_LEDGER_REPLICA_FETCH_SERVER_H_
#define PBFT_LEDGER_REPLICA_FETCH_SERVER_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/envelope.h"
#include "common/wire_limits.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/node/fetch_responder.h"
#include "replica/node/node_interfaces.h"

namespace pbft::replica {

struct FetchServerOptions {
  uint32_t self = 0;
  uint32_t n = 0;
  size_t response_bytes_max = 0;
  uint32_t blocks_max = kFetchBlocksMax;  // Per response.
  double rate_per_s = 20;                 // Per peer, sustained.
  double burst = 10;                      // Per peer.
};

class FetchServer final : public node::FetchService {
 public:
  using Send = std::function<void(uint32_t peer, pbft::v1::Envelope)>;

  // `blocks`, `bodies` (may be null) and `signer` must outlive the server;
  // they are read on the server's thread. `send` runs on the server's
  // thread.
  FetchServer(FetchServerOptions options, const node::BlockSource* blocks,
              const node::ProtocolStorage* bodies, const EnvelopeSigner* signer,
              Send send);
  ~FetchServer() override;
  FetchServer(const FetchServer&) = delete;
  FetchServer& operator=(const FetchServer&) = delete;

  // A verified FETCH_REQUEST envelope.
  Admit Offer(const pbft::v1::Envelope& e) override;
  // The latest stable checkpoint proof, sent with every response.
  void SetStableCheckpoint(const pbft::v1::CheckpointProof& proof) override;

  uint64_t served() const { return served_.load(); }
  uint64_t throttled(uint32_t peer) const;
  uint64_t replaced(uint32_t peer) const;

  // Builds the response to `req` (exposed for tests).
  pbft::v1::FetchResponse Build(const pbft::v1::FetchRequest& req) const;

 private:
  struct Peer {
    double tokens = 0;
    absl::Time refilled;
    std::optional<pbft::v1::FetchRequest> pending;
    uint64_t throttled = 0, replaced = 0;
  };
  void Run();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FetchServerOptions options_;
  const node::FetchResponder responder_;
  const EnvelopeSigner* signer_;
  Send send_;
  mutable absl::Mutex mu_;
  std::vector<Peer> peers_ ABSL_GUARDED_BY(mu_);
  pbft::v1::CheckpointProof stable_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> served_{0};
  std::thread thread_;
};

}  // namespace pbft::replica

#endif  // PBFT_LEDGER_REPLICA_FETCH_SERVER_H_
