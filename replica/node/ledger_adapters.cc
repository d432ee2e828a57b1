#include "replica/node/ledger_adapters.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/envelope.h"
#include "common/proto_names.h"

namespace pbft::node {

absl::StatusOr<StateMachine::Executed> LedgerStateMachine::Execute(
    const core::CommittedBatch& b) {
  ledger::BlockInput in;
  in.view = b.view.value();
  in.seq = b.seq.value();
  in.timestamp_ms = b.timestamp_ms;
  in.batch_digest = b.batch_digest;
  in.pre_prepare = b.pre_prepare;
  in.certificate = b.certificate;
  const absl::Time start = absl::Now();
  absl::StatusOr<ledger::BlockResult> result = ledger_->ApplyBlock(in);
  if (!result.ok()) return result.status();
  if (hooks_.block_applied) {
    hooks_.block_applied(absl::ToDoubleSeconds(absl::Now() - start),
                         result->outcomes.size());
  }
  Executed out;
  out.state_digest = result->state_digest;
  // Parsed only if a request holds a query.
  std::optional<pbft::v1::PrePrepare> pp;
  for (size_t i = 0; i < result->outcomes.size(); ++i) {
    ledger::RequestOutcome& o = result->outcomes[i];
    if (o.duplicate) {
      // Not executed again: the core resends the stored reply (same
      // number) or answers with a stale rejection (lower number).
      out.replies.push_back(
          {ClientId(o.client_id), RequestNumber(o.request_number), ""});
      continue;
    }
    if (o.has_query) {
      if (absl::Status s = AnswerQueries(b, i, &pp, &o.result); !s.ok())
        return s;
    }
    if (hooks_.request_result) hooks_.request_result(o.result);
    out.executed.emplace_back(ClientId(o.client_id),
                              RequestNumber(o.request_number));
    out.replies.push_back({ClientId(o.client_id),
                           RequestNumber(o.request_number),
                           std::move(o.result)});
  }
  return out;
}

// Ordered reads: answered from the state after this block, the same on
// every correct replica.
absl::Status LedgerStateMachine::AnswerQueries(
    const core::CommittedBatch& b, size_t i,
    std::optional<pbft::v1::PrePrepare>* pp, std::string* result) const {
  if (!pp->has_value()) {
    pp->emplace();
    CHECK((*pp)->ParseFromString(b.pre_prepare.payload()));
  }
  const auto& requests = BatchOf(b.pre_prepare, **pp);
  CHECK_LT(i, static_cast<size_t>(requests.size()));
  absl::Status s =
      ledger_->FillQueryAnswers(requests[static_cast<int>(i)], result);
  if (!s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("answering ordered queries: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> LedgerStateMachine::last_timestamp_ms() const {
  if (ledger_->last_executed() == 0) return 0;
  absl::StatusOr<ledger::v1::Block> head =
      ledger_->GetStoredBlock(ledger_->last_executed());
  if (!head.ok()) return head.status();
  return head->header().timestamp_ms();
}

absl::StatusOr<std::vector<StateMachine::ClientEntry>>
LedgerStateMachine::ClientTable() const {
  absl::StatusOr<std::vector<ledger::ClientReply>> table =
      ledger_->ClientTable();
  if (!table.ok()) return table.status();
  std::vector<ClientEntry> out;
  out.reserve(table->size());
  for (ledger::ClientReply& c : *table) {
    out.push_back({ClientId(c.client_id), RequestNumber(c.request_number),
                   std::move(c.result)});
  }
  return out;
}

absl::Status StoreStorage::Append(const core::Persist& p) {
  const absl::Time start = absl::Now();
  std::optional<uint64_t> view;
  if (p.view.has_value()) view = p.view->value();
  absl::Status s = store_->Append(view, p.entries, p.stable_checkpoint);
  if (s.ok() && append_seconds_)
    append_seconds_(absl::ToDoubleSeconds(absl::Now() - start));
  return s;
}

absl::StatusOr<core::RestoreState> StoreStorage::Load() const {
  absl::StatusOr<storage::ProtocolState> persisted = store_->Load();
  if (!persisted.ok()) return persisted.status();
  core::RestoreState restore;
  restore.view = pbft::View(persisted->view);
  restore.stable_checkpoint = std::move(persisted->stable_checkpoint);
  restore.entries = std::move(persisted->entries);
  if (persisted->new_view) {
    restore.entries.push_back(std::move(*persisted->new_view));
  }
  return restore;
}

}  // namespace pbft::node
