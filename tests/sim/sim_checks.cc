// The checkers: what every run must satisfy, from the outside.
#include "common/proto_names.h"
#include "tests/sim/sim_internal.h"

namespace pbft::sim::internal {

// No two correct replicas hold prepared certificates for one (view, seq)
// with different digests (§4.2 safety of the prepare phase).
void Simulation::CheckPrepared() {
  for (const auto& r : replicas_) {
    if (r->byzantine || r->down) continue;
    for (const core::Core::PreparedEntry& p : r->core().PreparedEntries()) {
      auto [it, fresh] = prepared_.emplace(
          std::make_pair(p.view.value(), p.seq.value()), p.digest);
      if (!fresh && it->second != p.digest) {
        Fail(absl::StrCat("prepared certificates conflict at view ",
                          p.view.value(), " seq ", p.seq.value(), " (replica ",
                          r->id, ")"));
      }
    }
  }
}

// §4.4 restated from the outside, per Ready of a correct replica:
// - it enters a view only through a NEW-VIEW whose O is the one recomputed
//   from its V (a new primary's own included);
// - it moves to a higher view without a NEW-VIEW only on its own timer or
//   on VIEW-CHANGEs for that view or higher from f+1 distinct others;
// - once it has executed a batch of its current view (active), its
//   view-change timeout is back at its base.
void Simulation::CheckViewRules(SimReplica& r, const core::Ready& rd) {
  const core::Core& core = r.core();
  const std::string who = absl::StrCat("replica ", r.id, ": ");
  for (const v1::Envelope& e : rd.persist.entries) {
    if (e.type() == v1::MESSAGE_TYPE_NEW_VIEW) CheckNewView(r, e);
  }
  const uint64_t expiries = core.stats().view_change_timer_expiries;
  const bool timer = expiries > r.timer_expiries_seen;
  r.timer_expiries_seen = expiries;
  const uint64_t view = core.view().value();
  if (view > r.view_seen && !core.view_active() && !timer) {
    uint32_t asking = 0;
    for (const auto& [sender, target] : r.view_change_heard) {
      if (sender != r.id && target >= view) ++asking;
    }
    if (asking < f_ + 1) {
      Fail(absl::StrCat(who, "moved to view ", view, " on ", asking,
                        " VIEW-CHANGEs and no timer expiry (§4.4: f+1)"));
    }
  }
  r.view_seen = std::max(r.view_seen, view);
  const uint64_t base = params_.view_change_timeout_ticks;
  for (const core::CommittedBatch& b : rd.execute) {
    if (core.view_active() && b.view.value() == view &&
        core.view_change_timeout_ticks() != base) {
      Fail(absl::StrCat(who, "executed a batch of its view ", view,
                        " but its view-change timeout is ",
                        core.view_change_timeout_ticks(), ", base ", base));
    }
  }
}

// The NEW-VIEW a correct replica entered by: signed by primary(v), V holds
// 2f+1 validly signed VIEW-CHANGEs for v from distinct replicas, and O is
// what §4.4 computes from V: min-s the highest s*, and for every seq up to
// the highest certified one the batch of the highest-view certificate
// (timestamp kept), else a null batch with the timestamp before it.
void Simulation::CheckNewView(const SimReplica& r, const v1::Envelope& e) {
  const core::Verifier& ver = crypto_->verifier();
  const std::string who = absl::StrCat("replica ", r.id, " entered by a ");
  v1::NewView nv;
  if (!ver.Verify(e) || !nv.ParseFromString(e.payload()) ||
      e.sender() != nv.view() % n_) {
    Fail(who + "NEW-VIEW not signed by the primary of its view");
    return;
  }
  std::set<uint64_t> senders;
  uint64_t min_s = 0;
  // seq -> (view, digest, timestamp) of the highest-view certificate.
  std::map<uint64_t, std::tuple<uint64_t, std::string, uint64_t>> best;
  for (const v1::Envelope& ve : nv.view_changes()) {
    v1::ViewChange vc;
    if (!ver.Verify(ve) || !vc.ParseFromString(ve.payload()) ||
        vc.new_view() != nv.view() || vc.replica_id() != ve.sender()) {
      Fail(who + "NEW-VIEW with an invalid VIEW-CHANGE in V");
      return;
    }
    senders.insert(ve.sender());
    min_s = std::max(min_s, vc.stable_checkpoint().seq());
    for (const v1::PreparedCertificate& cert : vc.prepared()) {
      v1::PrePrepare pp;
      CHECK(pp.ParseFromString(cert.pre_prepare().payload()));
      auto it = best.find(pp.seq());
      if (it == best.end() || pp.view() > std::get<0>(it->second)) {
        best[pp.seq()] = {pp.view(), pp.batch_digest(), pp.timestamp_ms()};
      }
    }
  }
  if (senders.size() < 2 * f_ + 1 ||
      senders.size() != static_cast<size_t>(nv.view_changes_size())) {
    Fail(absl::StrCat(who, "NEW-VIEW whose V holds ", senders.size(),
                      " distinct VIEW-CHANGEs"));
    return;
  }
  best.erase(best.begin(), best.upper_bound(min_s));
  const uint64_t max_s = best.empty() ? min_s : best.rbegin()->first;
  if (static_cast<uint64_t>(nv.pre_prepares_size()) != max_s - min_s) {
    Fail(absl::StrCat(who, "NEW-VIEW with ", nv.pre_prepares_size(),
                      " O entries; V gives ", max_s - min_s));
    return;
  }
  uint64_t ts = 0;
  for (uint64_t s = min_s + 1; s <= max_s; ++s) {
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(nv.pre_prepares(s - min_s - 1).payload()));
    auto it = best.find(s);
    std::string digest = NullBatchDigest().ToBytes();
    if (it != best.end()) {
      digest = std::get<1>(it->second);
      ts = std::max(ts, std::get<2>(it->second));
    }
    const uint64_t want_ts = it != best.end() ? std::get<2>(it->second) : ts;
    if (pp.seq() != s || pp.view() != nv.view() ||
        pp.batch_digest() != digest || pp.timestamp_ms() != want_ts) {
      Fail(absl::StrCat(who, "NEW-VIEW whose O entry at seq ", s,
                        " differs from the one V gives"));
      return;
    }
  }
  max_o_ = std::max<uint64_t>(max_o_, nv.pre_prepares_size());
}

