// State transfer (Castro & Liskov §4.3, docs/protocol.md "state
// transfer"): a replica that fell behind fetches certified batches and a
// stable checkpoint proof from one peer at a time and adopts what verifies.
#include <algorithm>

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"
#include "replica/core/peers.h"

namespace pbft::core {

void Core::MaybeFetch() {
  const bool stalled = last_executed_ == executed_at_last_fetch_check_;
  executed_at_last_fetch_check_ = last_executed_;
  if (MissedNewView()) {
    // Out of the cluster's view: executing fetched batches must not hide
    // it. Ask a peer (each request names our view; one in a higher view
    // answers with its NEW-VIEW), busy or idle.
    ++stats_.view_probes;
    NextFetchPeer();
    SendFetch();
    return;
  }
  if (!stalled || last_handed_out_ != last_executed_) return;
  const bool proof_ahead = !fetched_proofs_.empty() &&
                           fetched_proofs_.rbegin()->first > last_executed_;
  if (BehindEvidence() <= last_executed_ && !proof_ahead) {
    // No sign of being behind: probe now and then (Options).
    if (tick_ < next_probe_tick_) return;
    next_probe_tick_ = tick_ + options_.idle_probe_interval_ticks;
    ++stats_.fetch_probes;
  }
  NextFetchPeer();
  SendFetch();
}

// A new peer each time (trusting none), skipping peers that recently
// served a response that failed verification, and preferring one that
// showed a seq above what this replica executed (one that is down or
// behind as well would answer nothing useful) unless it already answered
// with nothing at this height: a peer that voted past us may not have
// executed either, and two such laggards would otherwise ask only each
// other for ever.
void Core::NextFetchPeer() {
  for (const bool ahead_only : {true, false}) {
    const std::optional<uint32_t> next =
        NextPeer(fetch_peer_, options_.n, options_.id.value(), [&](uint32_t p) {
          return fetch_bad_until_[p] <= tick_ &&
                 (!ahead_only || (highest_seq_seen_[p] > last_executed_ &&
                                  fetch_empty_at_[p] != last_executed_));
        });
    if (next) {
      fetch_peer_ = *next;
      return;
    }
  }
  if (fetch_peer_ == options_.id.value()) {
    fetch_peer_ = (fetch_peer_ + 1) % options_.n;
  }
}

void Core::SendFetch() {
  CHECK_NE(fetch_peer_, options_.id.value());
  v1::FetchRequest req;
  req.set_replica_id(options_.id.value());
  req.set_from_seq(last_executed_.value() + 1);
  req.set_max_blocks(options_.fetch_blocks_max);
  req.set_view(view_.value());
  req.set_view_changing(!view_active_);
  SendTo(ReplicaId(fetch_peer_), signer_->Sign(v1::MESSAGE_TYPE_FETCH_REQUEST,
                                               req.SerializeAsString()));
  fetch_outstanding_ = true;
  ++stats_.fetches_sent;
}

// State transfer from certified batches (§4.3; docs/protocol.md "State
// transfer"): a replica that fell behind adopts certified batches from a
// peer. Batches above its window are accepted only up to a verified stable
// checkpoint proof (from a fetch response or a NEW-VIEW's min-s), and at
// most 2 * fetch_blocks_max beyond what it executed, so the log stays
// bounded by L + 2 * fetch_blocks_max and no one can push it further.
void Core::HandleFetchResponse(const v1::Envelope& e) {
  v1::FetchResponse resp;
  if (!resp.ParseFromString(e.payload()) || resp.replica_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  const bool asked = fetch_outstanding_ && e.sender() == fetch_peer_;
  if (asked) fetch_outstanding_ = false;
  if (resp.has_stable_checkpoint() &&
      Seq(resp.stable_checkpoint().seq()) > low_watermark_) {
    Digest d;
    if (!certs_.CheckpointProof(resp.stable_checkpoint(), &d)) {
      OnBadFetchResponse(e.sender(), asked);
      return;  // Trust nothing else from this response.
    }
    // Possibly far beyond the window (state transfer): batches up to it
    // may be adopted, checked one by one by their commit certificates.
    AdoptStableProof(Seq(resp.stable_checkpoint().seq()), d,
                     resp.stable_checkpoint());
  }
  if (asked) {
    fetch_response_full_ =
        static_cast<uint64_t>(resp.batches_size()) >= options_.fetch_blocks_max;
    if (resp.batches_size() == 0) fetch_empty_at_[e.sender()] = last_executed_;
  }
  const bool adopted = AdoptCertifiedBatches(resp, e.sender(), asked);
  if (asked && adopted) fetch_continue_ = true;
  if (resp.has_batch_pre_prepare()) {
    HandleFetchedBody(resp.batch_pre_prepare(), e.sender());
  }
  HandOutCommitted();
}

// The response's batches in order, each verified by its commit certificate,
// up to FetchLimit and beyond H only a bounded run past what is executed
// (the log stays bounded by L + 2 * fetch_blocks_max). Stops at the first
// that fails. True if one was adopted.
bool Core::AdoptCertifiedBatches(const v1::FetchResponse& resp, uint64_t sender,
                                 bool asked) {
  const Seq limit = FetchLimit();
  const Seq far_limit(last_executed_.value() + 2 * options_.fetch_blocks_max);
  bool adopted = false;
  for (const v1::CertifiedBatch& b : resp.batches()) {
    v1::PrePrepare pp;
    Digest d;
    if (!certs_.CertifiedBatch(b, &pp, &d)) {
      OnBadFetchResponse(sender, asked);
      break;
    }
    // 2f+1 replicas committed in this view: the cluster reached it.
    certified_view_ = std::max(certified_view_, View(pp.view()));
    const Seq s(pp.seq());
    if (s <= last_handed_out_) continue;
    if (s > limit || (s > high_watermark() && s > far_limit)) break;
    const auto& batch = BatchOf(b.pre_prepare(), pp);
    std::vector<std::pair<ClientId, RequestNumber>> requests =
        RequestKeys(batch);
    if (requests.size() != static_cast<size_t>(batch.size())) {
      OnBadFetchResponse(sender, asked);
      break;
    }
    Slot& slot = log_[s];
    if (slot.created_tick == 0) slot.created_tick = tick_;
    slot.view = View(pp.view());
    slot.has_pre_prepare = true;
    slot.has_body = true;
    slot.pre_prepare = b.pre_prepare();
    slot.digest = d;
    slot.timestamp_ms = pp.timestamp_ms();
    slot.requests = std::move(requests);
    slot.prepared = true;
    slot.committed = true;
    slot.fetched = true;
    slot.certificate = b.certificate();
    ++stats_.batches_fetched;
    adopted = true;
  }
  return adopted;
}

// A peer that serves garbage is counted, skipped for a while, and (if this
// was the answer we waited for) another peer is asked at once.
void Core::OnBadFetchResponse(uint64_t sender, bool asked) {
  Drop(DropReason::kBadCertificate);
  ++stats_.fetch_bad_responses;
  fetch_bad_until_[sender] = tick_ + kFetchBadPeerTicks;
  if (!asked || last_handed_out_ != last_executed_) return;
  const std::optional<uint32_t> next =
      NextPeer(fetch_peer_, options_.n, options_.id.value(),
               [&](uint32_t p) { return fetch_bad_until_[p] <= tick_; });
  if (next) {
    fetch_peer_ = *next;
    SendFetch();
  }
}

// The shell answers the blocks; the core answers the view: a requester in
// an older view (or still changing to ours) gets our NEW-VIEW.
void Core::HandleFetchRequest(const v1::Envelope& e) {
  v1::FetchRequest req;
  if (!req.ParseFromString(e.payload()) || req.replica_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  const View v(req.view());
  if (!req.view_changing()) NoteView(e.sender(), v);
  if (v < view_ || (v == view_ && req.view_changing())) {
    OfferNewView(ReplicaId(static_cast<uint32_t>(e.sender())));
  }
}

Seq Core::FetchLimit() const {
  Seq limit = high_watermark();
  if (!fetched_proofs_.empty()) {
    limit = std::max(limit, fetched_proofs_.rbegin()->first);
  }
  return limit;
}

}  // namespace pbft::core
