// View change and new view (Castro & Liskov §4.4): the view-change timer,
// VIEW-CHANGE, joining, NEW-VIEW sent and checked, entering a view and
// installing its O set. The O computation itself is in new_view.h.
#include <algorithm>

#include "common/check.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"
#include "replica/core/peers.h"

namespace pbft::core {

// §4.4 timer: runs while this backup holds a request not yet executed;
// restarted when a request executes and others are still held.
//
// Departure: the primary runs the timer too, while it holds requests or
// batches not yet executed. A primary left alone in its view (the others
// moved on while it was cut off) otherwise never leaves it, and with f
// replicas stuck like that the rest cannot form a quorum for the next view
// (pbft-sim byzantine-view-change seed 3). Leaving a view it cannot finish
// costs a correct primary nothing in safety.
void Core::UpdateViewChangeTimer(bool executed_one) {
  if (!view_active_) return;  // The view-change timer runs instead.
  const bool holds = !queue_.empty() || (is_primary() && !assigned_.empty());
  if (!holds) {
    view_change_timer_ticks_ = 0;
    return;
  }
  if (view_change_timer_ticks_ == 0 || executed_one) {
    view_change_timer_ticks_ = view_change_timeout_ticks_;
  }
}

// Just started: the peers' links to this replica are still coming up (a
// restarted replica hears nothing for a while), so it cannot tell a stuck
// primary from its own deafness, and a VIEW-CHANGE could not gather 2f+1
// anyway. Ask a peer not heard from yet, and wait (ledgerd soak: a replica
// restarted under load timed out alone before its first message arrived,
// and stayed in the next view by itself).
void Core::HoldViewChangeTimer() {
  ++stats_.view_change_timer_held;
  view_change_timer_ticks_ =
      std::max<uint64_t>(1, std::min<uint64_t>(options_.fetch_interval_ticks,
                                               view_change_timeout_ticks_ / 4));
  const std::optional<uint32_t> unheard =
      NextPeer(fetch_peer_, options_.n, options_.id.value(),
               [&](uint32_t p) { return !heard_[p]; });
  if (unheard) fetch_peer_ = *unheard;
  SendFetch();
}

void Core::OnViewChangeTimer() {
  if (!HeardFromQuorum()) {
    HoldViewChangeTimer();
    return;
  }
  if (view_active_ && !timer_deferred_ &&
      (HighestSeenBy(highest_commit_seen_) > last_executed_ ||
       BehindEvidence() > high_watermark())) {
    // Departure: f+1 replicas sent COMMITs past what this one executed, or
    // messages past its high watermark (their windows moved on, so a
    // stable checkpoint beyond it exists), so the requests it holds may
    // have executed there. Fetch first and give
    // the answer half a timeout (once per stall: executing a batch re-arms
    // this). A replica that moves to the next view alone stays there until
    // f others want it too (pbft-sim stall-through-view-change seed 26
    // before this: a backup 7 batches behind timed out alone).
    timer_deferred_ = true;
    view_change_timer_ticks_ =
        std::max<uint64_t>(1, view_change_timeout_ticks_ / 2);
    NextFetchPeer();
    SendFetch();
    return;
  }
  // §4.4: a request held too long in view v, or no NEW-VIEW for the view
  // being changed to: move to the next view with a doubled timeout.
  ++stats_.view_change_timer_expiries;
  view_change_timeout_ticks_ =
      std::min(view_change_timeout_ticks_ * 2,
               uint64_t{options_.params.view_change_timeout_ticks} *
                   kViewChangeBackoffMax);
  StartViewChange(view_.next());
}

void Core::ProbeBeforeTimeout() {
  ++stats_.timer_probes;
  NextFetchPeer();
  SendFetch();
  // The forward may have been lost (§4.1: the backup holds the request for
  // its timer); the primary ignores a copy it already has.
  if (!is_primary()) ForwardHeldRequests();
}

void Core::ForwardHeldRequests() {
  for (const auto& [arrival, q] : queue_) {
    SendTo(primary(), q.envelope);
    ++stats_.requests_forwarded;
  }
  // ForwardLateRequests: sent already.
  forward_next_ = next_arrival_;
  word_next_ = next_arrival_;
}

void Core::RecordPreparedCert(Seq s, const Slot& slot) {
  PreparedCert pc;
  pc.view = slot.view;
  pc.digest = slot.digest;
  // §4.4: the certificate carries the signed header; the body stays here.
  *pc.cert.mutable_pre_prepare() = PrePrepareHeader(slot.pre_prepare);
  const std::vector<const Vote*> matching =
      MatchingVotes(slot.prepares, slot.digest, PrimaryOf(slot.view));
  for (const Vote* vote : matching) {
    *pc.cert.add_prepares() = vote->envelope;
    // Crash recovery: the certificate must survive a restart so that a
    // later VIEW-CHANGE still carries it; our own PREPARE is durable
    // already, the others' become durable with the COMMIT this enables.
    // (A vote is filed under the sender of its envelope.)
    if (vote->envelope.sender() != options_.id.value()) {
      ready_.persist.entries.push_back(vote->envelope);
    }
    if (static_cast<uint32_t>(pc.cert.prepares_size()) == quorum_ - 1) break;
  }
  prepared_certs_[s] = std::move(pc);
}

// Multicasts this replica's VIEW-CHANGE for view_ (retransmitted until it
// enters the view) and counts it among the VIEW-CHANGEs for view_.
void Core::SendOwnViewChange() {
  CHECK(!view_active_);
  v1::Envelope e = BuildViewChange();
  ViewChangeMsg m;
  m.view = view_;
  m.envelope = e;
  CHECK(m.vc.ParseFromString(e.payload()));
  view_changes_[options_.id] = std::move(m);
  own_view_change_ = e;
  Broadcast(std::move(e));
}

v1::Envelope Core::BuildViewChange() const {
  v1::ViewChange vc;
  vc.set_new_view(view_.value());
  *vc.mutable_stable_checkpoint() = stable_proof_;
  for (const auto& [s, pc] : prepared_certs_) {
    if (s > low_watermark_) *vc.add_prepared() = pc.cert;
  }
  vc.set_replica_id(options_.id.value());
  return signer_->Sign(v1::MESSAGE_TYPE_VIEW_CHANGE, vc.SerializeAsString());
}

// §4.4 start: stop taking part in view v, make the new view durable, and
// multicast VIEW-CHANGE ⟨v', s*, C, P, i⟩.
void Core::StartViewChange(View target) {
  CHECK_GT(target, view_);
  view_ = target;
  view_active_ = false;
  new_view_.reset();
  pending_o_.clear();
  assigned_.clear();
  view_change_timer_ticks_ = 0;
  fetch_continue_ = false;
  ready_.persist.view = view_;
  for (auto it = view_changes_.begin(); it != view_changes_.end();) {
    it = it->second.view < target ? view_changes_.erase(it) : std::next(it);
  }
  ++stats_.view_changes_started;
  SendOwnViewChange();
  MaybeStartNewViewTimer();
  MaybeSendNewView();
  if (!view_active_) MaybeJoin();
}

void Core::HandleViewChange(const v1::Envelope& e) {
  v1::ViewChange peek;
  if (!peek.ParseFromString(e.payload()) || peek.replica_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  const View target(peek.new_view());
  const ReplicaId sender(static_cast<uint32_t>(e.sender()));
  if (target < view_ || (target == view_ && view_active_)) {
    // The sender is behind (restarted, partitioned): the primary of the
    // current view sends it the NEW-VIEW that let everyone in (the others
    // answer its FETCH_REQUESTs, which name its view).
    if (is_primary()) OfferNewView(sender);
    return;
  }
  auto it = view_changes_.find(sender);
  if (it != view_changes_.end() && it->second.view >= target) return;
  ViewChangeMsg m;
  m.view = target;
  m.envelope = e;
  if (!certs_.ViewChange(e, target, &m.vc)) {
    Drop(DropReason::kBadViewChange);
    return;
  }
  NoteSeq(e.sender(), Seq(m.vc.stable_checkpoint().seq()), &highest_seq_seen_);
  view_changes_[sender] = std::move(m);
  MaybeJoin();
  MaybeStartNewViewTimer();
  MaybeSendNewView();
}

// §4.4 liveness (a): f+1 distinct replicas asking for views above ours mean
// at least one correct replica does: move to the smallest of them at once.
void Core::MaybeJoin() {
  std::vector<View> higher;
  for (const auto& [id, m] : view_changes_) {
    if (id != options_.id && m.view > view_) higher.push_back(m.view);
  }
  if (higher.size() < WeakQuorum(options_.f)) return;
  StartViewChange(*std::min_element(higher.begin(), higher.end()));
}

// §4.4 liveness (b): with 2f+1 VIEW-CHANGEs for the view we move to, wait
// one timeout for its NEW-VIEW, then move on. A VIEW-CHANGE for a higher
// view counts too: its sender has left the old view as well (without this,
// f replicas that went one view further, and one lost VIEW-CHANGE, leave
// the others waiting for good: pbft-sim byzantine-view-change seed 18).
void Core::MaybeStartNewViewTimer() {
  if (view_active_ || view_change_timer_ticks_ > 0) return;
  uint32_t count = 0;
  for (const auto& [id, m] : view_changes_) {
    if (m.view >= view_) ++count;
  }
  if (count >= quorum_) view_change_timer_ticks_ = view_change_timeout_ticks_;
}

// §4.4 new primary: with 2f+1 valid VIEW-CHANGEs for its view, compute O,
// multicast NEW-VIEW ⟨v, V, O⟩ and enter the view.
void Core::MaybeSendNewView() {
  if (view_active_ || !is_primary()) return;
  std::vector<const ViewChangeMsg*> set;
  for (const auto& [id, m] : view_changes_) {
    if (m.view == view_ && set.size() < quorum_) set.push_back(&m);
  }
  if (set.size() < quorum_) return;
  std::vector<const v1::ViewChange*> vcs;
  for (const ViewChangeMsg* m : set) vcs.push_back(&m->vc);
  const NewViewComputation o = ComputeNewView(vcs);
  v1::NewView nv;
  nv.set_view(view_.value());
  for (const ViewChangeMsg* m : set) *nv.add_view_changes() = m->envelope;
  std::vector<v1::Envelope> pps;
  for (const OEntry& oe : o.o) {
    v1::PrePrepare pp;
    if (oe.source != nullptr) CHECK(pp.ParseFromString(oe.source->payload()));
    pp.set_view(view_.value());
    pp.set_seq(oe.seq.value());
    pp.set_timestamp_ms(oe.timestamp_ms);
    pp.set_batch_digest(oe.digest.ToBytes());
    pps.push_back(
        signer_->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString()));
    *nv.add_pre_prepares() = pps.back();
  }
  const v1::CheckpointProof proof = *o.min_proof;  // view_changes_ changes.
  v1::Envelope ne =
      signer_->Sign(v1::MESSAGE_TYPE_NEW_VIEW, nv.SerializeAsString());
  ++stats_.new_views_sent;
  Broadcast(ne);
  EnterView(view_, ne, std::move(pps), o.min_s, proof);
}

// §4.4 backups: accept NEW-VIEW for v only if signed by primary(v), V holds
// 2f+1 valid VIEW-CHANGEs for v from distinct replicas, and recomputing O
// from V gives exactly O.
void Core::HandleNewView(const v1::Envelope& e) {
  v1::NewView nv;
  if (!nv.ParseFromString(e.payload())) {
    Drop(DropReason::kMalformed);
    return;
  }
  const View v(nv.view());
  if (e.sender() != PrimaryOf(v).value()) {
    Drop(DropReason::kWrongSender);
    return;
  }
  if (v < view_ || (v == view_ && view_active_)) return;  // Old news.
  std::vector<v1::ViewChange> parsed;
  if (static_cast<uint32_t>(nv.view_changes_size()) < quorum_ ||
      static_cast<uint32_t>(nv.view_changes_size()) > options_.n ||
      static_cast<uint64_t>(nv.pre_prepares_size()) >
          options_.params.watermark_window ||
      !CheckNewViewSet(nv, v, &parsed)) {
    Drop(DropReason::kBadNewView);
    return;
  }
  std::vector<const v1::ViewChange*> vcs;
  for (const v1::ViewChange& vc : parsed) vcs.push_back(&vc);
  const NewViewComputation computed = ComputeNewView(vcs);
  std::vector<v1::Envelope> pps;
  if (!CheckNewViewO(nv, e.sender(), computed.o, &pps)) {
    Drop(DropReason::kBadNewView);
    return;
  }
  EnterView(v, e, std::move(pps), computed.min_s, *computed.min_proof);
}

// V of a NEW-VIEW for v: 2f+1 valid VIEW-CHANGEs for v from distinct
// replicas, parsed into `parsed` in V's order.
bool Core::CheckNewViewSet(const v1::NewView& nv, View v,
                           std::vector<v1::ViewChange>* parsed) const {
  parsed->assign(nv.view_changes_size(), v1::ViewChange());
  size_t i = 0;  // DistinctQuorum checks V's envelopes in order.
  return DistinctQuorum(
      nv.view_changes(), options_.n, quorum_, [&](const v1::Envelope& ve) {
        v1::ViewChange* vc = &(*parsed)[i++];
        // The very envelope we verified already need not be checked again.
        auto known =
            view_changes_.find(ReplicaId(static_cast<uint32_t>(ve.sender())));
        if (known != view_changes_.end() && known->second.view == v &&
            known->second.envelope.signature() == ve.signature() &&
            known->second.envelope.payload() == ve.payload()) {
          *vc = known->second.vc;
          return true;
        }
        return certs_.ViewChange(ve, v, vc) && verifier_->Verify(ve);
      });
}

// O of a NEW-VIEW: exactly the recomputed entries `o`, each a PRE-PREPARE
// header (no batch) of the NEW-VIEW's view signed by its sender, the new
// primary. Sets `pps` to them.
bool Core::CheckNewViewO(const v1::NewView& nv, uint64_t primary,
                         const std::vector<OEntry>& o,
                         std::vector<v1::Envelope>* pps) const {
  if (static_cast<size_t>(nv.pre_prepares_size()) != o.size()) return false;
  for (size_t i = 0; i < o.size(); ++i) {
    const v1::Envelope& pe = nv.pre_prepares(static_cast<int>(i));
    v1::PrePrepare pp;
    Digest d;
    if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE || pe.sender() != primary ||
        pe.batch_size() > 0 || !Decode(pe, &pp, &d) ||
        pp.legacy_requests_size() > 0 || View(pp.view()) != View(nv.view()) ||
        Seq(pp.seq()) != o[i].seq || d != o[i].digest ||
        pp.timestamp_ms() != o[i].timestamp_ms || !verifier_->Verify(pe)) {
      return false;
    }
    pps->push_back(pe);
  }
  return true;
}

