// Request queue and admission (Castro & Liskov §4.1): the per-client
// table of last executed numbers and replies, the bounded request queue
// with per-client shares, and the signed REPLYs and rejections.
#include <algorithm>
#include <optional>

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/core.h"

namespace pbft::core {

void Core::OnRequest(const v1::Envelope& e,
                     std::optional<View> sent_to_primary_of) {
  v1::Request r;
  if (e.type() != v1::MESSAGE_TYPE_REQUEST || !r.ParseFromString(e.payload()) ||
      r.client_id() != e.sender()) {
    Drop(DropReason::kMalformed);
    return;
  }
  if (r.read_only()) {  // §5.1 read-only requests are never ordered.
    Drop(DropReason::kUnsupported);
    return;
  }
  const ClientId c(r.client_id());
  const RequestNumber t(r.request_number());
  if (!AdmitNumber(c, t)) return;
  const RequestKey key{c.value(), t.value()};
  auto qi = queue_index_.find(key);
  bool held_long = false;  // A copy of a request held long (HeldLong).
  if (qi != queue_index_.end()) {
    // A copy of a queued request waits for that request's reply; another
    // request under the same number never executes: say so.
    if (queue_.at(qi->second).envelope.payload() != e.payload()) {
      Drop(DropReason::kBadRequest);
      Reject(c, t, v1::REJECT_REASON_DUPLICATE_REQUEST_NUMBER);
      return;
    }
    Queued& q = queue_.at(qi->second);
    // A copy without the client's word (it asked every replica, say, after
    // a silence) undoes the word of those before it.
    if (q.sent_to_primary_of != sent_to_primary_of)
      q.sent_to_primary_of.reset();
    held_long = HeldLong(q) && !PrimaryHasCopy(q);
  } else {
    // A request this primary already put in a batch is not queued again
    // (the batch keeps the view-change timer running).
    if (is_primary() && assigned_.contains(key)) {
      UpdateViewChangeTimer(false);
      return;
    }
    if (!Enqueue(e, c, t, sent_to_primary_of)) return;
  }
  if (!view_active_) return;  // Held; forwarded once the new view starts.
  if (is_primary()) {
    MaybeCutBatches();
    UpdateViewChangeTimer(false);
  } else {
    // Castro–Liskov §4.1: a backup forwards a request it has not seen executed
    // to the primary (and holds it for its view-change timer); after
    // HeldLong without its PRE-PREPARE (ForwardLateRequests), as
    // the client has most likely sent it to the primary too; not at all if
    // the client said it did (PrimaryHasCopy: the timer's probe forwards
    // it). A client's copy of a request held that long is forwarded as it
    // comes (the client is retransmitting: the first forward may have been
    // lost).
    if (options_.forward_delay_ticks == 0 ||
        (held_long && !ProposedInView().contains(key))) {
      SendTo(primary(), e);
      ++stats_.requests_forwarded;
    }
    UpdateViewChangeTimer(false);
  }
}

void Core::ForwardLateRequests() {
  if (options_.forward_delay_ticks == 0) return;
  // The requests the view's PRE-PREPAREs carry, gathered once per tick
  // (at most L batches) and only if some request is due: the cost per
  // tick is bounded whatever the primary proposed.
  std::optional<absl::flat_hash_set<RequestKey>> proposed;
  for (auto it = queue_.lower_bound(forward_next_); it != queue_.end(); ++it) {
    const Queued& q = it->second;
    if (!HeldLong(q)) break;
    forward_next_ = it->first + 1;
    // Left to WordHeldLong below or the timer's probe; a copy that comes
    // without the word is forwarded as it comes (OnRequest).
    if (PrimaryHasCopy(q)) {
      ++stats_.requests_primary_has_copy;
      continue;
    }
    ForwardUnlessProposed(q, &proposed);
  }
  // The word's requests, once held WordHeldLong: the primary never
  // proposed them, so it may not have them after all (it refused the call
  // for load, or lost it, or the client lied). A second cursor over the
  // same arrival order: each request is looked at once more at most.
  for (auto it = queue_.lower_bound(word_next_); it != queue_.end(); ++it) {
    const Queued& q = it->second;
    if (!WordHeldLong(q)) break;
    word_next_ = it->first + 1;
    if (PrimaryHasCopy(q) && ForwardUnlessProposed(q, &proposed)) {
      ++stats_.requests_word_held_long;
    }
  }
}

bool Core::ForwardUnlessProposed(
    const Queued& q, std::optional<absl::flat_hash_set<RequestKey>>* proposed) {
  if (!*proposed) *proposed = ProposedInView();
  if ((*proposed)->contains(RequestKey{q.client.value(), q.number.value()})) {
    return false;
  }
  SendTo(primary(), q.envelope);
  ++stats_.requests_forwarded;
  return true;
}

bool Core::HeldLong(const Queued& q) const {
  // The primary may hold a request batch_delay_ticks on purpose (a batch in
  // flight, or batch_wait_when_idle): forwarding within that wait only sends
  // it a copy it has.
  return q.arrival_tick + options_.params.batch_delay_ticks +
             options_.forward_delay_ticks <=
         tick_;
}

bool Core::WordHeldLong(const Queued& q) const {
  // Strictly past the tick at which the probe of a timer started at its
  // arrival sends it: the two never send it twice in one tick (Tick runs
  // ForwardLateRequests before the probe, which moves word_next_ on).
  return q.arrival_tick + options_.params.view_change_timeout_ticks / 2 < tick_;
}

bool Core::PrimaryHasCopy(const Queued& q) const {
  return q.sent_to_primary_of == view_ && options_.forward_delay_ticks != 0;
}

absl::flat_hash_set<Core::RequestKey> Core::ProposedInView() const {
  absl::flat_hash_set<RequestKey> out;
  for (auto it = log_.upper_bound(last_executed_); it != log_.end(); ++it) {
    const Slot& slot = it->second;
    if (slot.view != view_ || !slot.has_body) continue;
    for (const auto& [rc, rt] : slot.requests) {
      out.insert(RequestKey{rc.value(), rt.value()});
    }
  }
  return out;
}

// Castro–Liskov §4.1, client requests: equal to the last executed -> resend the
// stored reply; lower, or at or below a number already committed for execution
// -> it never executes: answer at once with a stale rejection naming the last
// number (never silence); higher -> order it. True if it may be ordered.
bool Core::AdmitNumber(ClientId c, RequestNumber t) {
  auto cit = clients_.find(c.value());
  if (cit == clients_.end()) return true;
  ClientRecord& rec = cit->second;
  if (t == rec.last_executed && rec.replied) {
    ready_.replies.push_back(ReplyFor(c, rec));
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
bool Core::Enqueue(const v1::Envelope& e, ClientId c, RequestNumber t,
                   std::optional<View> sent_to_primary_of) {
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
  queue_[arrival] = Queued{e, c, t, tick_, bytes, sent_to_primary_of};
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

void Core::RestoreClient(ClientId client_id, RequestNumber request_number,
                         std::string result) {
  ClientRecord& rec = clients_[client_id.value()];
  if (request_number < rec.last_executed) return;
  rec.last_executed = request_number;
  rec.last_ordered = std::max(rec.last_ordered, request_number);
  rec.result = std::move(result);
  rec.replied = true;  // Resent on a duplicate request.
}

ClientReply Core::ReplyFor(ClientId client, const ClientRecord& rec) const {
  ClientReply out{client, {}};
  out.reply.set_view(view_.value());
  out.reply.set_request_number(rec.last_executed.value());
  out.reply.set_client_id(client.value());
  out.reply.set_replica_id(options_.id.value());
  out.reply.set_result(rec.result);
  return out;
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
  ready_.replies.push_back({c, std::move(reply)});
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

}  // namespace pbft::core
