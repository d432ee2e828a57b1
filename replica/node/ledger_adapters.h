// ReplicaNode's interfaces (replica/node/node_interfaces.h) over ledgerd's
// storage: the ledger (replica/ledger) as the state machine and the
// LevelDB protocol store (replica/storage). Each adapter borrows what it
// wraps. Thread-safety: that of the wrapped object (BlockSource reads and
// FindBody may run on other threads than Execute and Append).
#ifndef PBFT_LEDGER_REPLICA_NODE_LEDGER_ADAPTERS_H_
#define PBFT_LEDGER_REPLICA_NODE_LEDGER_ADAPTERS_H_

#include <functional>
#include <string>

#include "replica/ledger/ledger.h"
#include "replica/node/node_interfaces.h"
#include "replica/storage/protocol_store.h"

namespace pbft::node {

// The executed chain of a Ledger, for state transfer.
class LedgerBlockSource : public BlockSource {
 public:
  explicit LedgerBlockSource(const ledger::Ledger* ledger) : ledger_(ledger) {}
  uint64_t last_executed() const override { return ledger_->last_executed(); }
  absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t seq) const override {
    return ledger_->GetCertifiedBatch(seq);
  }

 private:
  const ledger::Ledger* ledger_;
};

// Executes committed batches on a Ledger (Ledger::ApplyBlock, synced) and
// answers ordered queries from the state right after their block.
class LedgerStateMachine final : public StateMachine {
 public:
  struct Hooks {
    // After each block: seconds ApplyBlock took and its request count.
    std::function<void(double seconds, size_t requests)> block_applied;
    // Each executed (not duplicate) request's serialized results.
    std::function<void(const std::string& result)> request_result;
  };
  LedgerStateMachine(ledger::Ledger* ledger, Hooks hooks = {})
      : ledger_(ledger), hooks_(std::move(hooks)) {}

  uint64_t last_executed() const override { return ledger_->last_executed(); }
  absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t seq) const override {
    return ledger_->GetCertifiedBatch(seq);
  }
  absl::StatusOr<Executed> Execute(const core::CommittedBatch& b) override;
  absl::StatusOr<uint64_t> last_timestamp_ms() const override;
  absl::StatusOr<std::vector<ClientEntry>> ClientTable() const override;

 private:
  // Fills the answers of request i (has_query) from the state after b.
  absl::Status AnswerQueries(const core::CommittedBatch& b, size_t i,
                             std::optional<pbft::v1::PrePrepare>* pp,
                             std::string* result) const;

  ledger::Ledger* ledger_;
  Hooks hooks_;
};

// The protocol store (one LevelDB, every Append one synced WriteBatch).
class StoreStorage final : public ProtocolStorage {
 public:
  // `append_seconds`, if set, gets the duration of every Append.
  StoreStorage(storage::ProtocolStore* store,
               std::function<void(double)> append_seconds = nullptr)
      : store_(store), append_seconds_(std::move(append_seconds)) {}

  absl::Status Append(const core::Persist& persist) override;
  absl::StatusOr<core::RestoreState> Load() const override;
  absl::StatusOr<std::optional<pbft::v1::Envelope>> FindBody(
      uint64_t seq, const std::string& batch_digest) const override {
    return store_->FindBody(seq, batch_digest);
  }

 private:
  storage::ProtocolStore* store_;
  std::function<void(double)> append_seconds_;
};

}  // namespace pbft::node

#endif  // PBFT_LEDGER_REPLICA_NODE_LEDGER_ADAPTERS_H_
