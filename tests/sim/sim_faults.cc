// Faults: crashes, partitions, power losses, stalls and rejoins.
#include "tests/sim/sim_internal.h"

namespace pbft::sim::internal {

// The primary of the highest view a correct, running replica is in.
uint32_t Simulation::CurrentPrimary() const {
  uint64_t v = 0;
  for (const auto& r : replicas_) {
    if (!r->down && !r->byzantine) v = std::max(v, r->core().view().value());
  }
  return static_cast<uint32_t>(v % n_);
}

void Simulation::Heal() {
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  partition_until_ = 0;
  last_disturbance_ = tick_;
}

void Simulation::FaultTick() {
  if (partition_until_ != 0 && tick_ >= partition_until_) Heal();
  for (auto& r : replicas_) {
    if (r->down && tick_ >= r->down_until) Restart(*r);
  }
  if (crashes_) {
    uint32_t down = 0;
    for (const auto& r : replicas_) down += r->down ? 1 : 0;
    if (next_crash_ == 0) next_crash_ = rng_.Range(10, 200);
    if (down < f_ && tick_ >= next_crash_ && tick_ < kFaultsEndTick) {
      next_crash_ = tick_ + rng_.Range(50, 800);
      // The primary half the time: the view change is what is tested.
      uint32_t victim = rng_.Chance(0.5)
                            ? CurrentPrimary()
                            : static_cast<uint32_t>(rng_.Below(n_));
      SimReplica& r = *replicas_[victim];
      if (!r.down && !r.byzantine) {
        r.down_until = tick_ + rng_.Range(30, 1500);
        // A wiped replica forgets its votes: it is a faulty replica, so at
        // most f distinct replicas are ever wiped (PBFT promises nothing
        // beyond f faulty ones; docs/operations.md, lost data directory).
        const bool wipe = wipes_ && rng_.Chance(0.3);
        r.wipe_on_crash =
            wipe && (wiped_.size() < f_ || wiped_.count(r.id) > 0);
        if (rng_.Chance(0.3)) {
          r.crash_mid_ready =
              true;  // At its next core::Ready, after persisting.
          r.down_until += 1;
        } else {
          Crash(r);
        }
      }
    }
  }
  if (partitions_ && next_partition_ == 0) {
    next_partition_ = rng_.Range(10, 300);
  }
  if (partitions_ && partition_until_ == 0 && tick_ >= next_partition_ &&
      tick_ < kFaultsEndTick) {
    next_partition_ = tick_ + rng_.Range(100, 1000);
    const uint64_t kind = partition_primary_ ? 0 : rng_.Below(4);
    std::vector<uint32_t> ids;
    for (uint32_t i = 0; i < n_; ++i) ids.push_back(i);
    for (uint32_t i = n_ - 1; i > 0; --i) {  // Shuffle.
      std::swap(ids[i], ids[rng_.Below(i + 1)]);
    }
    std::set<uint32_t> side;
    if (kind == 0) {  // Minority: f replicas, the primary among them.
      side.insert(CurrentPrimary());
      for (uint32_t i = 0; side.size() < f_; ++i) side.insert(ids[i]);
    } else if (kind == 1) {  // Majority lost: two halves, neither a quorum.
      for (uint32_t i = 0; i < n_ / 2; ++i) side.insert(ids[i]);
    } else {  // Minority of random replicas (maybe not the primary).
      for (uint32_t i = 0; i < rng_.Range(1, f_); ++i) side.insert(ids[i]);
    }
    for (uint32_t a = 0; a < n_; ++a) {
      for (uint32_t b = 0; b < n_; ++b) {
        if (side.count(a) == side.count(b)) continue;
        if (kind == 3) {
          // Asymmetric: the cut-off side still hears the others but is not
          // heard (or the reverse).
          blocked_[a][b] = side.count(a) > 0;
        } else {
          blocked_[a][b] = true;
        }
      }
    }
    if (kind == 3 && rng_.Chance(0.5)) {
      for (uint32_t a = 0; a < n_; ++a) {
        for (uint32_t b = 0; b < a; ++b) {
          const bool ab = blocked_[a][b];
          blocked_[a][b] = blocked_[b][a];
          blocked_[b][a] = ab;
        }
      }
    }
    partition_until_ = tick_ + rng_.Range(50, 1500);
    last_disturbance_ = tick_;
    ++partitions_done_;
  }
}

// Scenario power-loss: every replica, or 2f+1 of them, lose power at once
// (each at a random point: between two steps, or right after persisting a
// Ready whose messages never leave) and restart from their durable state
// 30-500 ticks later; 2-5 times, 200-1,200 ticks apart. Not a Byzantine
// fault: safety must hold whatever the number. Then the primary is cut off
// for 2-4 view timeouts, forcing a view change on the restored state.
void Simulation::PowerLossTick() {
  for (auto& r : replicas_) {
    if (r->down && tick_ >= r->down_until) Restart(*r);
  }
  if (partition_until_ != 0 && tick_ >= partition_until_) Heal();
  if (next_crash_ == 0) next_crash_ = rng_.Range(50, 400);
  if (tick_ < next_crash_ || view_change_forced_) return;
  for (const auto& r : replicas_) {
    if (r->down || r->crash_mid_ready) return;  // Episode still running.
  }
  next_crash_ = tick_ + rng_.Range(200, 1200);
  if (power_losses_ == power_losses_max_) {
    const uint32_t primary = CurrentPrimary();
    for (uint32_t i = 0; i < n_; ++i) {
      blocked_[primary][i] = blocked_[i][primary] = i != primary;
    }
    partition_until_ =
        tick_ + rng_.Range(2, 4) * params_.view_change_timeout_ticks;
    last_disturbance_ = tick_;
    view_change_forced_ = true;
    return;
  }
  ++power_losses_;
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < n_; ++i) ids.push_back(i);
  for (uint32_t i = n_ - 1; i > 0; --i) {
    std::swap(ids[i], ids[rng_.Below(i + 1)]);
  }
  if (rng_.Chance(0.5)) ids.resize(2 * f_ + 1);
  for (uint32_t i : ids) {
    SimReplica& r = *replicas_[i];
    r.down_until = tick_ + rng_.Range(30, 500);
    if (rng_.Chance(0.4)) {
      r.crash_mid_ready = true;
    } else {
      Crash(r);
    }
  }
}

