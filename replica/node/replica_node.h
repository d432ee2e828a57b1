// ReplicaNode: one replica's loop, written once for ledgerd and the
// simulator. It owns the PBFT core (replica/core/core.h) and carries out
// every Ready in the order its fields document:
//
//   1. persist   ProtocolStorage::Append (synced) — nothing of the Ready
//                leaves before it returned OK;
//   2. send      Transport::Send / Broadcast;
//   3. execute   StateMachine::Execute, strictly in seq order, then
//                Core::OnExecuted with the state digest and the replies;
//   4. reply     ReplySink::Deliver, only for what was executed durably,
//                signed here only if ReplySink::Wants it.
//
// Peers' FETCH_REQUESTs go to the FetchService (state transfer, answered
// from the executed chain and the protocol store) and, unless refused
// there, to the core, which answers a requester in an older view with its
// NEW-VIEW. The node keeps the FetchService's stable checkpoint current.
//
// A failed Append or Execute stops the node (failed() and every later call
// returns the error): sending a vote it could forget, or executing past a
// block it could not record, is worse than stopping. ledgerd aborts.
//
// Ownership: the node borrows every dependency; they must outlive it.
// Thread-compatible: one owner thread calls every method (ledgerd's core
// thread; the simulator's only thread). The node starts no thread.
#ifndef PBFT_LEDGER_REPLICA_NODE_REPLICA_NODE_H_
#define PBFT_LEDGER_REPLICA_NODE_REPLICA_NODE_H_

#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "replica/core/core.h"
#include "replica/node/node_interfaces.h"

namespace pbft::node {

struct ReplicaNodeDeps {
  const core::Signer* signer = nullptr;
  const core::Verifier* verifier = nullptr;
  ProtocolStorage* store = nullptr;
  StateMachine* state = nullptr;
  Transport* transport = nullptr;
  ReplySink* replies = nullptr;
  FetchService* fetch = nullptr;
  const Clock* clock = nullptr;       // Wall time for Core::Tick only.
  ReadyObserver* observer = nullptr;  // Optional.
  BatchExecutor* executor = nullptr;  // Optional: execution off this thread.
};

class ReplicaNode {
 public:
  // What became of one input.
  enum class Intake {
    kAccepted,        // Handed to the core (and to the fetch service).
    kFetchThrottled,  // A FETCH_REQUEST the fetch service refused.
    kFetchMalformed,  // A FETCH_REQUEST that does not decode.
  };

  // Builds the core and restores it (docs/protocol.md, crash recovery):
  // the clients' last replies and the head from the state machine, the
  // view, votes and stable checkpoint from the store. What the restore
  // produced (a VIEW-CHANGE re-sent, ...) waits for the first Drain(), so
  // that the transport may come up in between. DATA_LOSS if the two do not
  // fit together.
  static absl::StatusOr<std::unique_ptr<ReplicaNode>> Open(
      const core::Options& options, const ReplicaNodeDeps& deps);

  ReplicaNode(const ReplicaNode&) = delete;
  ReplicaNode& operator=(const ReplicaNode&) = delete;

  // A verified peer message or client REQUEST. Call Drain() afterwards
  // (several inputs may share one Drain). `sent_to_primary_of`: a REQUEST
  // that its client sent here itself, with the client's word that it sent
  // it to that view's primary too (core::Core::OnRequest).
  Intake Receive(const pbft::v1::Envelope& e,
                 std::optional<View> sent_to_primary_of = std::nullopt);
  // One tick of logical time, stamped with the clock's wall time.
  void Tick();
  // Carries out every pending Ready. OK, or the error that stopped the
  // node (then and on every later call).
  absl::Status Drain();

  // The result of the batch at `seq`, the oldest submitted and not yet
  // reported: from an executor (call Drain() afterwards), or from the
  // node's own execution on this thread. An error or a result out of
  // order stops the node.
  void Executed(Seq seq, absl::StatusOr<StateMachine::Executed> done);

  const absl::Status& failed() const { return failed_; }
  const core::Core& core() const { return *core_; }

 private:
  ReplicaNode(const core::Options& options, const ReplicaNodeDeps& deps);
  absl::Status Restore();
  // One Ready, in its documented order (its batches move to the executor).
  absl::Status CarryOut(core::Ready& ready);
  void PublishStableCheckpoint();

  const ReplicaNodeDeps deps_;
  std::unique_ptr<core::Core> core_;
  absl::Status failed_;
  uint64_t published_stable_ = ~0ull;
  // The last batch handed to execution, the last result taken back (equal
  // at the end of every Ready without an executor).
  uint64_t submitted_ = 0;
  uint64_t reported_ = 0;
};

}  // namespace pbft::node

#endif  // PBFT_LEDGER_REPLICA_NODE_REPLICA_NODE_H_
