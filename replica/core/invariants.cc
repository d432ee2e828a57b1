// Observation: the core's consistency checks (Core::Invariants, run by the
// simulator after every step; docs/protocol.md "Invariants") and the
// prepared entries tests look at.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "replica/core/core.h"

namespace pbft::core {

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

namespace {

template <typename... Args>
absl::Status Fail(Args&&... args) {
  return absl::InternalError(absl::StrCat("invariant: ", args...));
}

}  // namespace

absl::Status Core::Invariants() const {
  const uint32_t K = options_.params.checkpoint_interval;
  if (low_watermark_.value() % K != 0) {
    return Fail("low watermark ", low_watermark_.value(),
                " not a multiple of K");
  }
  if (!(low_watermark_ <= last_executed_ &&
        last_executed_ <= last_handed_out_ &&
        last_handed_out_ <= FetchLimit())) {
    return Fail("h=", low_watermark_.value(),
                " <= executed=", last_executed_.value(),
                " <= handed_out=", last_handed_out_.value(),
                " <= limit=", FetchLimit().value());
  }
  const Seq assign_limit =
      pending_o_.empty() ? FetchLimit()
                         : std::max(FetchLimit(), pending_o_.rbegin()->first);
  if (view_active_ && is_primary() && last_assigned_ > assign_limit) {
    return Fail("assigned seq ", last_assigned_.value(), " above H");
  }
  if (absl::Status s = QueueInvariants(); !s.ok()) return s;
  if (Seq(stable_proof_.seq()) != low_watermark_) {
    return Fail("stable proof seq ", stable_proof_.seq(), " != h");
  }
  for (const auto& [s, slot] : log_) {
    if (absl::Status st = SlotInvariants(s, slot); !st.ok()) return st;
  }
  return ViewChangeInvariants();
}

// The request queue, its index and the per-client shares agree.
absl::Status Core::QueueInvariants() const {
  if (queue_.size() > options_.params.request_queue_max ||
      queue_.size() != queue_index_.size()) {
    return Fail("request queue size ", queue_.size());
  }
  size_t shared_requests = 0, shared_bytes = 0;
  for (const auto& [client, share] : queued_by_client_) {
    shared_requests += share.requests;
    shared_bytes += share.bytes;
  }
  if (shared_requests != queue_.size() || shared_bytes != queue_bytes_) {
    return Fail("per-client queue shares ", shared_requests, " requests ",
                shared_bytes, " bytes; queue ", queue_.size(), " requests ",
                queue_bytes_, " bytes");
  }
  return absl::OkStatus();
}

// A slot is inside (h, limit] and holds what its state claims (§4.2).
absl::Status Core::SlotInvariants(Seq s, const Slot& slot) const {
  if (s <= low_watermark_ || s > FetchLimit()) {
    return Fail("slot ", s.value(), " outside (h, limit]");
  }
  if (slot.committed && !slot.prepared) {
    return Fail("slot ", s.value(), " committed but not prepared");
  }
  if (slot.prepared && !slot.has_body) {
    return Fail("slot ", s.value(), " prepared without its batch");
  }
  if (slot.prepared && !slot.has_pre_prepare) {
    return Fail("slot ", s.value(), " prepared without pre-prepare");
  }
  if (s <= last_handed_out_ && !slot.committed) {
    return Fail("slot ", s.value(), " executed but not committed");
  }
  if (slot.prepares.size() > options_.n || slot.commits.size() > options_.n) {
    return Fail("slot ", s.value(), " holds more votes than replicas");
  }
  if (slot.prepared && !slot.fetched) {
    const uint32_t matching =
        MatchingPrepares(slot.prepares, PrimaryOf(slot.view), slot.digest);
    if (matching < quorum_ - 1) {
      return Fail("slot ", s.value(), " prepared with ", matching,
                  " matching prepares");
    }
  }
  if (slot.committed &&
      static_cast<uint32_t>(slot.certificate.commits_size()) < quorum_) {
    return Fail("slot ", s.value(), " committed with a certificate of ",
                slot.certificate.commits_size());
  }
  return absl::OkStatus();
}

// Bodies, prepared certificates, VIEW-CHANGEs and checkpoint votes stay
// within their bounds (§4.3, §4.4).
absl::Status Core::ViewChangeInvariants() const {
  for (const auto& [s, at] : bodies_) {
    if (s <= low_watermark_ || at.size() > kBodiesPerSeqMax) {
      return Fail("bodies at ", s.value(), ": ", at.size(), " at or below h");
    }
  }
  for (const auto& [s, pc] : prepared_certs_) {
    if (pc.cert.pre_prepare().batch_size() > 0) {
      return Fail("prepared certificate at ", s.value(), " carries a batch");
    }
    if (s <= low_watermark_ || s > high_watermark() ||
        static_cast<uint32_t>(pc.cert.prepares_size()) < quorum_ - 1) {
      return Fail("prepared certificate at ", s.value(),
                  " outside (h, H] or short");
    }
  }
  if (!view_active_ && !own_view_change_) {
    return Fail("changing to view ", view_.value(), " without a VIEW-CHANGE");
  }
  if (view_changes_.size() > options_.n) {
    return Fail("more VIEW-CHANGEs than replicas");
  }
  for (const auto& [s, votes] : checkpoints_) {
    if (s < low_watermark_ || s > FetchLimit()) {
      return Fail("checkpoint votes at ", s.value(), " outside [h, limit]");
    }
  }
  return absl::OkStatus();
}

}  // namespace pbft::core