// Scenario full-window: from blackout_tick_ on, COMMITs above the cut (the
// checkpoint at or above the last seq pre-prepared) are lost, in half the
// seeds all but those to one backup, which commits and executes the window
// alone; the cut becomes stable, nothing above it executes elsewhere, and
// the primary fills its window h+1..h+L. Once every backup holds prepared
// certificates for all of it, the primary crashes (restarting 30-1,500 ticks
// later): the VIEW-CHANGEs carry a full window and the NEW-VIEW re-proposes L
// batches. COMMITs flow again once every other replica has left view 0.
void Simulation::FullWindowTick() {
  for (auto& r : replicas_) {
    if (r->down && tick_ >= r->down_until) Restart(*r);
  }
  if (full_window_phase_ == 0 && tick_ >= blackout_tick_) {
    // Up to the checkpoint at or above what was pre-prepared, everything
    // commits: that checkpoint becomes stable and the window above it fills.
    const uint64_t k = params_.checkpoint_interval;
    blackout_cut_ = (blackout_cut_ + k - 1) / k * k;
    commit_blackout_ = true;
    last_disturbance_ = tick_;
    full_window_phase_ = 1;
  } else if (full_window_phase_ == 1) {
    for (const auto& r : replicas_) {
      if (r->core().view().value() != 0 || !r->core().view_active()) {
        // A view change before the window filled: not the case under test
        // (the seed fails at the end); COMMITs flow again.
        commit_blackout_ = false;
        full_window_phase_ = 4;
        return;
      }
    }
    if (!WindowFullAtBackups()) return;
    SimReplica& primary = *replicas_[0];
    primary.down_until = tick_ + rng_.Range(30, 1500);
    primary.wipe_on_crash = false;
    Crash(primary);
    full_window_phase_ = 2;
  } else if (full_window_phase_ == 2) {
    for (uint32_t i = 1; i < n_; ++i) {
      if (replicas_[i]->down || replicas_[i]->core().view().value() == 0) {
        return;
      }
    }
    commit_blackout_ = false;
    last_disturbance_ = tick_;
    full_window_phase_ = 3;
  }
}

// Scenario full-window, on the network: before the blackout, notes the
// highest seq pre-prepared; during it, loses the COMMITs above the cut
// (except those to commit_receiver_) and commit_receiver_'s FETCH_RESPONSEs,
// so that the others neither commit nor fetch the window.
bool Simulation::FullWindowDrops(const v1::Envelope& e, uint64_t to) {
  if (!commit_blackout_) {
    v1::PrePrepare pp;
    if (e.type() == v1::MESSAGE_TYPE_PRE_PREPARE &&
        pp.ParseFromString(e.payload())) {
      blackout_cut_ = std::max(blackout_cut_, pp.seq());
    }
    return false;
  }
  if (e.type() == v1::MESSAGE_TYPE_FETCH_RESPONSE) {
    return from_ == commit_receiver_;
  }
  v1::Commit c;
  return e.type() == v1::MESSAGE_TYPE_COMMIT && to != commit_receiver_ &&
         c.ParseFromString(e.payload()) && c.seq() > blackout_cut_;
}

