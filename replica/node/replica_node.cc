#include "replica/node/replica_node.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/trace.h"

namespace pbft::node {

ReplicaNode::ReplicaNode(const core::Options& options,
                         const ReplicaNodeDeps& deps)
    : deps_(deps) {
  CHECK(deps_.store != nullptr);
  CHECK(deps_.state != nullptr);
  CHECK(deps_.transport != nullptr);
  CHECK(deps_.replies != nullptr);
  CHECK(deps_.fetch != nullptr);
  CHECK(deps_.clock != nullptr);
  core_ = std::make_unique<core::Core>(options, deps_.signer, deps_.verifier);
}

absl::StatusOr<std::unique_ptr<ReplicaNode>> ReplicaNode::Open(
    const core::Options& options, const ReplicaNodeDeps& deps) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<ReplicaNode> node(new ReplicaNode(options, deps));
  if (absl::Status s = node->Restore(); !s.ok()) return s;
  return node;
}

absl::Status ReplicaNode::Restore() {
  // Exactly-once across restarts: the core learns each client's last
  // executed request and its result from the state machine.
  absl::StatusOr<std::vector<StateMachine::ClientEntry>> table =
      deps_.state->ClientTable();
  if (!table.ok()) return table.status();
  for (StateMachine::ClientEntry& c : *table) {
    core_->RestoreClient(c.client_id, c.request_number, std::move(c.result));
  }
  absl::StatusOr<core::RestoreState> restore = deps_.store->Load();
  if (!restore.ok()) return restore.status();
  absl::StatusOr<uint64_t> timestamp = deps_.state->last_timestamp_ms();
  if (!timestamp.ok()) return timestamp.status();
  restore->last_executed = Seq(deps_.state->last_executed());
  submitted_ = reported_ = restore->last_executed.value();
  restore->last_timestamp_ms = *timestamp;
  absl::Status s = core_->Restore(*restore);
  if (!s.ok()) return absl::DataLossError(s.message());
  return absl::OkStatus();
}

ReplicaNode::Intake ReplicaNode::Receive(
    const pbft::v1::Envelope& e, std::optional<View> sent_to_primary_of) {
  trace::Event("in", e.type(), e.sender());
  if (e.type() == pbft::v1::MESSAGE_TYPE_REQUEST) {
    core_->OnRequest(e, sent_to_primary_of);
    return Intake::kAccepted;
  }
  if (e.type() == pbft::v1::MESSAGE_TYPE_FETCH_REQUEST) {
    switch (deps_.fetch->Offer(e)) {
      case FetchService::Admit::kThrottled:
        return Intake::kFetchThrottled;
      case FetchService::Admit::kMalformed:
        return Intake::kFetchMalformed;
      default:
        break;  // The core sees it too: it names the requester's view.
    }
  }
  core_->Step(e);
  return Intake::kAccepted;
}

void ReplicaNode::Tick() { core_->Tick(deps_.clock->NowMs()); }

absl::Status ReplicaNode::Drain() {
  while (failed_.ok() && core_->HasReady()) {
    core::Ready ready = core_->TakeReady();
    if (deps_.observer != nullptr) deps_.observer->OnReady(*core_, ready);
    failed_ = CarryOut(ready);
    if (failed_.ok() && deps_.observer != nullptr) {
      deps_.observer->AfterReady(*core_);
    }
  }
  if (failed_.ok()) PublishStableCheckpoint();
  return failed_;
}

absl::Status ReplicaNode::CarryOut(core::Ready& ready) {
  // 1. Persist before send: a replica never sends a vote it could forget.
  if (!ready.persist.empty()) {
    trace::Event("persist", ready.persist.entries.size(), 0);
    absl::Status s = deps_.store->Append(ready.persist);
    trace::Event("persisted", ready.persist.entries.size(), 0);
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("protocol store: ", s.message()));
    }
  }
  // 2. Send (any order).
  for (const core::Outbound& m : ready.messages) {
    trace::Event("send", m.envelope.type(),
                 m.broadcast ? ~uint64_t{0} : m.to.value());
    if (m.broadcast) {
      deps_.transport->Broadcast(m.envelope);
    } else {
      deps_.transport->Send(m.to, m.envelope);
    }
  }
  // 3. Execute in seq order; the core hands out each seq once.
  //    Here, or by the executor, whose results come back through Executed.
  for (core::CommittedBatch& b : ready.execute) {
    if (b.seq.value() != submitted_ + 1) {
      return absl::InternalError(
          absl::StrCat("execute: the core handed out seq ", b.seq.value(),
                       ", expected ", submitted_ + 1));
    }
    const bool idle = reported_ == submitted_;
    submitted_ = b.seq.value();
    trace::Event("execute", b.seq.value(), 0);
    if (deps_.executor != nullptr && !(idle && deps_.executor->Inline(b))) {
      deps_.executor->Submit(std::move(b));
      continue;
    }
    Executed(b.seq, deps_.state->Execute(b));
    if (!failed_.ok()) return failed_;
  }
  // 4. Replies: their requests are durably executed (step 3 of this or an
  //    earlier Ready). Signed only for a call that waits here.
  for (const core::ClientReply& r : ready.replies) {
    const pbft::RequestNumber number(r.reply.request_number());
    if (!deps_.replies->Wants(r.client_id, number)) continue;
    trace::Event("reply", r.client_id.value(), 0);
    deps_.replies->Deliver(r.client_id, number,
                           deps_.signer->Sign(pbft::v1::MESSAGE_TYPE_REPLY,
                                              r.reply.SerializeAsString()));
  }
  return absl::OkStatus();
}

void ReplicaNode::Executed(Seq seq,
                           absl::StatusOr<StateMachine::Executed> done) {
  if (!failed_.ok()) return;
  if (seq.value() != reported_ + 1 || seq.value() > submitted_) {
    failed_ = absl::InternalError(
        absl::StrCat("execution result for seq ", seq.value(), ", expected ",
                     reported_ + 1, " (submitted up to ", submitted_, ")"));
    return;
  }
  reported_ = seq.value();
  if (!done.ok()) {
    failed_ = absl::Status(done.status().code(),
                           absl::StrCat("executing block ", seq.value(), ": ",
                                        done.status().message()));
    return;
  }
  trace::Event("executed", seq.value(), 0);
  core_->OnExecuted(seq, done->state_digest, std::move(done->replies));
}

void ReplicaNode::PublishStableCheckpoint() {
  const uint64_t stable = core_->low_watermark().value();
  if (stable == published_stable_) return;
  published_stable_ = stable;
  deps_.fetch->SetStableCheckpoint(core_->stable_checkpoint());
}

}  // namespace pbft::node
