// The normal case (Castro & Liskov §4.2): batching and PRE-PREPARE on the
// primary, PRE-PREPARE/PREPARE/COMMIT acceptance, prepared and
// committed-local, hand-out for execution in seq order, retransmission.
#include <algorithm>

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"

namespace pbft::core {

void Core::MaybeCutBatches() {
  CHECK(is_primary());
  CHECK(view_active_);
  // Not before every O entry has its body: the requests it orders are not
  // known until then, and would be proposed again at new seqs.
  if (BodiesMissing()) return;
  const auto& p = options_.params;
  while (!queue_.empty() && last_assigned_.next() <= high_watermark()) {
    const bool full = queue_.size() >= p.batch_requests_max ||
                      queue_bytes_ >= p.batch_bytes_max;
    const bool waited =
        tick_ >= queue_.begin()->second.arrival_tick + p.batch_delay_ticks;
    // Adaptive batching: with nothing in flight, waiting only adds latency;
    // while a batch is in flight, requests accumulate until it is handed
    // out (which calls this again), the batch fills, or the delay passes.
    const bool idle =
        !p.batch_wait_when_idle && last_assigned_ == last_handed_out_;
    if (!full && !waited && !idle) return;
    SendPrePrepare();
  }
}

void Core::SendPrePrepare() {
  const auto& p = options_.params;
  const Seq s = last_assigned_.next();
  CHECK(InWindow(s));
  v1::PrePrepare pp;
  pp.set_view(view_.value());
  pp.set_seq(s.value());
  // §4.2 timestamp rule: never goes back.
  last_assigned_timestamp_ms_ = std::max(last_assigned_timestamp_ms_, now_ms_);
  pp.set_timestamp_ms(last_assigned_timestamp_ms_);
  Slot slot;
  size_t bytes = 0;
  google::protobuf::RepeatedPtrField<v1::Envelope> batch;
  while (!queue_.empty() &&
         static_cast<uint32_t>(batch.size()) < p.batch_requests_max) {
    auto it = queue_.begin();
    Queued& q = it->second;
    auto rec = clients_.find(q.client.value());
    const bool stale =
        rec != clients_.end() && q.number <= rec->second.last_ordered;
    if (stale) {
      RejectStale(q.client, q.number);
    } else {
      if (bytes + q.bytes > p.batch_bytes_max && !batch.empty()) break;
      bytes += q.bytes;
      slot.requests.emplace_back(q.client, q.number);
      assigned_.insert(RequestKey{q.client.value(), q.number.value()});
      *batch.Add() = std::move(q.envelope);
    }
    Dequeue(it);
  }
  if (batch.empty()) return;  // Everything queued was stale.
  const Digest d = BatchDigest(batch);
  pp.set_batch_digest(d.ToBytes());
  slot.view = view_;
  slot.created_tick = tick_;
  slot.has_pre_prepare = true;
  slot.has_body = true;
  slot.digest = d;
  slot.timestamp_ms = pp.timestamp_ms();
  // §4.2: the primary signs ⟨PRE-PREPARE, v, n, d⟩; the batch goes beside.
  slot.pre_prepare =
      signer_->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  slot.pre_prepare.mutable_batch()->Swap(&batch);
  KeepBody(s, d, view_, slot.pre_prepare);
  // Keep any early votes that arrived before the pre-prepare was cut.
  auto existing = log_.find(s);
  if (existing != log_.end()) {
    slot.prepares = std::move(existing->second.prepares);
    slot.commits = std::move(existing->second.commits);
  }
  last_assigned_ = s;
  ++stats_.pre_prepares_sent;
  ready_.persist.entries.push_back(slot.pre_prepare);
  Broadcast(slot.pre_prepare);
  log_[s] = std::move(slot);
  CheckPrepared(s);
}

bool Core::CheckBatch(
    const google::protobuf::RepeatedPtrField<v1::Envelope>& batch,
    const Digest& digest,
    std::vector<std::pair<ClientId, RequestNumber>>* requests) {
  const auto& p = options_.params;
  if (static_cast<uint32_t>(batch.size()) > p.batch_requests_max) {
    Drop(DropReason::kBatchTooLarge);
    return false;
  }
  // The digest must match the batch it names (§4.2: "d is the digest of m").
  const Digest computed = BatchDigest(batch);
  if (computed != digest) {
    Drop(DropReason::kDigestMismatch);
    return false;
  }
  size_t bytes = 0;
  requests->clear();
  requests->reserve(batch.size());
  for (const v1::Envelope& re : batch) {
    bytes += RequestBytes(re);
    v1::Request r;
    if (re.type() != v1::MESSAGE_TYPE_REQUEST ||
        !r.ParseFromString(re.payload()) || r.client_id() != re.sender() ||
        r.read_only()) {
      Drop(DropReason::kBadRequest);
      return false;
    }
    const ClientId c(r.client_id());
    const RequestNumber t(r.request_number());
    for (const auto& prev : *requests) {
      if (prev.first == c && prev.second == t) {
        Drop(DropReason::kBadRequest);
        return false;
      }
    }
    // A primary must not be able to forge requests: check the client's
    // signature, unless this exact envelope already arrived from the client
    // (the shell verified it then).
    auto qi = queue_index_.find(RequestKey{c.value(), t.value()});
    bool known = false;
    if (qi != queue_index_.end()) {
      const v1::Envelope& mine = queue_.at(qi->second).envelope;
      known =
          mine.payload() == re.payload() && mine.signature() == re.signature();
    }
    if (!known && !verifier_->Verify(re)) {
      Drop(DropReason::kBadRequest);
      return false;
    }
    requests->emplace_back(c, t);
  }
  if (bytes > p.batch_bytes_max) {
    Drop(DropReason::kBatchTooLarge);
    return false;
  }
  return true;
}

// §4.2 timestamp rule: timestamps never go back along seq order, and stay
// within timestamp_skew_max_ms of this replica's clock.
bool Core::CheckTimestamp(Seq s, uint64_t ts) const {
  const uint64_t skew = options_.params.timestamp_skew_max_ms;
  if (ts + skew < now_ms_ || ts > now_ms_ + skew) return false;
  if (ts < last_executed_timestamp_ms_) return false;
  for (const auto& [seq, slot] : log_) {
    if (!slot.has_pre_prepare) continue;
    if (seq < s && slot.timestamp_ms > ts) return false;
    if (seq > s && slot.timestamp_ms < ts) return false;
  }
  return true;
}

void Core::HandlePrePrepare(const v1::Envelope& e) {
  v1::PrePrepare pp;
  Digest d;
  if (!Decode(e, &pp, &d) || pp.legacy_requests_size() > 0) {
    Drop(DropReason::kMalformed);
    return;
  }
  const View v(pp.view());
  const Seq s(pp.seq());
  if (e.sender() == PrimaryOf(v).value()) {
    NoteSeq(e.sender(), s, &highest_seq_seen_);
    NoteView(e.sender(), v);
  }
  // §4.2: accept only from primary(v), in view v, with h < s <= H; §4.4:
  // nothing while changing views.
  if (v != view_ || !view_active_) {
    Drop(DropReason::kWrongView);
    return;
  }
  if (e.sender() != PrimaryOf(v).value()) {
    Drop(DropReason::kWrongSender);
    return;
  }
  if (!InWindow(s)) {
    Drop(DropReason::kOutOfWindow);
    return;
  }
  auto it = log_.find(s);
  if (it != log_.end() && it->second.has_pre_prepare) {
    // §4.2: never a second pre-prepare for (v, s) with another digest.
    if (it->second.digest != d) {
      Drop(DropReason::kConflictingPrePrepare);
    } else if (!it->second.has_body && e.batch_size() > 0) {
      HandleFetchedBody(e, e.sender());  // The primary re-sent an O entry.
    }
    return;
  }
  if (s <= last_handed_out_) return;  // Committed already (fetched).
  std::vector<std::pair<ClientId, RequestNumber>> requests;
  if (!CheckBatch(e.batch(), d, &requests)) return;
  if (!CheckTimestamp(s, pp.timestamp_ms())) {
    Drop(DropReason::kTimestamp);
    return;
  }
  Slot& slot = log_[s];
  if (it == log_.end()) slot.created_tick = tick_;
  slot.view = v;
  slot.has_pre_prepare = true;
  slot.has_body = true;
  slot.pre_prepare = e;
  slot.digest = d;
  slot.timestamp_ms = pp.timestamp_ms();
  slot.requests = std::move(requests);
  KeepBody(s, d, v, e);
  ready_.persist.entries.push_back(e);
  SendOwnPrepare(s, &slot);
  CheckPrepared(s);
}

// §4.2 step 3 (and §4.4 for an O entry): sign PREPARE for the slot's
// (view, seq, digest), count it, make it durable and multicast it.
void Core::SendOwnPrepare(Seq s, Slot* slot) {
  CHECK(!slot->own_prepare);
  v1::Envelope pe = SignVote<v1::Prepare>(v1::MESSAGE_TYPE_PREPARE, s, *slot);
  slot->prepares[options_.id] = Vote{slot->digest, pe};
  slot->own_prepare = pe;
  ready_.persist.entries.push_back(pe);
  Broadcast(std::move(pe));
}

// PREPARE and COMMIT carry the same fields: the slot's view and digest.
template <typename VoteMessage>
v1::Envelope Core::SignVote(v1::MessageType type, Seq s,
                            const Slot& slot) const {
  VoteMessage m;
  m.set_view(slot.view.value());
  m.set_seq(s.value());
  m.set_batch_digest(slot.digest.ToBytes());
  m.set_replica_id(options_.id.value());
  return signer_->Sign(type, m.SerializeAsString());
}

void Core::HandlePrepare(const v1::Envelope& e) {
  // §4.2 step 4: prepares come from backups; the primary's vote is its
  // pre-prepare.
  if (std::optional<Seq> s =
          AcceptVote<v1::Prepare>(e, &Slot::prepares, /*backups_only=*/true)) {
    CheckPrepared(*s);
  }
}

void Core::HandleCommit(const v1::Envelope& e) {
  if (std::optional<Seq> s = AcceptVote<v1::Commit>(e, &Slot::commits,
                                                    /*backups_only=*/false)) {
    CheckCommitted(*s);
  }
}

// PREPARE and COMMIT carry the same fields (view, seq, batch_digest,
// replica_id) and pass the same filters; the vote goes into `votes` of its
// slot, one per sender (the first wins).
template <typename VoteMessage>
std::optional<Seq> Core::AcceptVote(const v1::Envelope& e,
                                    VotesBySender Slot::*votes,
                                    bool backups_only) {
  VoteMessage m;
  Digest d;
  if (!Decode(e, &m, &d) || m.replica_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return std::nullopt;
  }
  const View v(m.view());
  const Seq s(m.seq());
  // Evidence of how far the others are, whatever their view: a replica in
  // another view (or changing views) still catches up by fetching.
  NoteSeq(e.sender(), s, &highest_seq_seen_);
  if constexpr (std::is_same_v<VoteMessage, v1::Commit>) {
    NoteSeq(e.sender(), s, &highest_commit_seen_);
  }
  NoteView(e.sender(), v);
  if (v != view_ || !view_active_) {
    Drop(DropReason::kWrongView);
    return std::nullopt;
  }
  if (backups_only && e.sender() == PrimaryOf(v).value()) {
    Drop(DropReason::kWrongSender);
    return std::nullopt;
  }
  if (!InWindow(s)) {
    Drop(DropReason::kOutOfWindow);
    return std::nullopt;
  }
  if (s <= last_handed_out_) return std::nullopt;
  Slot& slot = log_[s];
  // Committed already (kept across a view change, or fetched): its
  // certificate stands; votes of a later view change nothing.
  if (slot.committed) return std::nullopt;
  if (slot.created_tick == 0) slot.created_tick = tick_;
  slot.view = v;
  const ReplicaId sender(static_cast<uint32_t>(e.sender()));
  auto [vit, inserted] = (slot.*votes).try_emplace(sender, Vote{d, e});
  if (!inserted) {
    if (vit->second.digest != d) Drop(DropReason::kConflictingVote);
    return std::nullopt;
  }
  return s;
}

// §4.2 step 4: prepared(v, s, d) = pre-prepare + 2f matching prepares from
// distinct backups. Then multicast COMMIT.
void Core::CheckPrepared(Seq s) {
  auto it = log_.find(s);
  CHECK(it != log_.end());
  Slot& slot = it->second;
  // §4.4: never prepare (so never commit or execute) without the body.
  if (!slot.has_pre_prepare || !slot.has_body || slot.prepared) return;
  if (MatchingPrepares(slot.prepares, PrimaryOf(slot.view), slot.digest) <
      quorum_ - 1) {
    return;
  }
  slot.prepared = true;
  RecordPreparedCert(s, slot);
  v1::Envelope ce = SignVote<v1::Commit>(v1::MESSAGE_TYPE_COMMIT, s, slot);
  // Our own commit replaces anything stored under our id (there is none
  // unless a peer replayed a forged one, which the signature prevents).
  slot.commits[options_.id] = Vote{slot.digest, ce};
  slot.own_commit = ce;
  ready_.persist.entries.push_back(ce);
  Broadcast(std::move(ce));
  CheckCommitted(s);
}

// §4.2 step 5: committed-local = prepared + 2f+1 matching commits from
// distinct replicas (own included). They are the commit certificate.
void Core::CheckCommitted(Seq s) {
  auto it = log_.find(s);
  CHECK(it != log_.end());
  Slot& slot = it->second;
  if (!slot.prepared || slot.committed) return;
  const std::vector<const Vote*> matching =
      MatchingVotes(slot.commits, slot.digest);
  if (matching.size() < quorum_) return;
  slot.committed = true;
  slot.certificate.Clear();
  for (uint32_t i = 0; i < quorum_; ++i) {
    *slot.certificate.add_commits() = matching[i]->envelope;
  }
  ++stats_.batches_committed;
  HandOutCommitted();
}

// §4.2 step 6: execute strictly in seq order.
void Core::HandOutCommitted() {
  bool handed = false;
  while (true) {
    auto it = log_.find(last_handed_out_.next());
    if (it == log_.end() || !it->second.committed) break;
    Slot& slot = it->second;
    CHECK(slot.has_body);
    CommittedBatch b;
    b.view = slot.view;
    b.seq = it->first;
    b.timestamp_ms = slot.timestamp_ms;
    b.batch_digest = slot.digest;
    b.pre_prepare = slot.pre_prepare;
    b.certificate = slot.certificate;
    for (const auto& [c, t] : slot.requests) {
      RemoveQueuedUpTo(c, t);
      assigned_.erase(RequestKey{c.value(), t.value()});
      ClientRecord& rec = clients_[c.value()];
      rec.last_ordered = std::max(rec.last_ordered, t);
    }
    last_handed_out_ = it->first;
    if (last_assigned_ < last_handed_out_) last_assigned_ = last_handed_out_;
    ready_.execute.push_back(std::move(b));
    handed = true;
  }
  if (handed) {
    if (view_active_) {
      // §4.4 liveness: the timeout returns to its base after progress.
      view_change_timeout_ticks_ = options_.params.view_change_timeout_ticks;
      UpdateViewChangeTimer(true);
      if (is_primary()) MaybeCutBatches();
    }
  }
}

void Core::OnExecuted(Seq seq, const Digest& state_digest,
                      std::vector<ExecutedReply> replies) {
  CHECK_EQ(seq, last_executed_.next());
  CHECK_LE(seq, last_handed_out_);
  timer_deferred_ = false;
  auto it = log_.find(seq);
  CHECK(it != log_.end());
  last_executed_ = seq;
  last_executed_timestamp_ms_ =
      std::max(last_executed_timestamp_ms_, it->second.timestamp_ms);
  for (ExecutedReply& r : replies) {
    ClientRecord& rec = clients_[r.client_id.value()];
    if (r.request_number < rec.last_executed) {
      // Skipped by the ledger: a higher number of this client ran first.
      RejectStale(r.client_id, r.request_number);
      continue;
    }
    if (r.request_number > rec.last_executed || !rec.replied) {
      rec.last_executed = r.request_number;
      rec.last_ordered = std::max(rec.last_ordered, r.request_number);
      rec.result = std::move(r.result);
      rec.replied = true;
    }
    ready_.replies.push_back(ReplyFor(r.client_id, rec));
  }
  // State transfer beyond the window: executed batches above H were
  // fetched and are not needed any more (no vote refers to them).
  if (seq > high_watermark()) log_.erase(it);
  if (seq.value() % options_.params.checkpoint_interval == 0) {
    TakeCheckpoint(seq, state_digest);
  }
  // Pipelined catch-up: everything fetched so far is applied and peers are
  // still ahead, so ask the same peer for the next blocks at once.
  if (fetch_continue_ && last_executed_ == last_handed_out_) {
    fetch_continue_ = false;
    const bool behind = BehindEvidence() > last_executed_ ||
                        (!fetched_proofs_.empty() &&
                         fetched_proofs_.rbegin()->first > last_executed_) ||
                        fetch_response_full_;
    if (behind) SendFetch();
  }
}

void Core::Retransmit() {
  if (!view_active_ && own_view_change_) {
    Broadcast(*own_view_change_);
    ++stats_.retransmissions;
  }
  for (const auto& [s, slot] : log_) {
    if (!view_active_) break;
    // Handed out: committed here, whether or not executed yet (an executor
    // may run it later). Its votes did their work; a peer without the
    // batch fetches it, and a fetched PRE-PREPARE is not this life's vote.
    if (s <= last_handed_out_) continue;
    if (slot.view != view_) continue;
    if (tick_ < slot.created_tick + options_.retransmit_ticks) continue;
    if (slot.has_pre_prepare && is_primary()) {
      Broadcast(slot.pre_prepare);
      ++stats_.retransmissions;
    }
    if (slot.own_prepare) {
      Broadcast(*slot.own_prepare);
      ++stats_.retransmissions;
    }
    if (slot.own_commit) {
      Broadcast(*slot.own_commit);
      ++stats_.retransmissions;
    }
  }
  for (const auto& [s, votes] : checkpoints_) {
    if (s <= low_watermark_) continue;  // Stable here: AnswerStableVote.
    auto own = votes.find(options_.id);
    if (own == votes.end()) continue;
    Broadcast(own->second.envelope);
    ++stats_.retransmissions;
  }
}

}  // namespace pbft::core