// Every backup, in view 0 with its stable checkpoint at the cut, holds a
// prepared certificate for each seq of its window (low, low + L].
bool Simulation::WindowFullAtBackups() const {
  for (uint32_t i = 1; i < n_; ++i) {
    if (replicas_[i]->down) return false;
    const core::Core& core = replicas_[i]->core();
    if (core.view().value() != 0) return false;
    const uint64_t low = core.low_watermark().value();
    if (low != blackout_cut_) return false;
    std::set<uint64_t> seqs;
    for (const core::Core::PreparedEntry& p : core.PreparedCertificates()) {
      if (p.seq.value() > low) seqs.insert(p.seq.value());
    }
    if (seqs.size() != params_.watermark_window ||
        *seqs.rbegin() != low + params_.watermark_window) {
      return false;
    }
  }
  return true;
}

// Scenario missing-bodies: once, the primary of view 0 is cut off (both
// ways) for 2-4 view timeouts, so that the others change views while the
// starved replicas lack the bodies of what view 0 prepared.
void Simulation::MissingBodiesTick() {
  if (partition_until_ != 0 && tick_ >= partition_until_) Heal();
  if (tick_ != cut_primary_at_) return;
  for (uint32_t i = 1; i < n_; ++i) blocked_[0][i] = blocked_[i][0] = true;
  partition_until_ =
      tick_ + rng_.Range(2, 4) * params_.view_change_timeout_ticks;
  last_disturbance_ = tick_;
  ++partitions_done_;
}

void Simulation::Resume(SimReplica& r) {
  CHECK(r.stalled);
  r.stalled = false;
  last_disturbance_ = tick_;
  std::deque<EnvPtr> held;
  held.swap(r.held);
  for (const EnvPtr& e : held) {
    if (r.down || !result_.ok) break;
    if (rng_.Chance(held_drop_)) continue;  // A stream that overflowed.
    DeliverToReplica(r, e);
  }
}

// A backup victim: the primary is cut off (both ways) so that the backups
// change views, and the victim is taken out at a random point of that.
void Simulation::ForceViewChange(SimReplica& victim) {
  const uint32_t primary = CurrentPrimary();
  if (victim.id != primary) {
    for (uint32_t i = 0; i < n_; ++i) {
      blocked_[primary][i] = blocked_[i][primary] = i != primary;
    }
    last_disturbance_ = tick_;
    TickUntil(rng_.Range(0, 2ull * params_.view_change_timeout_ticks), true,
              [] { return false; });
  }
  if (stall_) {
    victim.stalled = true;
  } else {
    victim.wipe_on_crash = false;
    Crash(victim);
  }
  last_disturbance_ = tick_;
}

// Scenarios restart-during-view-change and stall-through-view-change: a
// replica (the primary most of the time) crashes or stalls while the others
// change views, and returns at a random point (before their NEW-VIEW, or
// long after). The clients keep sending after it returns (busy) or have
// stopped before (idle). It must then be active in the others' view, busy
// or idle, however many fetched batches it executes meanwhile.
bool Simulation::RejoinRun() {
  for (auto& c : clients_) c->total = UINT64_MAX / 2;
  auto stop_clients = [&] {
    for (auto& c : clients_) c->total = c->completed + (c->outstanding ? 1 : 0);
  };
  auto never = [] { return false; };
  TickUntil(rng_.Range(50, 400), true, never);
  const uint32_t primary = CurrentPrimary();
  const uint32_t victim_id =
      rng_.Chance(0.7)
          ? primary
          : (primary + 1 + static_cast<uint32_t>(rng_.Below(n_ - 1))) % n_;
  SimReplica& victim = *replicas_[victim_id];
  if (!result_.ok) return false;
  ForceViewChange(victim);
  const uint64_t away = rng_.Range(30, 1500);
  const uint64_t heal_at =
      tick_ + rng_.Range(0, params_.view_change_timeout_ticks);
  const uint64_t idle_at = busy_ ? UINT64_MAX : tick_ + rng_.Range(0, away);
  TickUntil(away, true, [&] {
    if (tick_ >= heal_at) Heal();
    if (tick_ >= idle_at) stop_clients();
    return false;
  });
  if (!result_.ok) return false;
  Heal();
  if (!busy_) stop_clients();
  if (stall_) {
    Resume(victim);
  } else {
    Restart(victim);
  }
  const uint64_t back = tick_;
  uint64_t ahead = 0;
  const bool joined =
      TickUntil(liveness_ticks_, true, [&] { return ViewsSettled(&ahead); });
  if (!result_.ok) return false;
  if (!joined) {
    Fail(absl::StrCat("rejoin: a correct replica is behind the cluster's view ",
                      tick_ - back, " ticks after replica ", victim.id,
                      " returned (", busy_ ? "busy" : "idle", "):", Views()));
    return false;
  }
  result_.max_rejoin_ticks = std::max(result_.max_rejoin_ticks, tick_ - back);
  stop_clients();
  return true;
}

}  // namespace pbft::sim::internal
