#include "replica/core/core.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/envelope.h"

namespace pbft {
namespace {

bool ParseDigest(const std::string& bytes, Digest* out) {
  auto d = Digest::FromBytes(bytes);
  if (!d.ok()) return false;
  *out = *d;
  return true;
}

using ledger::BatchOf;
using ledger::RequestBytes;

// The signed header of a PRE-PREPARE, without the batch beside it: what a
// prepared certificate and a NEW-VIEW's O carry (§4.4).
v1::Envelope Header(const v1::Envelope& pre_prepare) {
  v1::Envelope h;
  h.set_type(pre_prepare.type());
  h.set_sender(pre_prepare.sender());
  h.set_payload(pre_prepare.payload());
  h.set_signature(pre_prepare.signature());
  return h;
}

// The (client, number) of each request of a batch whose envelopes were
// checked (by this replica, or by the f+1 correct ones that prepared it).
std::vector<std::pair<ClientId, RequestNumber>> RequestKeys(
    const google::protobuf::RepeatedPtrField<v1::Envelope>& batch) {
  std::vector<std::pair<ClientId, RequestNumber>> out;
  for (const v1::Envelope& re : batch) {
    v1::Request r;
    if (!r.ParseFromString(re.payload())) continue;
    out.emplace_back(ClientId(r.client_id()),
                     RequestNumber(r.request_number()));
  }
  return out;
}

}  // namespace

const char* DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kMalformed:
      return "malformed";
    case DropReason::kWrongSender:
      return "wrong_sender";
    case DropReason::kWrongView:
      return "wrong_view";
    case DropReason::kOutOfWindow:
      return "out_of_window";
    case DropReason::kConflictingPrePrepare:
      return "conflicting_pre_prepare";
    case DropReason::kDigestMismatch:
      return "digest_mismatch";
    case DropReason::kBadRequest:
      return "bad_request";
    case DropReason::kBatchTooLarge:
      return "batch_too_large";
    case DropReason::kTimestamp:
      return "timestamp";
    case DropReason::kConflictingVote:
      return "conflicting_vote";
    case DropReason::kBadCertificate:
      return "bad_certificate";
    case DropReason::kStaleRequest:
      return "stale_request";
    case DropReason::kQueueFull:
      return "queue_full";
    case DropReason::kUnsupported:
      return "unsupported";
    case DropReason::kBadViewChange:
      return "bad_view_change";
    case DropReason::kBadNewView:
      return "bad_new_view";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

uint64_t Stats::dropped_total() const {
  uint64_t t = 0;
  for (uint64_t d : dropped) t += d;
  return t;
}

absl::Status Options::Validate() const {
  if (absl::Status s = ledger::ValidateReplicaCount(n, f); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("options.n: ", s.message()));
  }
  if (id.value() >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.id: ", id.value(), " is not below n = ", n));
  }
  const auto& p = params;
  if (p.checkpoint_interval == 0) {
    return absl::InvalidArgumentError(
        "options.params.checkpoint_interval: must be > 0");
  }
  if (p.watermark_window % p.checkpoint_interval != 0 ||
      p.watermark_window < 2 * p.checkpoint_interval) {
    return absl::InvalidArgumentError(
        "options.params.watermark_window: must be a multiple of "
        "checkpoint_interval and at least twice it");
  }
  if (p.batch_requests_max == 0 || p.batch_bytes_max == 0) {
    return absl::InvalidArgumentError(
        "options.params.batch_requests_max/batch_bytes_max: must be > 0");
  }
  if (p.request_queue_max == 0) {
    return absl::InvalidArgumentError(
        "options.params.request_queue_max: must be > 0");
  }
  if (p.view_change_timeout_ticks == 0 || retransmit_ticks == 0 ||
      fetch_interval_ticks == 0 || fetch_blocks_max == 0 ||
      idle_probe_interval_ticks == 0) {
    return absl::InvalidArgumentError(
        "options: view_change_timeout_ticks, retransmit_ticks, "
        "fetch_interval_ticks, fetch_blocks_max and idle_probe_interval_ticks "
        "must be > 0");
  }
  return absl::OkStatus();
}

Core::Core(Options options, const Signer* signer, const Verifier* verifier)
    : options_(std::move(options)),
      signer_(signer),
      verifier_(verifier),
      quorum_(2 * options_.f + 1),
      view_change_timeout_ticks_(options_.params.view_change_timeout_ticks),
      highest_seq_seen_(options_.n),
      highest_commit_seen_(options_.n),
      highest_view_seen_(options_.n),
      new_view_offered_until_(options_.n, 0) {
  fetch_bad_until_.assign(options_.n, 0);
  heard_.assign(options_.n, false);
  CHECK_OK(options_.Validate());
  CHECK(signer_ != nullptr);
  CHECK(verifier_ != nullptr);
  stable_proof_.set_seq(0);
}

Ready Core::TakeReady() {
  Ready out = std::move(ready_);
  ready_ = Ready();
  return out;
}

void Core::Broadcast(v1::Envelope e) {
  Outbound o;
  o.broadcast = true;
  o.envelope = std::move(e);
  ready_.messages.push_back(std::move(o));
}

void Core::SendTo(ReplicaId to, v1::Envelope e) {
  CHECK_NE(to, options_.id);
  Outbound o;
  o.to = to;
  o.envelope = std::move(e);
  ready_.messages.push_back(std::move(o));
}

void Core::NoteSeq(uint64_t sender, Seq s, std::vector<Seq>* seen) {
  if (sender >= options_.n) return;
  Seq& h = (*seen)[sender];
  if (s > h) h = s;
}

// The (f+1)-th highest seq reported by distinct replicas: at least one
// correct replica has seen a seq this high, so f liars cannot fake it.
Seq Core::HighestSeenBy(const std::vector<Seq>& per_replica) const {
  std::vector<Seq> seen = per_replica;
  std::sort(seen.begin(), seen.end(), std::greater<Seq>());
  return seen[options_.f];
}

void Core::NoteView(uint64_t sender, View v) {
  if (sender >= options_.n) return;
  View& seen = highest_view_seen_[sender];
  if (v > seen) seen = v;
}

// A correct replica sends PRE-PREPARE, PREPARE, COMMIT and FETCH_REQUEST of
// view v only while active in v, and 2f+1 COMMITs of view v prove that f+1
// correct replicas were: either way a valid NEW-VIEW for v exists.
View Core::ProvenView() const {
  std::vector<View> seen = highest_view_seen_;
  std::sort(seen.begin(), seen.end(), std::greater<View>());
  return std::max(seen[options_.f], certified_view_);
}

View Core::cluster_view() const {
  return view_active_ ? std::max(view_, ProvenView()) : ProvenView();
}

