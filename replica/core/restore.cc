// Restart (docs/protocol.md "crash recovery"): Core::Restore rebuilds the
// core from what the protocol store and the ledger kept.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"

namespace pbft {

using ledger::BatchOf;
using ledger::RequestBytes;

absl::Status Core::Restore(const RestoreState& state) {
  CHECK(last_executed_ == Seq(0) && log_.empty() && view_ == View(0) &&
        view_active_);
  const uint64_t K = options_.params.checkpoint_interval;
  const Seq h(state.stable_checkpoint ? state.stable_checkpoint->seq() : 0);
  const Seq last_executed = state.last_executed;
  auto bad = [](auto&&... args) {
    return absl::FailedPreconditionError(absl::StrCat(args...));
  };
  if (h.value() % K != 0 || h > last_executed) {
    return bad("stored stable checkpoint ", h.value(),
               " does not fit the ledger at ", last_executed.value());
  }
  // Decode everything first: on failure nothing has changed.
  struct Votes {
    std::optional<v1::Envelope> pre_prepare;
    Digest digest;
    uint64_t timestamp_ms = 0;
    std::map<ReplicaId, Vote> prepares;
    std::optional<v1::Envelope> own_commit;
  };
  std::map<std::pair<Seq, View>, Votes> by_slot;
  std::map<Seq, Vote> own_checkpoints;
  // CHECKPOINTs of proofs adopted from fetch responses (AdoptFetchedProof).
  std::map<std::pair<Seq, Digest>, std::map<ReplicaId, v1::Envelope>>
      stored_checkpoints;
  std::optional<v1::Envelope> new_view;
  const View view = state.view;
  for (const v1::Envelope& e : state.entries) {
    const ReplicaId sender(static_cast<uint32_t>(e.sender()));
    Digest d;
    switch (e.type()) {
      case v1::MESSAGE_TYPE_PRE_PREPARE: {
        v1::PrePrepare m;
        if (!m.ParseFromString(e.payload()) ||
            !ParseDigest(m.batch_digest(), &d) ||
            sender != PrimaryOf(View(m.view()))) {
          return bad("stored PRE-PREPARE does not decode");
        }
        // Written by an earlier version (batch inside the signed header):
        // no VIEW-CHANGE may carry it now (docs/storage_format.md).
        if (m.legacy_requests_size() > 0) break;
        Votes& v = by_slot[{Seq(m.seq()), View(m.view())}];
        // An O entry is stored as a header, then again with its body.
        if (!v.pre_prepare || e.batch_size() > 0) v.pre_prepare = e;
        v.digest = d;
        v.timestamp_ms = m.timestamp_ms();
        break;
      }
      case v1::MESSAGE_TYPE_PREPARE: {
        v1::Prepare m;
        if (!m.ParseFromString(e.payload()) ||
            !ParseDigest(m.batch_digest(), &d)) {
          return bad("stored PREPARE does not decode");
        }
        by_slot[{Seq(m.seq()), View(m.view())}].prepares[sender] = Vote{d, e};
        break;
      }
      case v1::MESSAGE_TYPE_COMMIT: {
        v1::Commit m;
        if (!m.ParseFromString(e.payload()) ||
            !ParseDigest(m.batch_digest(), &d)) {
          return bad("stored COMMIT does not decode");
        }
        if (sender == options_.id) {
          by_slot[{Seq(m.seq()), View(m.view())}].own_commit = e;
        }
        break;
      }
      case v1::MESSAGE_TYPE_CHECKPOINT: {
        v1::Checkpoint m;
        if (!m.ParseFromString(e.payload()) ||
            !ParseDigest(m.state_digest(), &d)) {
          return bad("stored CHECKPOINT does not decode");
        }
        if (sender == options_.id) own_checkpoints[Seq(m.seq())] = Vote{d, e};
        stored_checkpoints[{Seq(m.seq()), d}][sender] = e;
        break;
      }
      case v1::MESSAGE_TYPE_NEW_VIEW: {
        v1::NewView m;
        if (!m.ParseFromString(e.payload())) {
          return bad("stored NEW-VIEW does not decode");
        }
        if (View(m.view()) == view && sender == PrimaryOf(view)) new_view = e;
        break;
      }
      default:
        return bad("stored entry of type ", v1::MessageType_Name(e.type()),
                   " is not one the core persists");
    }
  }
  // A replica that crashed while executing fetched batches beyond its
  // window stored the proof it was executing towards: rebuild it.
  std::map<Seq, v1::CheckpointProof> proofs_ahead;
  for (const auto& [key, by_sender] : stored_checkpoints) {
    if (key.first <= h || by_sender.size() < quorum_) continue;
    v1::CheckpointProof& p = proofs_ahead[key.first];
    p.set_seq(key.first.value());
    p.set_state_digest(key.second.ToBytes());
    for (const auto& [sender, e] : by_sender) *p.add_checkpoints() = e;
  }
  const Seq window_end =
      std::max(h + options_.params.watermark_window,
               proofs_ahead.empty() ? h : proofs_ahead.rbegin()->first);
  if (last_executed > window_end) {
    return bad("ledger at ", last_executed.value(),
               " is beyond the window of the stored stable checkpoint ",
               h.value(), " and of every stored proof ahead of it");
  }
  if (state.stable_checkpoint) stable_proof_ = *state.stable_checkpoint;
  for (auto& [seq, p] : proofs_ahead) fetched_proofs_[seq] = std::move(p);
  while (fetched_proofs_.size() > kFetchedProofsMax) {
    fetched_proofs_.erase(fetched_proofs_.begin());
  }
  low_watermark_ = h;
  last_executed_ = last_executed;
  last_handed_out_ = last_executed;
  last_assigned_ = last_executed;
  last_executed_timestamp_ms_ = state.last_timestamp_ms;
  last_assigned_timestamp_ms_ = state.last_timestamp_ms;
  view_ = view;
  // Active in the view only if we entered it (its NEW-VIEW is durable).
  view_active_ = view == View(0) || new_view.has_value();
  for (const auto& [key, votes] : by_slot) {
    if (votes.pre_prepare) {
      KeepBody(key.first, votes.digest, key.second, *votes.pre_prepare);
    }
  }
  std::vector<Seq> to_check;
  for (auto& [key, votes] : by_slot) {
    const auto [s, v] = key;
    if (s <= h || !votes.pre_prepare) continue;
    uint32_t matching = 0;
    for (const auto& [sender, vote] : votes.prepares) {
      if (sender != PrimaryOf(v) && vote.digest == votes.digest) ++matching;
    }
    Slot slot;
    slot.view = v;
    slot.has_pre_prepare = true;
    slot.pre_prepare = *votes.pre_prepare;
    slot.digest = votes.digest;
    slot.timestamp_ms = votes.timestamp_ms;
    slot.prepares = votes.prepares;
    if (matching >= quorum_ - 1) {
      auto it = prepared_certs_.find(s);
      if (it == prepared_certs_.end() || it->second.view < v) {
        // Rebuilds the certificate (the entries are durable already).
        RecordPreparedCert(s, slot);
      }
    }
    if (v != view_ || !view_active_ || s <= last_executed_) continue;
    if (AttachBody(s, &slot)) {
      slot.requests = RequestKeys(slot.pre_prepare.batch());
    }
    auto own = slot.prepares.find(options_.id);
    if (own != slot.prepares.end()) slot.own_prepare = own->second.envelope;
    if (votes.own_commit) {
      slot.own_commit = votes.own_commit;
      slot.commits[options_.id] = Vote{votes.digest, *votes.own_commit};
      slot.prepared = matching >= quorum_ - 1;
    } else {
      to_check.push_back(s);  // May have prepared without committing yet.
    }
    if (PrimaryOf(v) == options_.id) {
      last_assigned_ = std::max(last_assigned_, s);
      last_assigned_timestamp_ms_ =
          std::max(last_assigned_timestamp_ms_, votes.timestamp_ms);
    }
    log_[s] = std::move(slot);
  }
  ready_.persist.entries.clear();  // RecordPreparedCert's are durable.
  for (const auto& [s, vote] : own_checkpoints) {
    if (s >= h && s <= last_executed_) checkpoints_[s][options_.id] = vote;
  }
  if (view_active_ && new_view) {
    new_view_ = new_view;
    v1::NewView nv;
    CHECK(nv.ParseFromString(new_view->payload()));
    for (const v1::Envelope& pe : nv.pre_prepares()) {
      v1::PrePrepare pp;
      if (!pp.ParseFromString(pe.payload())) continue;
      const Seq s(pp.seq());
      if (is_primary()) last_assigned_ = std::max(last_assigned_, s);
      if (s > last_executed_ && !log_.count(s)) pending_o_[s] = pe;
    }
  }
  if (!view_active_) {
    // Still changing to `view`: the same VIEW-CHANGE again (rebuilt from
    // the same prepared certificates; no vote in between).
    v1::Envelope e = BuildViewChange();
    ViewChangeMsg m;
    m.view = view_;
    m.envelope = e;
    CHECK(m.vc.ParseFromString(e.payload()));
    view_changes_[options_.id] = std::move(m);
    own_view_change_ = e;
    Broadcast(std::move(e));
  } else {
    InstallPendingO();
    for (Seq s : to_check) {
      if (log_.count(s)) CheckPrepared(s);
    }
  }
  return absl::OkStatus();
}

}  // namespace pbft
