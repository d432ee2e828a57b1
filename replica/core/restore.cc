// Restart (docs/protocol.md "Crash recovery"): Core::Restore rebuilds the
// core from what the protocol store and the ledger kept. Everything is
// decoded and checked first (DecodeStored, ProofsAhead); only then does the
// core change.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"

namespace pbft::core {

// The persisted PRE-PREPARE and votes of one (seq, view).
struct Core::StoredVotes {
  std::optional<v1::Envelope> pre_prepare;
  Digest digest;
  uint64_t timestamp_ms = 0;
  VotesBySender prepares;
  std::optional<v1::Envelope> own_commit;
};

// The persisted entries, decoded.
struct Core::StoredEntries {
  std::map<std::pair<Seq, View>, StoredVotes> by_slot;
  std::map<Seq, Vote> own_checkpoints;
  // CHECKPOINTs of proofs adopted from fetch responses (AdoptFetchedProof).
  std::map<std::pair<Seq, Digest>, std::map<ReplicaId, v1::Envelope>>
      checkpoints;
  std::optional<v1::Envelope> new_view;  // Of the persisted view.
};

namespace {

template <typename... Args>
absl::Status Bad(Args&&... args) {
  return absl::FailedPreconditionError(absl::StrCat(args...));
}

// A stored vote, decoded; `name` is its message type for the error.
template <typename M>
absl::Status DecodeStoredVote(const v1::Envelope& e, const char* name, M* m,
                              Digest* d) {
  if (!Decode(e, m, d)) return Bad("stored ", name, " does not decode");
  return absl::OkStatus();
}

}  // namespace

absl::Status Core::Restore(const RestoreState& state) {
  CHECK(last_executed_ == Seq(0) && log_.empty() && view_ == View(0) &&
        view_active_);
  const Seq h(state.stable_checkpoint ? state.stable_checkpoint->seq() : 0);
  const Seq last_executed = state.last_executed;
  if (h.value() % options_.params.checkpoint_interval != 0 ||
      h > last_executed) {
    return Bad("stored stable checkpoint ", h.value(),
               " does not fit the ledger at ", last_executed.value());
  }
  StoredEntries stored;
  for (const v1::Envelope& e : state.entries) {
    if (absl::Status s = DecodeStored(e, state.view, &stored); !s.ok()) {
      return s;
    }
  }
  std::map<Seq, v1::CheckpointProof> proofs_ahead = ProofsAhead(stored, h);
  const Seq window_end =
      std::max(h + options_.params.watermark_window,
               proofs_ahead.empty() ? h : proofs_ahead.rbegin()->first);
  if (last_executed > window_end) {
    return Bad("ledger at ", last_executed.value(),
               " is beyond the window of the stored stable checkpoint ",
               h.value(), " and of every stored proof ahead of it");
  }
  // Nothing failed: from here on the core changes.
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
  view_ = state.view;
  // Active in the view only if we entered it (its NEW-VIEW is durable).
  view_active_ = view_ == View(0) || stored.new_view.has_value();
  RestoreVotes(stored);
  return absl::OkStatus();
}

// One persisted entry into `out`; fails on an entry that does not decode
// or is not of a type the core persists.
absl::Status Core::DecodeStored(const v1::Envelope& e, View view,
                                StoredEntries* out) const {
  const ReplicaId sender(static_cast<uint32_t>(e.sender()));
  Digest d;
  switch (e.type()) {
    case v1::MESSAGE_TYPE_PRE_PREPARE:
      return DecodeStoredPrePrepare(e, out);
    case v1::MESSAGE_TYPE_PREPARE: {
      v1::Prepare m;
      if (absl::Status st = DecodeStoredVote(e, "PREPARE", &m, &d); !st.ok()) {
        return st;
      }
      out->by_slot[{Seq(m.seq()), View(m.view())}].prepares[sender] =
          Vote{d, e};
      break;
    }
    case v1::MESSAGE_TYPE_COMMIT: {
      v1::Commit m;
      if (absl::Status st = DecodeStoredVote(e, "COMMIT", &m, &d); !st.ok()) {
        return st;
      }
      if (sender == options_.id) {
        out->by_slot[{Seq(m.seq()), View(m.view())}].own_commit = e;
      }
      break;
    }
    case v1::MESSAGE_TYPE_CHECKPOINT: {
      v1::Checkpoint m;
      if (absl::Status st = DecodeStoredVote(e, "CHECKPOINT", &m, &d);
          !st.ok()) {
        return st;
      }
      if (sender == options_.id)
        out->own_checkpoints[Seq(m.seq())] = Vote{d, e};
      out->checkpoints[{Seq(m.seq()), d}][sender] = e;
      break;
    }
    case v1::MESSAGE_TYPE_NEW_VIEW: {
      v1::NewView m;
      if (!m.ParseFromString(e.payload())) {
        return Bad("stored NEW-VIEW does not decode");
      }
      if (View(m.view()) == view && sender == PrimaryOf(view)) {
        out->new_view = e;
      }
      break;
    }
    default:
      return Bad("stored entry of type ", v1::MessageType_Name(e.type()),
                 " is not one the core persists");
  }
  return absl::OkStatus();
}

absl::Status Core::DecodeStoredPrePrepare(const v1::Envelope& e,
                                          StoredEntries* out) const {
  v1::PrePrepare m;
  Digest d;
  if (!Decode(e, &m, &d) || ReplicaId(static_cast<uint32_t>(e.sender())) !=
                                PrimaryOf(View(m.view()))) {
    return Bad("stored PRE-PREPARE does not decode");
  }
  // Written by an earlier version (batch inside the signed header): no
  // VIEW-CHANGE may carry it now (docs/storage_format.md).
  if (m.legacy_requests_size() > 0) return absl::OkStatus();
  StoredVotes& v = out->by_slot[{Seq(m.seq()), View(m.view())}];
  // An O entry is stored as a header, then again with its body.
  if (!v.pre_prepare || e.batch_size() > 0) v.pre_prepare = e;
  v.digest = d;
  v.timestamp_ms = m.timestamp_ms();
  return absl::OkStatus();
}

// A replica that crashed while executing fetched batches beyond its window
// stored the proof it was executing towards: rebuild it (2f+1 stored
// CHECKPOINTs for one (seq, digest) above h).
std::map<Seq, v1::CheckpointProof> Core::ProofsAhead(
    const StoredEntries& stored, Seq h) const {
  std::map<Seq, v1::CheckpointProof> proofs;
  for (const auto& [key, by_sender] : stored.checkpoints) {
    if (key.first <= h || by_sender.size() < quorum_) continue;
    v1::CheckpointProof& p = proofs[key.first];
    p.set_seq(key.first.value());
    p.set_state_digest(key.second.ToBytes());
    for (const auto& [sender, e] : by_sender) *p.add_checkpoints() = e;
  }
  return proofs;
}

// The decoded entries into the log, the prepared certificates, the own
// checkpoints and the view's O; then the VIEW-CHANGE again (still changing
// views) or the slots that may have prepared are checked.
void Core::RestoreVotes(const StoredEntries& stored) {
  for (const auto& [key, votes] : stored.by_slot) {
    if (votes.pre_prepare) {
      KeepBody(key.first, votes.digest, key.second, *votes.pre_prepare);
    }
  }
  std::vector<Seq> to_check;
  for (const auto& [key, votes] : stored.by_slot) {
    const auto [s, v] = key;
    if (s <= low_watermark_ || !votes.pre_prepare) continue;
    if (RestoreSlot(s, v, votes)) to_check.push_back(s);
  }
  ready_.persist.entries.clear();  // RecordPreparedCert's are durable.
  for (const auto& [s, vote] : stored.own_checkpoints) {
    if (s >= low_watermark_ && s <= last_executed_) {
      checkpoints_[s][options_.id] = vote;
    }
  }
  if (view_active_ && stored.new_view) RestoreNewView(*stored.new_view);
  if (!view_active_) {
    // Still changing to view_: the same VIEW-CHANGE again (rebuilt from
    // the same prepared certificates; no vote in between).
    SendOwnViewChange();
  } else {
    InstallPendingO();
    for (Seq s : to_check) {
      if (log_.count(s)) CheckPrepared(s);
    }
  }
}

// The stored PRE-PREPARE and votes of (s, v): its prepared certificate if
// it prepared, and (in the current view, above the ledger head) its slot
// with the own votes, so that it never votes for another digest there.
// True if the slot may have prepared without committing yet.
bool Core::RestoreSlot(Seq s, View v, const StoredVotes& votes) {
  const bool prepared = MatchingPrepares(votes.prepares, PrimaryOf(v),
                                         votes.digest) >= quorum_ - 1;
  Slot slot;
  slot.view = v;
  slot.has_pre_prepare = true;
  slot.pre_prepare = *votes.pre_prepare;
  slot.digest = votes.digest;
  slot.timestamp_ms = votes.timestamp_ms;
  slot.prepares = votes.prepares;
  if (prepared) {
    auto it = prepared_certs_.find(s);
    if (it == prepared_certs_.end() || it->second.view < v) {
      // Rebuilds the certificate (the entries are durable already).
      RecordPreparedCert(s, slot);
    }
  }
  if (v != view_ || !view_active_ || s <= last_executed_) return false;
  if (AttachBody(s, &slot)) {
    slot.requests = RequestKeys(slot.pre_prepare.batch());
  }
  auto own = slot.prepares.find(options_.id);
  if (own != slot.prepares.end()) slot.own_prepare = own->second.envelope;
  const bool to_check = !votes.own_commit;
  if (votes.own_commit) {
    slot.own_commit = votes.own_commit;
    slot.commits[options_.id] = Vote{votes.digest, *votes.own_commit};
    slot.prepared = prepared;
  }
  if (PrimaryOf(v) == options_.id) {
    last_assigned_ = std::max(last_assigned_, s);
    last_assigned_timestamp_ms_ =
        std::max(last_assigned_timestamp_ms_, votes.timestamp_ms);
  }
  log_[s] = std::move(slot);
  return to_check;
}

// The NEW-VIEW of the view this replica is active in: kept to offer it to
// peers, and its O entries not in the log wait to be installed.
void Core::RestoreNewView(const v1::Envelope& new_view) {
  new_view_ = new_view;
  v1::NewView nv;
  CHECK(nv.ParseFromString(new_view.payload()));
  for (const v1::Envelope& pe : nv.pre_prepares()) {
    v1::PrePrepare pp;
    if (!pp.ParseFromString(pe.payload())) continue;
    const Seq s(pp.seq());
    if (is_primary()) last_assigned_ = std::max(last_assigned_, s);
    if (s > last_executed_ && !log_.count(s)) pending_o_[s] = pe;
  }
}

}  // namespace pbft::core
