// The Core's frame: options, construction, the input dispatch (Step,
// Tick), the output (Ready) and the evidence of where the cluster is.
// The sub-protocols are in their own files (docs/architecture.md, "The PBFT
// core's files").
#include "replica/core/core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pbft::core {

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
  if (absl::Status s = ValidateReplicaCount(n, f); !s.ok()) {
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

namespace {

// The options, CHECK-failing first if they are invalid (Options::Validate
// names the field), before any member is built from them.
Options Validated(Options options) {
  CHECK_OK(options.Validate());
  return options;
}

}  // namespace

Core::Core(Options options, const Signer* signer, const Verifier* verifier)
    : options_(Validated(std::move(options))),
      signer_(signer),
      verifier_(verifier),
      quorum_(Quorum(options_.f)),
      certs_(options_.n, options_.f, options_.params.checkpoint_interval,
             options_.params.watermark_window, verifier),
      view_change_timeout_ticks_(options_.params.view_change_timeout_ticks),
      highest_seq_seen_(options_.n),
      highest_commit_seen_(options_.n),
      highest_view_seen_(options_.n),
      new_view_offered_until_(options_.n, 0),
      stable_offered_until_(options_.n, 0) {
  fetch_bad_until_.assign(options_.n, 0);
  fetch_empty_at_.assign(options_.n, Seq(UINT64_MAX));
  heard_.assign(options_.n, false);
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

void Core::Tick(uint64_t now_ms) {
  ++tick_;
  now_ms_ = now_ms;
  if (view_active_ && is_primary()) MaybeCutBatches();
  if (view_active_ && !is_primary()) ForwardLateRequests();
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

}  // namespace pbft::core
