// ReplicaServer: the shell that runs one replica. It owns the threads and
// wires the replica loop (node::ReplicaNode, replica/node/replica_node.h)
// to the ledger, the protocol store, gRPC, TLS, health and metrics:
//
//   peers --stream--> VerifyPool (N threads) --+
//   clients --Submit--> ClientService (CQ)  ---+--> inbox --> core thread:
//                                                    ReplicaNode
//                                                    |  Receive/Tick/Drain
//                                                    v
//                          Ready: persist (synced) -> send -> execute
//                                 (Ledger::ApplyBlock, synced) -> replies
//                                          |               ^
//                                          v  large blocks |
//                                    execution thread (ExecutionStage;
//                                    --inline-execution-bytes, off by
//                                    default)
//
// FETCH_REQUESTs go from the node to the FetchServer (its own thread).
// Only the core thread touches the node and its core; only verified
// envelopes reach it.
// Every queue is bounded: a full inbox answers clients RESOURCE_EXHAUSTED
// and drops (counts) peer messages, which PBFT tolerates.
//
// Thread-safe: Status() may be called from any thread; Stop() once.
#ifndef PBFT_LEDGER_REPLICA_REPLICA_SERVER_H_
#define PBFT_LEDGER_REPLICA_REPLICA_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/proto_names.h"
#include "ledger/v1/service.pb.h"

namespace pbft::replica {

struct ReplicaServerOptions {
  std::string config_path;
  uint32_t id = 0;
  std::string data_dir;
  // Default: <dir of config>/keys/replica-<id>.key.
  std::string key_path;
  // Host to bind; default the host of this replica's configured address.
  std::string listen_host;
  // Peer messages: 0 = verified on the thread of the stream they arrived
  // on (one hand-off less on every hop); N = queued for N pool threads.
  int verify_threads = 0;
  int client_threads = 2;
  bool serve_metrics = true;
  // Memory budget of peer traffic (docs/operations.md, "Memory"): bytes
  // queued per peer in each of the verification queue, the core's intake
  // and the send queue. At least the largest peer message.
  size_t peer_queue_bytes_max = 24 << 20;
  // FETCH requests served per peer: sustained rate and burst.
  double fetch_rate_per_s = 20;
  double fetch_burst = 10;
  // Added to the nice value of LevelDB's background thread (memtable
  // writes, compactions; storage::BackgroundEnv); 0: unchanged.
  int storage_nice = 10;
  // Committed blocks (docs/architecture.md, "Execution"): one whose
  // requests total at most this many bytes executes on the core thread
  // (if no block waits for the execution thread), a larger one on the
  // execution thread, overlapped with agreement on the next blocks.
  // -1 (no limit): every block on the core thread, no execution thread.
  int64_t inline_execution_bytes = -1;
};

class ReplicaServer {
 public:
  // Loads and checks everything, opens storage, starts serving. Errors name
  // the file, field or address at fault.
  static absl::StatusOr<std::unique_ptr<ReplicaServer>> Start(
      const ReplicaServerOptions& options);
  virtual ~ReplicaServer() = default;

  // Graceful stop: refuse new work, let the core thread finish the Ready in
  // hand (its synced writes), close storage. Idempotent.
  virtual void Stop() = 0;
  virtual ledger::v1::StatusResponse Status() const = 0;
  // Returns the allocator's free pages to the system (glibc's malloc_trim;
  // nothing elsewhere) and records how long it took
  // (ledger_memory_trim_seconds). Without it glibc keeps the pages its
  // per-thread arenas freed, and a replica's resident memory stays at its
  // high-water mark after a burst (docs/operations.md, "Memory budget").
  // Called by ledgerd's main thread, which is idle.
  virtual void ReleaseFreeMemory() = 0;
};

}  // namespace pbft::replica

#endif  // PBFT_LEDGER_REPLICA_REPLICA_SERVER_H_