void Simulation::CheckCertsSurvived(const SimReplica& r) {
  std::map<uint64_t, core::Core::PreparedEntry> now;
  for (const core::Core::PreparedEntry& p : r.core().PreparedCertificates()) {
    now.emplace(p.seq.value(), p);
  }
  for (const core::Core::PreparedEntry& p : r.certs_at_crash) {
    if (p.seq <= r.core().low_watermark()) continue;
    auto it = now.find(p.seq.value());
    if (it == now.end() || it->second.view < p.view ||
        (it->second.view == p.view && it->second.digest != p.digest)) {
      Fail(absl::StrCat("replica ", r.id, " lost its prepared certificate at ",
                        "seq ", p.seq.value(), " (view ", p.view.value(),
                        ") in a crash and restart"));
      return;
    }
  }
}

// After the workload: heal everything, restart what is down, and require
// (liveness after healing) every request still in flight and one more to
// complete, no new ones to start, and every correct replica to catch up;
// then no acknowledged request may be missing from any correct replica's
// executed history.
void Simulation::FinalCheck() {
  final_phase_ = true;
  Heal();
  drop_ = 0;
  dup_ = 0;
  for (auto& r : replicas_) {
    r->crash_mid_ready = false;
    if (r->down) Restart(*r);
  }
  if (!result_.ok) return;
  // The requests in flight finish (a busy rejoin run ends with some); no
  // client starts another but the probe.
  for (auto& c : clients_) c->total = c->completed + (c->outstanding ? 1 : 0);
  SimClient& probe = *clients_[0];
  probe.total = probe.total + 1;
  const uint64_t bound = liveness_ticks_ + 4000;
  const bool done = TickUntil(bound, true, [&] {
    for (const auto& c : clients_) {
      if (c->completed < c->total) return false;
    }
    uint64_t top = 0;
    for (const auto& r : replicas_) {
      if (!r->byzantine) top = std::max(top, r->height());
    }
    for (const auto& r : replicas_) {
      if (!r->byzantine && r->height() < top) return false;
    }
    return true;
  });
  if (!result_.ok) return;
  if (!done) {
    std::string heights;
    for (const auto& r : replicas_) {
      absl::StrAppend(&heights, " ", r->id, ":", r->height());
      if (!r->down) {
        absl::StrAppend(&heights, "/v", r->core().view().value(),
                        r->core().view_active() ? "" : "*");
      }
    }
    uint64_t unfinished = 0;
    for (const auto& c : clients_) unfinished += c->completed < c->total;
    Fail(absl::StrCat("liveness after healing: not done within ", bound,
                      " ticks (clients unfinished ", unfinished, "; probe ",
                      probe.completed, "/", probe.total, "; heights", heights,
                      ")"));
    return;
  }
  for (const auto& [key, result] : acknowledged_) {
    for (const auto& r : replicas_) {
      if (r->byzantine) continue;
      if (!r->executed.count(key)) {
        Fail(absl::StrCat("acknowledged request (", key.first, ", ", key.second,
                          ") lost: not executed at replica ", r->id));
        return;
      }
    }
  }
}

