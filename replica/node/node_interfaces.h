// The small interfaces ReplicaNode (replica/node/replica_node.h) is written
// against. ledgerd implements them with LevelDB, the ledger and gRPC
// (replica/node/ledger_adapters.h, replica/replica_server.cc); the
// simulator with in-memory stores and its simulated network
// (tests/sim/sim.cc). Every method is called from the node's owner thread
// unless its comment says otherwise.
#ifndef PBFT_LEDGER_REPLICA_NODE_NODE_INTERFACES_H_
#define PBFT_LEDGER_REPLICA_NODE_NODE_INTERFACES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/types.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/core/core.h"

namespace pbft::node {

// What the core must remember across a crash (docs/protocol.md, crash
// recovery). ledgerd: replica/storage/protocol_store.h.
class ProtocolStorage {
 public:
  virtual ~ProtocolStorage() = default;
  // Durably (synced, all or nothing) records one Ready's persist part. An
  // error stops the node before anything of that Ready leaves.
  virtual absl::Status Append(const core::Persist& persist) = 0;
  // Everything appended so far: the view, the stable checkpoint and the
  // entries still held, the latest NEW-VIEW among them (the ledger head
  // fields of RestoreState are left for the node to fill).
  virtual absl::StatusOr<core::RestoreState> Load() const = 0;
  // A stored PRE-PREPARE (any view) for `seq` with batch digest
  // `batch_digest` and its batch beside it; nullopt if none. May be called
  // from the fetch service's thread.
  virtual absl::StatusOr<std::optional<pbft::v1::Envelope>> FindBody(
      uint64_t seq, const std::string& batch_digest) const = 0;
};

// The executed chain as state transfer serves it. Thread-safe: the fetch
// service may read it on its own thread while the node executes.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  virtual uint64_t last_executed() const = 0;
  // The PRE-PREPARE (batch beside it) and commit certificate of block
  // `seq` in [1, last_executed()].
  virtual absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t seq) const = 0;
};

// The replicated state machine (ledgerd: the ledger).
class StateMachine : public BlockSource {
 public:
  struct Executed {
    Digest state_digest;  // After the batch; feeds CHECKPOINTs.
    // One per request of the batch, in batch order (a duplicate with the
    // stored result, a stale one with an empty result: the core answers).
    std::vector<core::ExecutedReply> replies;
    // The requests this batch executed for the first time (not duplicates
    // of earlier ones), for exactly-once checks.
    std::vector<std::pair<ClientId, RequestNumber>> executed;
  };
  // Durably applies the batch at last_executed() + 1. An error stops the
  // node: continuing would fork this replica's state.
  virtual absl::StatusOr<Executed> Execute(const core::CommittedBatch& b) = 0;
  // The head's timestamp (0 for an empty chain), for Core::Restore.
  virtual absl::StatusOr<uint64_t> last_timestamp_ms() const = 0;
  struct ClientEntry {
    ClientId client_id;
    RequestNumber request_number;
    std::string result;
  };
  // Each client's last executed request and its result, ascending by
  // client (exactly-once across restarts).
  virtual absl::StatusOr<std::vector<ClientEntry>> ClientTable() const = 0;
};

// Peer links. Best effort: the protocol tolerates loss and reordering.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void Send(ReplicaId to, const pbft::v1::Envelope& e) = 0;
  // To every replica but this one.
  virtual void Broadcast(const pbft::v1::Envelope& e) = 0;
};

// Client calls waiting for their reply (best effort). The node signs a
// reply only if Wants says a call waits for it: a client sends a request to
// f+1 replicas, so most replicas' replies go to nobody. A call that comes
// later for an executed request is a duplicate, answered by the core with
// the reply again.
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // Asked once per reply, before it is signed; a sink may forget what it
  // tracked for (client, number) when it answers false.
  virtual bool Wants(pbft::ClientId client, pbft::RequestNumber number) = 0;
  // `reply`: the signed REPLY envelope for (client, number).
  virtual void Deliver(pbft::ClientId client, pbft::RequestNumber number,
                       const pbft::v1::Envelope& reply) = 0;
};

// Answers peers' FETCH_REQUESTs (state transfer) from the BlockSource and
// the ProtocolStorage (replica/node/fetch_responder.h builds the answer).
class FetchService {
 public:
  enum class Admit { kQueued, kReplaced, kThrottled, kMalformed };
  virtual ~FetchService() = default;
  // A verified FETCH_REQUEST envelope; answered now or later.
  virtual Admit Offer(const pbft::v1::Envelope& e) = 0;
  // The latest stable checkpoint proof, sent with every response.
  virtual void SetStableCheckpoint(const pbft::v1::CheckpointProof& p) = 0;
};

// Runs committed batches off the core thread (ReplicaNodeDeps::executor;
// without one the node executes each batch in CarryOut, on the core
// thread, before the core's next input). The node submits every batch the
// core hands out, in sequence order, each once; the executor runs
// StateMachine::Execute on them in that order and hands each result back
// through ReplicaNode::Executed, on the core thread. Meanwhile the core
// goes on with later inputs: batches handed out and not yet executed are
// what it allows between last_executed and last_handed_out.
class BatchExecutor {
 public:
  virtual ~BatchExecutor() = default;
  // Asked for each batch while nothing submitted is outstanding (every
  // result taken back): true makes the node execute `batch` itself, at
  // once, on its thread, as without an executor (a small batch, which
  // need not pay for a hand-off to another thread and back).
  virtual bool Inline(const core::CommittedBatch& batch) = 0;
  virtual void Submit(core::CommittedBatch batch) = 0;
};

// Optional observation of every Ready, for checkers (the simulator) and
// tracing. Not a way to change what the node does.
class ReadyObserver {
 public:
  virtual ~ReadyObserver() = default;
  // Before the node carries `ready` out.
  virtual void OnReady(const core::Core& core, const core::Ready& ready) = 0;
  // After the node carried it out completely.
  virtual void AfterReady(const core::Core& core) = 0;
};

}  // namespace pbft::node

#endif  // PBFT_LEDGER_REPLICA_NODE_NODE_INTERFACES_H_
