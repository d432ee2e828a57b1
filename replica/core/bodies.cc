// Batch bodies (Castro & Liskov §4.4): O carries digests only, so bodies
// received in PRE-PREPAREs of any view are kept per (seq, digest), and a
// slot without its body fetches it by digest before it may prepare.
#include <algorithm>

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"

namespace pbft::core {

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

const Body* Core::FindBody(Seq s, const Digest& d) const {
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
  if (slot->digest == NullBatchDigest()) {
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
  if (send_prepare && !slot->own_prepare) SendOwnPrepare(s, slot);
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
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE || !Decode(pe, &pp, &d)) {
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
      BatchDigest(batch) != d ||
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

}  // namespace pbft::core