// Every correct replica holds the same block hash at every height two of
// them share (docs/storage_format.md "Block header and hash"), whatever
// view it committed each block in: the hashes its ledger recorded.
void Simulation::ChainCheck() {
  std::map<uint64_t, std::pair<uint32_t, std::string>> agreed;  // seq -> by
  for (const auto& r : replicas_) {
    if (r->byzantine || r->ledger == nullptr) continue;
    for (uint64_t h = 1; h <= r->ledger->last_executed(); ++h) {
      absl::StatusOr<ledger::v1::Block> b = r->ledger->GetStoredBlock(h);
      if (!b.ok()) {
        Fail(absl::StrCat("chain: replica ", r->id, " cannot read block ", h,
                          ": ", b.status().ToString()));
        return;
      }
      const std::string hash = ledger::BlockHash(b->header()).ToBytes();
      auto [it, fresh] = agreed.emplace(h, std::make_pair(r->id, hash));
      if (!fresh && it->second.second != hash) {
        Fail(absl::StrCat("chain: replicas ", it->second.first, " and ", r->id,
                          " have different block hashes at height ", h));
        return;
      }
    }
  }
}

// After the final check, without Byzantine replicas: one replica crashes,
// the others order 1-3 more requests, the clients go quiet, and the replica
// restarts a few blocks behind, usually below the next checkpoint, with no
// traffic to tell it so. It must catch up on its own (docs/protocol.md
// "Catching up in an idle cluster").
void Simulation::IdleCatchUpCheck() {
  for (const auto& r : replicas_) {
    if (r->byzantine) return;
  }
  SimReplica& lagging = *replicas_[rng_.Below(n_)];
  lagging.wipe_on_crash = false;
  faults_after_traffic_ = true;
  Crash(lagging);
  SimClient& client = *clients_[rng_.Below(clients_.size())];
  client.total = client.completed + rng_.Range(1, 3);
  auto top = [&] {
    uint64_t h = 0;
    for (const auto& r : replicas_) h = std::max(h, r->height());
    return h;
  };
  // The others finish the requests and all reach the same height.
  const bool ordered = TickUntil(liveness_ticks_ + 4000, true, [&] {
    if (client.completed < client.total) return false;
    for (const auto& r : replicas_) {
      if (!r->down && r->height() < top()) return false;
    }
    return true;
  });
  if (!result_.ok) return;
  if (!ordered) {
    Fail(absl::StrCat("idle catch-up: requests not ordered with replica ",
                      lagging.id, " down"));
    return;
  }
  const uint64_t before = lagging.height();
  Restart(lagging);
  if (!result_.ok) return;
  // No client traffic from here on.
  const uint64_t bound = 8ull * params_.view_change_timeout_ticks + 2000;
  const bool caught_up =
      TickUntil(bound, false, [&] { return lagging.height() >= top(); });
  if (!result_.ok) return;
  if (!caught_up) {
    Fail(absl::StrCat("idle catch-up: replica ", lagging.id,
                      " restarted at height ", before, " is at ",
                      lagging.height(), " after ", bound,
                      " idle ticks; the others are at ", top()));
  }
}