void Core::EnterView(View v, const v1::Envelope& new_view,
                     std::vector<v1::Envelope> o, Seq min_s,
                     const v1::CheckpointProof& min_proof) {
  CHECK_GE(v, view_);
  view_ = v;
  view_active_ = true;
  ++stats_.views_entered;
  ready_.persist.view = v;
  ready_.persist.entries.push_back(new_view);
  new_view_ = new_view;
  own_view_change_.reset();
  pending_o_.clear();
  assigned_.clear();
  view_change_timer_ticks_ = 0;
  for (auto it = view_changes_.begin(); it != view_changes_.end();) {
    it = it->second.view <= v ? view_changes_.erase(it) : std::next(it);
  }
  // Slots of older views go (their prepared certificates stay in
  // prepared_certs_), except batches already committed here.
  for (auto it = log_.upper_bound(last_handed_out_); it != log_.end();) {
    it = it->second.committed ? std::next(it) : log_.erase(it);
  }
  PendO(std::move(o), min_s);
  // Only now, with O pending and last_assigned_ past it: adopting min-s
  // below installs O and lets the primary cut new batches, which before O
  // was known reassigned seqs O covers (pbft-sim partition n=4 seed 12566,
  // crash n=7 seed 1795: a primary re-proposing at seqs it had committed).
  // min-s is stable at 2f+1 replicas' word. Adopt it if our state matches,
  // or fetch up to it if we are behind (§4.4: "they fetch state";
  // docs/protocol.md, state transfer).
  if (min_s > low_watermark_) {
    Digest d;
    CHECK(ParseDigest(min_proof.state_digest(), &d));
    AdoptStableProof(min_s, d, min_proof);
  }
  InstallPendingO();
  if (is_primary()) {
    MaybeCutBatches();
  } else {
    // docs/protocol.md, view change: backups re-send the requests they hold to
    // the new primary.
    ForwardHeldRequests();
  }
  // The new primary too: the batches of O it re-proposed are held until
  // they execute (pbft-sim byzantine-view-change seeds 586 and 876: a
  // primary whose O never committed, because the others had moved on to
  // other views, otherwise stayed in its view for good).
  UpdateViewChangeTimer(false);
}