Seq Core::cluster_head() const {
  Seq head = std::max(last_executed_, BehindEvidence());
  if (!fetched_proofs_.empty()) {
    head = std::max(head, fetched_proofs_.rbegin()->first);
  }
  return head;
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

// --- Inputs -----------------------------------------------------------------

void Core::Step(const v1::Envelope& e) {
  if (e.type() == v1::MESSAGE_TYPE_REQUEST) {
    OnRequest(e);
    return;
  }
  if (e.sender() >= options_.n || e.sender() == options_.id.value()) {
    Drop(DropReason::kWrongSender);
    return;
  }
  NoteHeard(e.sender());
  switch (e.type()) {
    case v1::MESSAGE_TYPE_PRE_PREPARE:
      HandlePrePrepare(e);
      break;
    case v1::MESSAGE_TYPE_PREPARE:
      HandlePrepare(e);
      break;
    case v1::MESSAGE_TYPE_COMMIT:
      HandleCommit(e);
      break;
    case v1::MESSAGE_TYPE_CHECKPOINT:
      HandleCheckpoint(e);
      break;
    case v1::MESSAGE_TYPE_FETCH_REQUEST:
      HandleFetchRequest(e);
      break;
    case v1::MESSAGE_TYPE_FETCH_RESPONSE:
      HandleFetchResponse(e);
      break;
    case v1::MESSAGE_TYPE_VIEW_CHANGE:
      HandleViewChange(e);
      break;
    case v1::MESSAGE_TYPE_NEW_VIEW:
      HandleNewView(e);
      break;
    default:
      Drop(DropReason::kUnsupported);
      break;
  }
}

void Core::OnRequest(const v1::Envelope& e) {
  v1::Request r;
  if (e.type() != v1::MESSAGE_TYPE_REQUEST || !r.ParseFromString(e.payload()) ||
      r.client_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  if (r.read_only()) {  // §5.1 read-only requests: not in this core yet.
    Drop(DropReason::kUnsupported);
    return;
  }
  const ClientId c(r.client_id());
  const RequestNumber t(r.request_number());
  if (!AdmitNumber(c, t)) return;
  const RequestKey key{c.value(), t.value()};
  auto qi = queue_index_.find(key);
  if (qi != queue_index_.end()) {
    // A copy of a queued request waits for that request's reply; another
    // request under the same number never executes: say so.
    if (queue_.at(qi->second).envelope.payload() != e.payload()) {
      Drop(DropReason::kBadRequest);
      Reject(c, t, v1::REJECT_REASON_DUPLICATE_REQUEST_NUMBER);
      return;
    }
  } else {
    // A request this primary already put in a batch is not queued again
    // (the batch keeps the view-change timer running).
    if (is_primary() && assigned_.contains(key)) {
      UpdateViewChangeTimer(false);
      return;
    }
    if (!Enqueue(e, c, t)) return;
  }
  if (!view_active_) return;  // Held; forwarded once the new view starts.
  if (is_primary()) {
    MaybeCutBatches();
    UpdateViewChangeTimer(false);
  } else {
    // Castro–Liskov §4.1: a backup forwards a request it has not seen executed
    // to the primary (and holds it for its view-change timer).
    SendTo(primary(), e);
    ++stats_.requests_forwarded;
    UpdateViewChangeTimer(false);
  }
}

// Castro–Liskov §4.1, client requests: equal to the last executed -> resend the
// stored reply; lower, or at or below a number already committed for execution
// -> it never executes: answer at once with a stale rejection naming the last
// number (never silence); higher -> order it. True if it may be ordered.
bool Core::AdmitNumber(ClientId c, RequestNumber t) {
  auto cit = clients_.find(c.value());
  if (cit == clients_.end()) return true;
  ClientRecord& rec = cit->second;
  if (t == rec.last_executed && rec.reply) {
    ready_.replies.push_back({c, *rec.reply});
    return false;
  }
  if (t > rec.last_ordered) return true;
  // Committed for execution here and not executed yet: its reply (or its
  // stale rejection, if a higher number of the client runs first) comes
  // from OnExecuted.
  if (t > rec.last_executed && HandedOut(c, t)) return false;
  Drop(DropReason::kStaleRequest);
  RejectStale(c, t);
  return false;
}

// Whether the request (c, t) is in a batch handed out for
// execution and not yet executed. At most L slots are looked at.
bool Core::HandedOut(ClientId c, RequestNumber t) const {
  for (auto it = log_.upper_bound(last_executed_);
       it != log_.end() && it->first <= last_handed_out_; ++it) {
    for (const auto& [rc, rt] : it->second.requests) {
      if (rc == c && rt == t) return true;
    }
  }
  return false;
}

// Queues a new request unless it cannot be ordered (too large, queue full);
// those are rejected at once. True if queued.
bool Core::Enqueue(const v1::Envelope& e, ClientId c, RequestNumber t) {
  const size_t bytes = RequestBytes(e);
  if (bytes > options_.params.batch_bytes_max) {
    Drop(DropReason::kBatchTooLarge);
    Reject(c, t, v1::REJECT_REASON_TOO_LARGE);
    return false;
  }
  const auto& p = options_.params;
  // One client's share first: a client over it is refused, nobody else.
  ClientShare& share = queued_by_client_[c.value()];
  if (share.requests >= std::min(p.client_queue_max, p.request_queue_max) ||
      share.bytes + bytes > p.client_queue_bytes_max) {
    if (share.requests == 0) queued_by_client_.erase(c.value());
    Drop(DropReason::kQueueFull);
    Reject(c, t, v1::REJECT_REASON_CLIENT_SHARE_FULL);
    return false;
  }
  if (queue_.size() >= p.request_queue_max ||
      queue_bytes_ + bytes > p.request_queue_bytes_max) {
    if (share.requests == 0) queued_by_client_.erase(c.value());
    Drop(DropReason::kQueueFull);
    Reject(c, t, v1::REJECT_REASON_QUEUE_FULL);
    return false;
  }
  const uint64_t arrival = next_arrival_++;
  queue_[arrival] = Queued{e, c, t, tick_, bytes};
  queue_index_[RequestKey{c.value(), t.value()}] = arrival;
  queue_bytes_ += bytes;
  ++share.requests;
  share.bytes += bytes;
  return true;
}

void Core::Dequeue(std::map<uint64_t, Queued>::iterator it) {
  const Queued& q = it->second;
  auto share = queued_by_client_.find(q.client.value());
  CHECK(share != queued_by_client_.end());
  CHECK_GE(share->second.bytes, q.bytes);
  CHECK_GT(share->second.requests, 0u);
  share->second.bytes -= q.bytes;
  if (--share->second.requests == 0) queued_by_client_.erase(share);
  queue_bytes_ -= q.bytes;
  queue_index_.erase(RequestKey{q.client.value(), q.number.value()});
  queue_.erase(it);
}

void Core::Tick(uint64_t now_ms) {
  ++tick_;
  now_ms_ = now_ms;
  if (view_active_ && is_primary()) MaybeCutBatches();
  if (tick_ % options_.retransmit_ticks == 0) Retransmit();
  if (tick_ % options_.fetch_interval_ticks == 0) MaybeFetch();
  if (tick_ % kBodyFetchIntervalTicks == 0) MaybeFetchBody();
  if (view_change_timer_ticks_ > 0) {
    --view_change_timer_ticks_;
    if (view_change_timer_ticks_ == 0) {
      OnViewChangeTimer();
    } else if (view_active_ && !timer_deferred_ &&
               view_change_timer_ticks_ == view_change_timeout_ticks_ / 2) {
      ProbeBeforeTimeout();
    }
  }
}

void Core::NoteHeard(uint32_t sender) {
  if (heard_[sender]) return;
  heard_[sender] = true;
  ++heard_count_;
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
}

void Core::OnViewChangeTimer() {
  if (!HeardFromQuorum()) {
    // Just started: the peers' links to this replica are still coming up
    // (a restarted replica hears nothing for a while), so it cannot tell a
    // stuck primary from its own deafness, and a VIEW-CHANGE could not
    // gather 2f+1 anyway. Ask a peer not heard from yet, and wait (ledgerd
    // soak: a replica restarted under load timed out alone before its
    // first message arrived, and stayed in the next view by itself).
    ++stats_.view_change_timer_held;
    view_change_timer_ticks_ = std::max<uint64_t>(
        1, std::min<uint64_t>(options_.fetch_interval_ticks,
                              view_change_timeout_ticks_ / 4));
    for (uint32_t i = 1; i < options_.n; ++i) {
      const uint32_t p = (fetch_peer_ + i) % options_.n;
      if (p != options_.id.value() && !heard_[p]) {
        fetch_peer_ = p;
        break;
      }
    }
    SendFetch();
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

void Core::RestoreClient(ClientId client_id, RequestNumber request_number,
                         std::string result) {
  ClientRecord& rec = clients_[client_id.value()];
  if (request_number < rec.last_executed) return;
  rec.last_executed = request_number;
  rec.last_ordered = std::max(rec.last_ordered, request_number);
  rec.result = std::move(result);
  SignReply(client_id, &rec);  // Stored; resent on a duplicate request.
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
    if (r.request_number > rec.last_executed || !rec.reply) {
      rec.last_executed = r.request_number;
      rec.last_ordered = std::max(rec.last_ordered, r.request_number);
      rec.result = std::move(r.result);
      SignReply(r.client_id, &rec);
      ready_.replies.push_back({r.client_id, *rec.reply});
    } else {
      ready_.replies.push_back({r.client_id, *rec.reply});
    }
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

// --- Requests and batching (§4.2 step 1) ------------------------------------

void Core::SignReply(ClientId client, ClientRecord* rec) {
  v1::Reply reply;
  reply.set_view(view_.value());
  reply.set_request_number(rec->last_executed.value());
  reply.set_client_id(client.value());
  reply.set_replica_id(options_.id.value());
  reply.set_result(rec->result);
  rec->reply = signer_->Sign(v1::MESSAGE_TYPE_REPLY, reply.SerializeAsString());
}

void Core::Reject(ClientId c, RequestNumber t, v1::RejectReason reason,
                  RequestNumber last) {
  v1::Reply reply;
  reply.set_view(view_.value());
  reply.set_request_number(t.value());
  reply.set_client_id(c.value());
  reply.set_replica_id(options_.id.value());
  reply.set_rejected(reason);
  if (reason == v1::REJECT_REASON_STALE_REQUEST_NUMBER) {
    reply.set_last_request_number(last.value());
  }
  ready_.replies.push_back(
      {c, signer_->Sign(v1::MESSAGE_TYPE_REPLY, reply.SerializeAsString())});
}

void Core::RejectStale(ClientId c, RequestNumber t) {
  const ClientRecord& rec = clients_[c.value()];
  const RequestNumber last = std::max(rec.last_executed, rec.last_ordered);
  CHECK_LT(t, last);
  Reject(c, t, v1::REJECT_REASON_STALE_REQUEST_NUMBER, last);
}

void Core::RemoveQueuedUpTo(ClientId c, RequestNumber t) {
  auto it = queue_index_.lower_bound(RequestKey{c.value(), 0});
  while (it != queue_index_.end() && it->first.first == c.value() &&
         it->first.second <= t.value()) {
    auto q = queue_.find(it->second);
    CHECK(q != queue_.end());
    const RequestNumber number = q->second.number;
    ++it;  // Dequeue erases the index entry.
    Dequeue(q);
    // Below a number committed for execution: it never executes.
    if (number < t)
      Reject(c, number, v1::REJECT_REASON_STALE_REQUEST_NUMBER, t);
  }
}

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
  const Digest d = ledger::BatchDigest(batch);
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

// --- Normal case (§4.2 steps 2-5) -------------------------------------------

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
  const Digest computed = ledger::BatchDigest(batch);
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
  if (!pp.ParseFromString(e.payload()) || !ParseDigest(pp.batch_digest(), &d) ||
      pp.legacy_requests_size() > 0) {
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
  v1::Prepare prepare;
  prepare.set_view(v.value());
  prepare.set_seq(s.value());
  prepare.set_batch_digest(d.ToBytes());
  prepare.set_replica_id(options_.id.value());
  v1::Envelope pe =
      signer_->Sign(v1::MESSAGE_TYPE_PREPARE, prepare.SerializeAsString());
  slot.prepares[options_.id] = Vote{d, pe};
  slot.own_prepare = pe;
  ready_.persist.entries.push_back(e);
  ready_.persist.entries.push_back(pe);
  Broadcast(std::move(pe));
  CheckPrepared(s);
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
                                    std::map<ReplicaId, Vote> Slot::*votes,
                                    bool backups_only) {
  VoteMessage m;
  Digest d;
  if (!m.ParseFromString(e.payload()) || !ParseDigest(m.batch_digest(), &d) ||
      m.replica_id() != e.sender()) {
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
  uint32_t matching = 0;
  for (const auto& [sender, vote] : slot.prepares) {
    if (sender != PrimaryOf(slot.view) && vote.digest == slot.digest) {
      ++matching;
    }
  }
  if (matching < quorum_ - 1) return;
  slot.prepared = true;
  RecordPreparedCert(s, slot);
  v1::Commit commit;
  commit.set_view(slot.view.value());
  commit.set_seq(s.value());
  commit.set_batch_digest(slot.digest.ToBytes());
  commit.set_replica_id(options_.id.value());
  v1::Envelope ce =
      signer_->Sign(v1::MESSAGE_TYPE_COMMIT, commit.SerializeAsString());
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
  std::vector<const v1::Envelope*> matching;
  for (const auto& [sender, vote] : slot.commits) {
    if (vote.digest == slot.digest) matching.push_back(&vote.envelope);
  }
  if (matching.size() < quorum_) return;
  slot.committed = true;
  slot.certificate.Clear();
  for (uint32_t i = 0; i < quorum_; ++i) {
    *slot.certificate.add_commits() = *matching[i];
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

// --- Checkpoints and garbage collection (§4.3) ------------------------------

void Core::TakeCheckpoint(Seq s, const Digest& state_digest) {
  auto fp = fetched_proofs_.find(s);
  // Beyond the window (state transfer): no vote, unless a fetched proof
  // for this seq lets the checkpoint become stable at once.
  if (s > high_watermark() && fp == fetched_proofs_.end()) return;
  v1::Checkpoint cp;
  cp.set_seq(s.value());
  cp.set_state_digest(state_digest.ToBytes());
  cp.set_replica_id(options_.id.value());
  v1::Envelope e =
      signer_->Sign(v1::MESSAGE_TYPE_CHECKPOINT, cp.SerializeAsString());
  checkpoints_[s][options_.id] = Vote{state_digest, e};
  ready_.persist.entries.push_back(e);
  Broadcast(std::move(e));
  if (fp != fetched_proofs_.end()) {
    Digest d;
    CHECK(ParseDigest(fp->second.state_digest(), &d));
    if (d == state_digest) {
      std::vector<v1::Envelope> cps(fp->second.checkpoints().begin(),
                                    fp->second.checkpoints().end());
      MakeStable(s, d, std::move(cps));
      return;
    }
    Drop(DropReason::kBadCertificate);  // Our state disagrees with a proof.
  }
  CheckStable(s);
}

void Core::HandleCheckpoint(const v1::Envelope& e) {
  v1::Checkpoint m;
  Digest d;
  if (!m.ParseFromString(e.payload()) || !ParseDigest(m.state_digest(), &d) ||
      m.replica_id() != e.sender() || m.seq() == 0 ||
      m.seq() % options_.params.checkpoint_interval != 0) {
    Drop(DropReason::kMalformed);
    return;
  }
  const Seq s(m.seq());
  NoteSeq(e.sender(), s, &highest_seq_seen_);
  if (s <= low_watermark_) return;  // Old: already stable here.
  if (s > high_watermark()) {
    Drop(DropReason::kOutOfWindow);
    return;
  }
  auto& votes = checkpoints_[s];
  const ReplicaId sender(static_cast<uint32_t>(e.sender()));
  auto [vit, inserted] = votes.try_emplace(sender, Vote{d, e});
  if (!inserted) {
    if (vit->second.digest != d) Drop(DropReason::kConflictingVote);
    return;
  }
  CheckStable(s);
}

// §4.3: stable at 2f+1 matching CHECKPOINTs, own included (a replica that
// has not reached s is behind and catches up by fetching).
void Core::CheckStable(Seq s) {
  if (s <= low_watermark_) return;
  auto it = checkpoints_.find(s);
  if (it == checkpoints_.end()) return;
  auto own = it->second.find(options_.id);
  if (own == it->second.end()) return;
  const Digest d = own->second.digest;
  std::vector<v1::Envelope> proof;
  for (const auto& [sender, vote] : it->second) {
    if (vote.digest == d) proof.push_back(vote.envelope);
  }
  if (proof.size() < quorum_) return;
  proof.resize(quorum_);
  MakeStable(s, d, std::move(proof));
}

void Core::MakeStable(Seq s, const Digest& digest,
                      std::vector<v1::Envelope> checkpoints) {
  CHECK_GT(s, low_watermark_);
  CHECK_LE(s, last_executed_);
  CHECK_GE(checkpoints.size(), quorum_);
  stable_proof_.Clear();
  stable_proof_.set_seq(s.value());
  stable_proof_.set_state_digest(digest.ToBytes());
  for (v1::Envelope& e : checkpoints) {
    *stable_proof_.add_checkpoints() = std::move(e);
  }
  low_watermark_ = s;
  // Discard the log and older checkpoints at or below s.
  log_.erase(log_.begin(), log_.upper_bound(s));
  checkpoints_.erase(checkpoints_.begin(), checkpoints_.lower_bound(s));
  fetched_proofs_.erase(fetched_proofs_.begin(),
                        fetched_proofs_.upper_bound(s));
  prepared_certs_.erase(prepared_certs_.begin(),
                        prepared_certs_.upper_bound(s));
  bodies_.erase(bodies_.begin(), bodies_.upper_bound(s));
  if (last_assigned_ < s) last_assigned_ = s;
  ++stats_.checkpoints_stable;
  ready_.persist.stable_checkpoint = stable_proof_;
  if (view_active_) {
    InstallPendingO();
    if (is_primary()) MaybeCutBatches();
  }
}

// --- Loss recovery: retransmission and fetching ------------------------------

void Core::Retransmit() {
  if (!view_active_ && own_view_change_) {
    Broadcast(*own_view_change_);
    ++stats_.retransmissions;
  }
  for (const auto& [s, slot] : log_) {
    if (!view_active_) break;
    if (s <= last_executed_) continue;
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
    auto own = votes.find(options_.id);
    if (own == votes.end()) continue;
    Broadcast(own->second.envelope);
    ++stats_.retransmissions;
  }
}

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
// behind as well would answer nothing useful).
void Core::NextFetchPeer() {
  for (const bool ahead_only : {true, false}) {
    for (uint32_t i = 1; i <= options_.n; ++i) {
      const uint32_t p = (fetch_peer_ + i) % options_.n;
      if (p != options_.id.value() && fetch_bad_until_[p] <= tick_ &&
          (!ahead_only || highest_seq_seen_[p] > last_executed_)) {
        fetch_peer_ = p;
        return;
      }
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

bool Core::VerifyCheckpointProof(const v1::CheckpointProof& proof,
                                 Digest* digest) const {
  if (!ParseDigest(proof.state_digest(), digest) || proof.seq() == 0 ||
      proof.seq() % options_.params.checkpoint_interval != 0) {
    return false;
  }
  std::vector<uint64_t> senders;
  for (const v1::Envelope& e : proof.checkpoints()) {
    v1::Checkpoint cp;
    if (e.type() != v1::MESSAGE_TYPE_CHECKPOINT || e.sender() >= options_.n ||
        !cp.ParseFromString(e.payload()) || cp.replica_id() != e.sender() ||
        cp.seq() != proof.seq() || cp.state_digest() != proof.state_digest() ||
        std::find(senders.begin(), senders.end(), e.sender()) !=
            senders.end() ||
        !verifier_->Verify(e)) {
      return false;
    }
    senders.push_back(e.sender());
  }
  return senders.size() >= quorum_;
}

// A certified batch is committed at 2f+1 replicas' word: the PRE-PREPARE
// signed by the primary of its view, the batch matching its digest, and
// 2f+1 valid COMMITs from distinct replicas for (view, seq, digest). The
// client signatures inside are not re-checked: f+1 correct replicas
// prepared the batch, and they checked them.
bool Core::VerifyCertifiedBatch(const v1::CertifiedBatch& b, v1::PrePrepare* pp,
                                Digest* d) {
  const v1::Envelope& pe = b.pre_prepare();
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE ||
      !pp->ParseFromString(pe.payload()) ||
      !ParseDigest(pp->batch_digest(), d) ||
      pe.sender() != PrimaryOf(View(pp->view())).value() ||
      ledger::BatchDigest(BatchOf(pe, *pp)) != *d || !verifier_->Verify(pe)) {
    return false;
  }
  std::vector<uint64_t> senders;
  for (const v1::Envelope& e : b.certificate().commits()) {
    v1::Commit c;
    if (e.type() != v1::MESSAGE_TYPE_COMMIT || e.sender() >= options_.n ||
        !c.ParseFromString(e.payload()) || c.replica_id() != e.sender() ||
        c.view() != pp->view() || c.seq() != pp->seq() ||
        c.batch_digest() != pp->batch_digest() ||
        std::find(senders.begin(), senders.end(), e.sender()) !=
            senders.end() ||
        !verifier_->Verify(e)) {
      return false;
    }
    senders.push_back(e.sender());
  }
  return senders.size() >= quorum_;
}

// State transfer, limited form (§4.3): a replica that fell behind adopts
// certified batches from a peer. Batches above its window are accepted only
// up to a verified stable checkpoint proof from the same peer, so the log
// stays bounded by L + fetch_blocks_max and no one can push it further.
void Core::HandleFetchResponse(const v1::Envelope& e) {
  v1::FetchResponse resp;
  if (!resp.ParseFromString(e.payload()) || resp.replica_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  const bool asked = fetch_outstanding_ && e.sender() == fetch_peer_;
  if (asked) fetch_outstanding_ = false;
  // A peer that serves garbage is counted, skipped for a while, and (if
  // this was the answer we waited for) another peer is asked at once.
  auto bad_peer = [&]() {
    Drop(DropReason::kBadCertificate);
    ++stats_.fetch_bad_responses;
    fetch_bad_until_[e.sender()] = tick_ + kFetchBadPeerTicks;
    if (asked && last_handed_out_ == last_executed_) {
      for (uint32_t i = 0; i < options_.n; ++i) {
        fetch_peer_ = (fetch_peer_ + 1) % options_.n;
        if (fetch_peer_ != options_.id.value() &&
            fetch_bad_until_[fetch_peer_] <= tick_) {
          SendFetch();
          return;
        }
      }
    }
  };
  if (resp.has_stable_checkpoint() &&
      Seq(resp.stable_checkpoint().seq()) > low_watermark_) {
    Digest d;
    const Seq s(resp.stable_checkpoint().seq());
    if (!VerifyCheckpointProof(resp.stable_checkpoint(), &d)) {
      bad_peer();
      return;  // Trust nothing else from this response.
    }
    if (s <= last_executed_) {
      auto cit = checkpoints_.find(s);
      if (cit != checkpoints_.end()) {
        auto own = cit->second.find(options_.id);
        if (own != cit->second.end() && own->second.digest == d) {
          std::vector<v1::Envelope> cps(
              resp.stable_checkpoint().checkpoints().begin(),
              resp.stable_checkpoint().checkpoints().end());
          MakeStable(s, d, std::move(cps));
        }
      }
    } else {
      // Possibly far beyond the window (state transfer): batches up to it
      // may be adopted, checked one by one by their commit certificates.
      AdoptFetchedProof(s, resp.stable_checkpoint());
    }
  }
  const Seq limit = FetchLimit();
  // Beyond H only a bounded run past what is executed (the log stays
  // bounded by L + 2 * fetch_blocks_max).
  const Seq far_limit(last_executed_.value() + 2 * options_.fetch_blocks_max);
  bool adopted = false;
  if (asked) {
    fetch_response_full_ =
        static_cast<uint64_t>(resp.batches_size()) >= options_.fetch_blocks_max;
  }
  for (const v1::CertifiedBatch& b : resp.batches()) {
    v1::PrePrepare pp;
    Digest d;
    if (!VerifyCertifiedBatch(b, &pp, &d)) {
      bad_peer();
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
      bad_peer();
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
  if (asked && adopted) fetch_continue_ = true;
  if (resp.has_batch_pre_prepare()) {
    HandleFetchedBody(resp.batch_pre_prepare(), e.sender());
  }
  HandOutCommitted();
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

void Core::AdoptFetchedProof(Seq s, const v1::CheckpointProof& proof) {
  if (fetched_proofs_.count(s)) return;
  fetched_proofs_[s] = proof;
  // Durable before any batch beyond H executes (Ready: persist first).
  for (const v1::Envelope& c : proof.checkpoints()) {
    ready_.persist.entries.push_back(c);
  }
  while (fetched_proofs_.size() > kFetchedProofsMax) {
    fetched_proofs_.erase(fetched_proofs_.begin());
  }
}

Seq Core::FetchLimit() const {
  Seq limit = high_watermark();
  if (!fetched_proofs_.empty()) {
    limit = std::max(limit, fetched_proofs_.rbegin()->first);
  }
  return limit;
}

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

// --- View change (§4.4)
// -------------------------------------------------------

void Core::RecordPreparedCert(Seq s, const Slot& slot) {
  PreparedCert pc;
  pc.view = slot.view;
  pc.digest = slot.digest;
  // §4.4: the certificate carries the signed header; the body stays here.
  *pc.cert.mutable_pre_prepare() = Header(slot.pre_prepare);
  for (const auto& [sender, vote] : slot.prepares) {
    if (sender == PrimaryOf(slot.view) || vote.digest != slot.digest) continue;
    *pc.cert.add_prepares() = vote.envelope;
    // Crash recovery: the certificate must survive a restart so that a
    // later VIEW-CHANGE still carries it; our own PREPARE is durable
    // already, the others' become durable with the COMMIT this enables.
    if (sender != options_.id) ready_.persist.entries.push_back(vote.envelope);
    if (static_cast<uint32_t>(pc.cert.prepares_size()) == quorum_ - 1) break;
  }
  prepared_certs_[s] = std::move(pc);
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
  v1::Envelope e = BuildViewChange();
  ViewChangeMsg m;
  m.view = target;
  m.envelope = e;
  CHECK(m.vc.ParseFromString(e.payload()));
  view_changes_[options_.id] = std::move(m);
  own_view_change_ = e;
  ++stats_.view_changes_started;
  Broadcast(std::move(e));
  MaybeStartNewViewTimer();
  MaybeSendNewView();
  if (!view_active_) MaybeJoin();
}

// A prepared certificate is well formed: the PRE-PREPARE header (no batch)
// signed by the primary of its view (< target), seq in (low, low + L], and
// 2f matching PREPAREs from distinct backups.
bool Core::VerifyPreparedCert(const v1::PreparedCertificate& cert, View target,
                              Seq low) const {
  const v1::Envelope& pe = cert.pre_prepare();
  v1::PrePrepare pp;
  Digest d;
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE || pe.batch_size() > 0 ||
      !pp.ParseFromString(pe.payload()) || pp.legacy_requests_size() > 0 ||
      !ParseDigest(pp.batch_digest(), &d)) {
    return false;
  }
  const View v(pp.view());
  const Seq s(pp.seq());
  if (v >= target || pe.sender() != PrimaryOf(v).value() || s <= low ||
      s > low + options_.params.watermark_window ||
      static_cast<uint32_t>(cert.prepares_size()) > options_.n ||
      !verifier_->Verify(pe)) {
    return false;
  }
  std::vector<uint64_t> senders;
  for (const v1::Envelope& e : cert.prepares()) {
    v1::Prepare m;
    if (e.type() != v1::MESSAGE_TYPE_PREPARE || e.sender() >= options_.n ||
        e.sender() == PrimaryOf(v).value() || !m.ParseFromString(e.payload()) ||
        m.replica_id() != e.sender() || m.view() != pp.view() ||
        m.seq() != pp.seq() || m.batch_digest() != pp.batch_digest() ||
        std::find(senders.begin(), senders.end(), e.sender()) !=
            senders.end() ||
        !verifier_->Verify(e)) {
      return false;
    }
    senders.push_back(e.sender());
  }
  return senders.size() >= quorum_ - 1;
}

// §4.4 valid VIEW-CHANGE: C proves s* (none for s* = 0), every certificate
// in P is well formed, at most one per seq, ascending, within (s*, s*+L].
bool Core::VerifyViewChange(const v1::Envelope& e, View target,
                            v1::ViewChange* vc) const {
  if (e.type() != v1::MESSAGE_TYPE_VIEW_CHANGE || e.sender() >= options_.n ||
      !vc->ParseFromString(e.payload()) || vc->replica_id() != e.sender() ||
      View(vc->new_view()) != target) {
    return false;
  }
  const v1::CheckpointProof& proof = vc->stable_checkpoint();
  const Seq low(proof.seq());
  if (low == Seq(0)) {
    if (proof.checkpoints_size() != 0) return false;
  } else {
    Digest d;
    if (!VerifyCheckpointProof(proof, &d)) return false;
  }
  if (static_cast<uint32_t>(vc->prepared_size()) >
      options_.params.watermark_window) {
    return false;
  }
  Seq prev = low;
  for (const v1::PreparedCertificate& cert : vc->prepared()) {
    if (!VerifyPreparedCert(cert, target, low)) return false;
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(cert.pre_prepare().payload()));
    if (Seq(pp.seq()) <= prev) return false;
    prev = Seq(pp.seq());
  }
  return true;
}

// §4.4: min-s = the highest s*; max-s = the highest certified seq; for each
// seq between, the digest of the highest-view certificate, else null.
void Core::ComputeO(const std::vector<const v1::ViewChange*>& vcs, Seq* min_s,
                    const v1::CheckpointProof** min_proof,
                    std::vector<OEntry>* o) const {
  CHECK(!vcs.empty());
  *min_s = Seq(0);
  *min_proof = nullptr;
  for (const v1::ViewChange* vc : vcs) {
    if (*min_proof == nullptr || Seq(vc->stable_checkpoint().seq()) > *min_s) {
      *min_s = Seq(vc->stable_checkpoint().seq());
      *min_proof = &vc->stable_checkpoint();
    }
  }
  struct Best {
    View view;
    Digest digest;
    uint64_t timestamp_ms;
    const v1::Envelope* pre_prepare;
  };
  std::map<Seq, Best> best;
  for (const v1::ViewChange* vc : vcs) {
    for (const v1::PreparedCertificate& cert : vc->prepared()) {
      v1::PrePrepare pp;
      Digest d;
      CHECK(pp.ParseFromString(cert.pre_prepare().payload()));
      CHECK(ParseDigest(pp.batch_digest(), &d));
      const Seq s(pp.seq());
      if (s <= *min_s) continue;
      auto it = best.find(s);
      if (it == best.end() || View(pp.view()) > it->second.view) {
        best[s] =
            Best{View(pp.view()), d, pp.timestamp_ms(), &cert.pre_prepare()};
      }
    }
  }
  Seq max_s = *min_s;
  if (!best.empty()) max_s = std::max(max_s, best.rbegin()->first);
  o->clear();
  uint64_t ts = 0;  // A null batch takes the timestamp of the one before.
  for (Seq s = min_s->next(); s <= max_s; s = s.next()) {
    auto it = best.find(s);
    if (it != best.end()) {
      ts = std::max(ts, it->second.timestamp_ms);
      o->push_back({s, it->second.digest, it->second.timestamp_ms,
                    it->second.pre_prepare});
    } else {
      o->push_back({s, ledger::NullBatchDigest(), ts, nullptr});
    }
  }
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
  if (!VerifyViewChange(e, target, &m.vc)) {
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
  if (higher.size() < options_.f + 1) return;
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
  Seq min_s;
  const v1::CheckpointProof* min_proof = nullptr;
  std::vector<OEntry> o;
  ComputeO(vcs, &min_s, &min_proof, &o);
  v1::NewView nv;
  nv.set_view(view_.value());
  for (const ViewChangeMsg* m : set) *nv.add_view_changes() = m->envelope;
  std::vector<v1::Envelope> pps;
  for (const OEntry& oe : o) {
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
  const v1::CheckpointProof proof = *min_proof;  // view_changes_ changes.
  v1::Envelope ne =
      signer_->Sign(v1::MESSAGE_TYPE_NEW_VIEW, nv.SerializeAsString());
  ++stats_.new_views_sent;
  Broadcast(ne);
  EnterView(view_, ne, std::move(pps), min_s, proof);
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
  if (static_cast<uint32_t>(nv.view_changes_size()) < quorum_ ||
      static_cast<uint32_t>(nv.view_changes_size()) > options_.n ||
      static_cast<uint64_t>(nv.pre_prepares_size()) >
          options_.params.watermark_window) {
    Drop(DropReason::kBadNewView);
    return;
  }
  std::vector<v1::ViewChange> parsed(nv.view_changes_size());
  std::vector<uint64_t> senders;
  for (int i = 0; i < nv.view_changes_size(); ++i) {
    const v1::Envelope& ve = nv.view_changes(i);
    if (std::find(senders.begin(), senders.end(), ve.sender()) !=
        senders.end()) {
      Drop(DropReason::kBadNewView);
      return;
    }
    senders.push_back(ve.sender());
    // The very envelope we verified already need not be checked again.
    auto known = view_changes_.find(ReplicaId(
        static_cast<uint32_t>(std::min<uint64_t>(ve.sender(), options_.n))));
    if (known != view_changes_.end() && known->second.view == v &&
        known->second.envelope.signature() == ve.signature() &&
        known->second.envelope.payload() == ve.payload()) {
      parsed[i] = known->second.vc;
      continue;
    }
    if (!VerifyViewChange(ve, v, &parsed[i]) || !verifier_->Verify(ve)) {
      Drop(DropReason::kBadNewView);
      return;
    }
  }
  std::vector<const v1::ViewChange*> vcs;
  for (const v1::ViewChange& vc : parsed) vcs.push_back(&vc);
  Seq min_s;
  const v1::CheckpointProof* min_proof = nullptr;
  std::vector<OEntry> o;
  ComputeO(vcs, &min_s, &min_proof, &o);
  if (static_cast<size_t>(nv.pre_prepares_size()) != o.size()) {
    Drop(DropReason::kBadNewView);
    return;
  }
  std::vector<v1::Envelope> pps;
  for (size_t i = 0; i < o.size(); ++i) {
    const v1::Envelope& pe = nv.pre_prepares(static_cast<int>(i));
    v1::PrePrepare pp;
    Digest d;
    if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE ||
        pe.sender() != e.sender() || pe.batch_size() > 0 ||
        !pp.ParseFromString(pe.payload()) || pp.legacy_requests_size() > 0 ||
        !ParseDigest(pp.batch_digest(), &d) || View(pp.view()) != v ||
        Seq(pp.seq()) != o[i].seq || d != o[i].digest ||
        pp.timestamp_ms() != o[i].timestamp_ms || !verifier_->Verify(pe)) {
      Drop(DropReason::kBadNewView);
      return;
    }
    pps.push_back(pe);
  }
  EnterView(v, e, std::move(pps), min_s, *min_proof);
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
  // New proposals start right after O: seqs above max-s prepared nowhere
  // that counts, so the new primary reuses them.
  last_assigned_ = std::max(max_s, last_handed_out_);
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
    if (min_s <= last_executed_) {
      auto cit = checkpoints_.find(min_s);
      if (cit != checkpoints_.end()) {
        auto own = cit->second.find(options_.id);
        if (own != cit->second.end() && own->second.digest == d) {
          std::vector<v1::Envelope> cps(min_proof.checkpoints().begin(),
                                        min_proof.checkpoints().end());
          MakeStable(min_s, d, std::move(cps));
        }
      }
    } else {
      AdoptFetchedProof(min_s, min_proof);
    }
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
    CHECK(pp.ParseFromString(pe.payload()));
    CHECK(ParseDigest(pp.batch_digest(), &d));
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

// --- Batch bodies (§4.4)
// ------------------------------------------------------

void Core::KeepBody(Seq s, const Digest& d, View v, const v1::Envelope& pe) {
  if (pe.batch_size() == 0 || s <= low_watermark_ || FindBody(s, d)) return;
  std::vector<Body>& at = bodies_[s];
  if (at.size() >= kBodiesPerSeqMax) {
    at.erase(std::min_element(
        at.begin(), at.end(),
        [](const Body& a, const Body& b) { return a.view < b.view; }));
  }
  at.push_back(Body{d, v, pe});
}

const Core::Body* Core::FindBody(Seq s, const Digest& d) const {
  auto it = bodies_.find(s);
  if (it == bodies_.end()) return nullptr;
  for (const Body& b : it->second) {
    if (b.digest == d) return &b;
  }
  return nullptr;
}

bool Core::BodiesMissing() const {
  for (auto it = log_.upper_bound(last_handed_out_); it != log_.end(); ++it) {
    if (it->second.has_pre_prepare && !it->second.has_body) return true;
  }
  return false;
}

bool Core::AttachBody(Seq s, Slot* slot) {
  CHECK(slot->has_pre_prepare);
  if (slot->has_body) return true;
  if (slot->digest == ledger::NullBatchDigest()) {
    slot->has_body = true;  // The null batch has no body.
    return true;
  }
  const Body* body = FindBody(s, slot->digest);
  if (body == nullptr) return false;
  *slot->pre_prepare.mutable_batch() = body->pre_prepare.batch();
  slot->has_body = true;
  return true;
}

void Core::OnBodyAttached(Seq s, Slot* slot, bool send_prepare) {
  CHECK(slot->has_body);
  slot->requests = RequestKeys(slot->pre_prepare.batch());
  if (is_primary() && slot->view == view_) {
    for (const auto& [c, t] : slot->requests) {
      RemoveQueuedUpTo(c, t);
      assigned_.insert(RequestKey{c.value(), t.value()});
    }
  }
  if (send_prepare && !slot->own_prepare) {
    v1::Prepare prepare;
    prepare.set_view(slot->view.value());
    prepare.set_seq(s.value());
    prepare.set_batch_digest(slot->digest.ToBytes());
    prepare.set_replica_id(options_.id.value());
    v1::Envelope own =
        signer_->Sign(v1::MESSAGE_TYPE_PREPARE, prepare.SerializeAsString());
    slot->prepares[options_.id] = Vote{slot->digest, own};
    slot->own_prepare = own;
    ready_.persist.entries.push_back(own);
    Broadcast(std::move(own));
  }
  CheckPrepared(s);
}

// An O entry whose batch this replica lacks: ask the next peer for it by
// (seq, digest), one request per kBodyFetchIntervalTicks, going through the
// missing seqs in turn (the peers answer off their core thread).
void Core::MaybeFetchBody() {
  if (!view_active_) return;
  auto next = log_.end();
  for (int pass = 0; pass < 2 && next == log_.end(); ++pass) {
    for (auto it = log_.lower_bound(pass == 0 ? body_fetch_next_ : Seq(0));
         it != log_.end(); ++it) {
      if (it->second.has_pre_prepare && !it->second.has_body &&
          it->first > last_handed_out_) {
        next = it;
        break;
      }
    }
  }
  if (next == log_.end()) return;
  body_fetch_next_ = next->first.next();
  body_fetch_peer_ = (body_fetch_peer_ + 1) % options_.n;
  if (body_fetch_peer_ == options_.id.value()) {
    body_fetch_peer_ = (body_fetch_peer_ + 1) % options_.n;
  }
  v1::FetchRequest req;
  req.set_replica_id(options_.id.value());
  req.set_from_seq(next->first.value());
  req.set_batch_digest(next->second.digest.ToBytes());
  req.set_view(view_.value());
  SendTo(
      ReplicaId(body_fetch_peer_),
      signer_->Sign(v1::MESSAGE_TYPE_FETCH_REQUEST, req.SerializeAsString()));
  ++stats_.body_fetches_sent;
}

// A body for an O entry (from a fetch response, or the primary's PRE-PREPARE
// of the entry with its batch): adopted only if the batch matches the
// entry's digest (§4.4); whose header it came with does not matter.
void Core::HandleFetchedBody(const v1::Envelope& pe, uint64_t from) {
  v1::PrePrepare pp;
  Digest d;
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE ||
      !pp.ParseFromString(pe.payload()) ||
      !ParseDigest(pp.batch_digest(), &d)) {
    Drop(DropReason::kMalformed);
    return;
  }
  const Seq s(pp.seq());
  auto it = log_.find(s);
  if (it == log_.end() || it->second.has_body || it->second.digest != d ||
      !it->second.has_pre_prepare || s <= last_handed_out_) {
    return;  // Not missing (any more).
  }
  const auto& batch = BatchOf(pe, pp);
  // The digest covers the requests but not their signatures: those are
  // checked here, so that what executes is what clients signed.
  auto signed_by_clients = [&] {
    for (const v1::Envelope& re : batch) {
      if (re.type() != v1::MESSAGE_TYPE_REQUEST || !verifier_->Verify(re))
        return false;
    }
    return true;
  };
  if (static_cast<uint32_t>(batch.size()) >
          options_.params.batch_requests_max ||
      ledger::BatchDigest(batch) != d ||
      RequestKeys(batch).size() != static_cast<size_t>(batch.size()) ||
      !signed_by_clients()) {
    Drop(DropReason::kDigestMismatch);
    if (from < options_.n) fetch_bad_until_[from] = tick_ + kFetchBadPeerTicks;
    return;
  }
  Slot& slot = it->second;
  *slot.pre_prepare.mutable_batch() = batch;
  slot.has_body = true;
  KeepBody(s, d, slot.view, slot.pre_prepare);
  // Durable with the header it completes: a restart prepares it again.
  ready_.persist.entries.push_back(slot.pre_prepare);
  ++stats_.bodies_fetched;
  OnBodyAttached(s, &slot,
                 /*send_prepare=*/PrimaryOf(slot.view) != options_.id);
  if (is_primary() && view_active_) MaybeCutBatches();
}

// --- Observation -------------------------------------------------------------

std::vector<Core::PreparedEntry> Core::PreparedEntries() const {
  std::vector<PreparedEntry> out;
  for (const auto& [s, slot] : log_) {
    if (slot.prepared && !slot.fetched) {
      out.push_back({slot.view, s, slot.digest});
    }
  }
  return out;
}

std::vector<Core::PreparedEntry> Core::PreparedCertificates() const {
  std::vector<PreparedEntry> out;
  for (const auto& [s, pc] : prepared_certs_) {
    if (s > low_watermark_) out.push_back({pc.view, s, pc.digest});
  }
  return out;
}

absl::Status Core::Invariants() const {
  auto fail = [](auto&&... args) {
    return absl::InternalError(absl::StrCat("invariant: ", args...));
  };
  const uint32_t K = options_.params.checkpoint_interval;
  if (low_watermark_.value() % K != 0) {
    return fail("low watermark ", low_watermark_.value(),
                " not a multiple of K");
  }
  if (!(low_watermark_ <= last_executed_ &&
        last_executed_ <= last_handed_out_ &&
        last_handed_out_ <= FetchLimit())) {
    return fail("h=", low_watermark_.value(),
                " <= executed=", last_executed_.value(),
                " <= handed_out=", last_handed_out_.value(),
                " <= limit=", FetchLimit().value());
  }
  const Seq assign_limit =
      pending_o_.empty() ? FetchLimit()
                         : std::max(FetchLimit(), pending_o_.rbegin()->first);
  if (view_active_ && is_primary() && last_assigned_ > assign_limit) {
    return fail("assigned seq ", last_assigned_.value(), " above H");
  }
  if (queue_.size() > options_.params.request_queue_max ||
      queue_.size() != queue_index_.size()) {
    return fail("request queue size ", queue_.size());
  }
  size_t shared_requests = 0, shared_bytes = 0;
  for (const auto& [client, share] : queued_by_client_) {
    shared_requests += share.requests;
    shared_bytes += share.bytes;
  }
  if (shared_requests != queue_.size() || shared_bytes != queue_bytes_) {
    return fail("per-client queue shares ", shared_requests, " requests ",
                shared_bytes, " bytes; queue ", queue_.size(), " requests ",
                queue_bytes_, " bytes");
  }
  if (Seq(stable_proof_.seq()) != low_watermark_) {
    return fail("stable proof seq ", stable_proof_.seq(), " != h");
  }
  for (const auto& [s, slot] : log_) {
    if (s <= low_watermark_ || s > FetchLimit()) {
      return fail("slot ", s.value(), " outside (h, limit]");
    }
    if (slot.committed && !slot.prepared) {
      return fail("slot ", s.value(), " committed but not prepared");
    }
    if (slot.prepared && !slot.has_body) {
      return fail("slot ", s.value(), " prepared without its batch");
    }
    if (slot.prepared && !slot.has_pre_prepare) {
      return fail("slot ", s.value(), " prepared without pre-prepare");
    }
    if (s <= last_handed_out_ && !slot.committed) {
      return fail("slot ", s.value(), " executed but not committed");
    }
    if (slot.prepares.size() > options_.n || slot.commits.size() > options_.n) {
      return fail("slot ", s.value(), " holds more votes than replicas");
    }
    if (slot.prepared && !slot.fetched) {
      uint32_t matching = 0;
      for (const auto& [sender, vote] : slot.prepares) {
        if (sender != PrimaryOf(slot.view) && vote.digest == slot.digest) {
          ++matching;
        }
      }
      if (matching < quorum_ - 1) {
        return fail("slot ", s.value(), " prepared with ", matching,
                    " matching prepares");
      }
    }
    if (slot.committed) {
      if (static_cast<uint32_t>(slot.certificate.commits_size()) < quorum_) {
        return fail("slot ", s.value(), " committed with a certificate of ",
                    slot.certificate.commits_size());
      }
    }
  }
  for (const auto& [s, at] : bodies_) {
    if (s <= low_watermark_ || at.size() > kBodiesPerSeqMax) {
      return fail("bodies at ", s.value(), ": ", at.size(), " at or below h");
    }
  }
  for (const auto& [s, pc] : prepared_certs_) {
    if (pc.cert.pre_prepare().batch_size() > 0) {
      return fail("prepared certificate at ", s.value(), " carries a batch");
    }
    if (s <= low_watermark_ || s > high_watermark() ||
        static_cast<uint32_t>(pc.cert.prepares_size()) < quorum_ - 1) {
      return fail("prepared certificate at ", s.value(),
                  " outside (h, H] or short");
    }
  }
  if (!view_active_ && !own_view_change_) {
    return fail("changing to view ", view_.value(), " without a VIEW-CHANGE");
  }
  if (view_changes_.size() > options_.n) {
    return fail("more VIEW-CHANGEs than replicas");
  }
  for (const auto& [s, votes] : checkpoints_) {
    if (s < low_watermark_ || s > FetchLimit()) {
      return fail("checkpoint votes at ", s.value(), " outside [h, limit]");
    }
  }
  return absl::OkStatus();
}

// --- Restart -----------------------------------------------------------------

absl::Status Core::RestoreExecuted(Seq last_executed,
                                   uint64_t last_timestamp_ms,
                                   const v1::CheckpointProof* stable) {
  RestoreState state;
  state.last_executed = last_executed;
  state.last_timestamp_ms = last_timestamp_ms;
  if (stable != nullptr) state.stable_checkpoint = *stable;
  return Restore(state);
}

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