// --- Views
// --------------------------------------------------------------------

// A replica whose timer expired while it was cut off moves to the next view
// alone and stays there: f+1 replicas must want a view change before the
// others follow (§4.4 liveness (c)), and it cannot go back (its VIEW-CHANGE
// may still enter a NEW-VIEW). That is allowed; being left behind is not.
bool Simulation::ViewsSettled(uint64_t* ahead) const {
  uint64_t cluster = 0;
  bool any = false;
  for (const auto& r : replicas_) {
    if (r->byzantine || r->down || r->stalled) continue;
    if (r->core().view_active()) {
      cluster = std::max(cluster, r->core().view().value());
      any = true;
    }
  }
  *ahead = 0;
  for (const auto& r : replicas_) {
    if (r->byzantine) continue;
    if (!any || r->down || r->stalled) return false;
    const uint64_t v = r->core().view().value();
    if (!r->core().view_active() && v > cluster) {
      ++*ahead;
    } else if (!r->core().view_active() || v != cluster) {
      return false;
    }
  }
  return true;
}

std::string Simulation::Views() const {
  std::string out;
  for (const auto& r : replicas_) {
    absl::StrAppend(&out, " ", r->id, ":");
    if (r->down) {
      absl::StrAppend(&out, "down");
    } else {
      absl::StrAppend(&out, "v", r->core().view().value(),
                      r->core().view_active() ? "" : "*",
                      r->byzantine ? "(byzantine)" : "");
    }
  }
  return out;
}

// After healing, with no traffic: every correct replica ends active in the
// cluster's view. One that missed a view change must learn it on its own
// (an idle probe names its view; a peer answers with its NEW-VIEW).
void Simulation::ViewCheck() {
  const uint64_t bound = 2ull * core::Options().idle_probe_interval_ticks +
                         8ull * params_.view_change_timeout_ticks + 1000;
  uint64_t ahead = 0;
  const bool one =
      TickUntil(bound, false, [&] { return ViewsSettled(&ahead); });
  result_.ahead_alone += ahead;
  if (result_.ok && !one) {
    Fail(absl::StrCat("view: a correct replica is behind the cluster's view ",
                      bound, " idle ticks after healing:", Views()));
  }
}

// Scenario lying-hint: clients that lie about the primary delay only their
// own requests. Through the run's traffic (no fault injected, nothing lost;
// the idle catch-up check's crash comes after) no correct replica may have
// left view 0.
void Simulation::LyingHintCheck() {
  if (!lying_hint_) return;
  for (const auto& r : replicas_) {
    if (!r->down && r->core().view() != View(0)) {
      Fail(absl::StrCat("lying-hint: replica ", r->id, " is in view ",
                        r->core().view().value(),
                        " after the clients' traffic:", Views()));
      return;
    }
  }
}

// Each crash, partition or stall may cost a few view changes (a timeout,
// a NEW-VIEW lost, a new primary that is down); nothing else may, in the
// scenarios whose primaries are correct: f replicas asking for view changes
// (unprovoked-view-change) must not move anyone. The bound leaves room for
// a lossy network's timeouts.
void Simulation::ViewBoundCheck() {
  const uint64_t faults = crashes_done_ + partitions_done_ + (rejoin_ ? 2 : 0);
  result_.faults = faults;
  for (const auto& r : replicas_) {
    if (!r->byzantine && !r->down) {
      result_.max_view = std::max(result_.max_view, r->core().view().value());
    }
  }
  const std::string& sc = opt_.scenario;
  // Byzantine primaries cause view changes on purpose (a padding replica's
  // padded PRE-PREPAREs are refused, so every view it leads changes too).
  if (sc == "byzantine-primary" || sc == "byzantine-view-change" ||
      sc == "corrupt-primary" || sc == "padding") {
    return;
  }
  const uint64_t bound = kViewsFree + kViewsPerFault * faults;
  if (result_.max_view > bound) {
    Fail(absl::StrCat("views: a correct replica reached view ",
                      result_.max_view, " with ", faults,
                      " faults injected (bound ", bound, "):", Views()));
  }
}

}  // namespace pbft::sim::internal