// The O entries of a view being entered wait in pending_o_ (those above
// what is handed out); new proposals start right after O: seqs above max-s
// prepared nowhere that counts, so the new primary reuses them.
void Core::PendO(std::vector<v1::Envelope> o, Seq min_s) {
  Seq max_s = min_s;
  for (v1::Envelope& pe : o) {
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(pe.payload()));
    const Seq s(pp.seq());
    max_s = std::max(max_s, s);
    last_assigned_timestamp_ms_ =
        std::max(last_assigned_timestamp_ms_, pp.timestamp_ms());
    if (s > last_handed_out_) pending_o_[s] = std::move(pe);
  }
  last_assigned_ = std::max(max_s, last_handed_out_);
}

// Puts the current view's O entries that fit the window into the log: the
// PRE-PREPARE is durable, and a backup that holds the batch multicasts its
// PREPARE (§4.4); one that does not fetches the body first.
void Core::InstallPendingO() {
  while (!pending_o_.empty()) {
    auto it = pending_o_.begin();
    const Seq s = it->first;
    if (s > high_watermark()) break;
    v1::Envelope pe = std::move(it->second);
    pending_o_.erase(it);
    if (s <= last_handed_out_) continue;
    auto lit = log_.find(s);
    if (lit != log_.end() && lit->second.committed) continue;
    v1::PrePrepare pp;
    Digest d;
    CHECK(Decode(pe, &pp, &d));
    Slot slot;
    if (lit != log_.end()) {  // Early votes of this view.
      slot.prepares = std::move(lit->second.prepares);
      slot.commits = std::move(lit->second.commits);
    }
    slot.view = view_;
    slot.created_tick = tick_;
    slot.has_pre_prepare = true;
    slot.digest = d;
    slot.timestamp_ms = pp.timestamp_ms();
    ready_.persist.entries.push_back(pe);
    slot.pre_prepare = std::move(pe);
    Slot& installed = log_[s] = std::move(slot);
    if (AttachBody(s, &installed)) {
      OnBodyAttached(s, &installed, /*send_prepare=*/!is_primary());
    }
  }
}

// Rejoining the current view (docs/protocol.md): the NEW-VIEW is
// self-proving (signed by its primary, O recomputed from V by the
// receiver), so any replica that holds it may pass it on.
void Core::OfferNewView(ReplicaId to) {
  if (!view_active_ || !new_view_ || to == options_.id) return;
  uint64_t& until = new_view_offered_until_[to.value()];
  if (tick_ < until) return;
  until = tick_ + options_.retransmit_ticks;
  ++stats_.new_views_offered;
  SendTo(to, *new_view_);
}

}  // namespace pbft::core
