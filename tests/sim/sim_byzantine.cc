// What Byzantine replicas do.
#include "tests/sim/sim_internal.h"

namespace pbft::sim::internal {

const char* BehaviourName(Behaviour b) {
  switch (b) {
    case Behaviour::kSilent:
      return "silent";
    case Behaviour::kFakePrimary:
      return "fake-primary";
    case Behaviour::kWrongDigest:
      return "wrong-digest";
    case Behaviour::kEquivocate:
      return "equivocate";
    case Behaviour::kReplay:
      return "replay";
    case Behaviour::kFuture:
      return "future";
    case Behaviour::kGarbage:
      return "garbage";
    case Behaviour::kMixed:
      return "mixed";
    case Behaviour::kCorruptBatch:
      return "corrupt-batch";
    case Behaviour::kPrimaryEquivocate:
      return "primary-equivocate";
    case Behaviour::kPrimaryBadDigest:
      return "primary-bad-digest";
    case Behaviour::kPrimarySkipSeq:
      return "primary-skip-seq";
    case Behaviour::kPrimaryReuseSeq:
      return "primary-reuse-seq";
    case Behaviour::kPrimarySlow:
      return "primary-slow";
    case Behaviour::kStaleViewChange:
      return "stale-view-change";
    case Behaviour::kForgedViewChange:
      return "forged-view-change";
    case Behaviour::kBadNewView:
      return "bad-new-view";
    case Behaviour::kPadVotes:
      return "pad-votes";
    case Behaviour::kUnprovokedViewChange:
      return "unprovoked-view-change";
  }
  return "?";
}

// --- Byzantine backups ------------------------------------------------------

// Re-signs `e` (one of r's own prepare/commit/checkpoint/pre-prepare) with
// its view and seq shifted and, if `digest`, a random digest.
v1::Envelope Simulation::Tamper(const SimReplica& r, const v1::Envelope& e,
                                int64_t view_delta, int64_t seq_delta,
                                bool digest) {
  const std::string random_digest =
      Sha256(absl::StrCat("bogus", rng_.Next())).ToBytes();
  std::string payload;
  // PRE-PREPARE, PREPARE and COMMIT: view, seq and batch digest.
  auto ordered = [&](auto m) {
    if (!m.ParseFromString(e.payload())) return false;
    auto shift = [](uint64_t v, int64_t d) {
      return static_cast<uint64_t>(
          std::max<int64_t>(0, static_cast<int64_t>(v) + d));
    };
    m.set_view(shift(m.view(), view_delta));
    m.set_seq(shift(m.seq(), seq_delta));
    if (digest) m.set_batch_digest(random_digest);
    payload = m.SerializeAsString();
    return true;
  };
  switch (e.type()) {
    case v1::MESSAGE_TYPE_PREPARE:
      if (!ordered(v1::Prepare())) return e;
      break;
    case v1::MESSAGE_TYPE_COMMIT:
      if (!ordered(v1::Commit())) return e;
      break;
    case v1::MESSAGE_TYPE_PRE_PREPARE:
      if (!ordered(v1::PrePrepare())) return e;
      break;
    case v1::MESSAGE_TYPE_CHECKPOINT: {
      v1::Checkpoint m;
      if (!m.ParseFromString(e.payload())) return e;
      if (digest) m.set_state_digest(random_digest);
      payload = m.SerializeAsString();
      break;
    }
    default:
      return e;
  }
  v1::Envelope out = r.signer->Sign(e.type(), std::move(payload));
  *out.mutable_batch() = e.batch();  // A PRE-PREPARE's batch stays beside.
  return out;
}

// A PRE-PREPARE `header` signed by `r` with `batch` beside it.
v1::Envelope SignPrePrepare(
    const SimReplica& r, const v1::PrePrepare& header,
    google::protobuf::RepeatedPtrField<v1::Envelope> batch) {
  v1::Envelope e =
      r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, header.SerializeAsString());
  e.mutable_batch()->Swap(&batch);
  return e;
}

// Another batch of the same requests: reversed, or none at all.
google::protobuf::RepeatedPtrField<v1::Envelope> OtherBatch(
    const v1::Envelope& pre_prepare) {
  google::protobuf::RepeatedPtrField<v1::Envelope> batch = pre_prepare.batch();
  if (batch.size() > 1) {
    std::reverse(batch.begin(), batch.end());
  } else {
    batch.Clear();
  }
  return batch;
}

std::vector<uint32_t> Simulation::Targets(const SimReplica& r,
                                          const core::Outbound& o) const {
  std::vector<uint32_t> targets;
  if (o.broadcast) {
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) targets.push_back(i);
    }
  } else {
    targets.push_back(o.to.value());
  }
  return targets;
}

// A faulty replica's outbound message, changed by its behaviour for this
// message (Pick): each part below returns true when it has sent (or
// dropped) the message itself; otherwise the (possibly changed) envelope
// goes to every target.
void Simulation::ByzantineSend(SimReplica& r, core::Outbound o) {
  const std::vector<uint32_t> targets = Targets(r, o);
  const Behaviour b = Pick(r);
  if (ByzantineViewChange(r, o, b, targets)) return;
  if (o.envelope.type() == v1::MESSAGE_TYPE_PRE_PREPARE && o.broadcast &&
      ByzantinePrimary(r, o, b, targets)) {
    return;
  }
  if (ByzantineMessage(r, o, b, targets)) return;
  EnvPtr e = std::make_shared<v1::Envelope>(std::move(o.envelope));
  for (uint32_t t : targets) SendToReplica(t, e);
}

// A stale VIEW-CHANGE of its own re-sent, a forged VIEW-CHANGE or a forged
// NEW-VIEW.
bool Simulation::ByzantineViewChange(SimReplica& r, core::Outbound& o,
                                     Behaviour b,
                                     const std::vector<uint32_t>& targets) {
  const v1::MessageType type = o.envelope.type();
  if (type == v1::MESSAGE_TYPE_VIEW_CHANGE &&
      b == Behaviour::kStaleViewChange) {
    r.own_view_changes.push_back(std::make_shared<v1::Envelope>(o.envelope));
    if (r.own_view_changes.size() > 8) r.own_view_changes.pop_front();
    if (r.own_view_changes.size() > 1 && rng_.Chance(0.7)) {
      EnvPtr old =
          r.own_view_changes[rng_.Below(r.own_view_changes.size() - 1)];
      for (uint32_t t : targets) SendToReplica(t, old);
      return true;
    }
  }
  if (type == v1::MESSAGE_TYPE_VIEW_CHANGE &&
      b == Behaviour::kForgedViewChange) {
    o.envelope = ForgeViewChange(r, o.envelope);
  }
  if (type == v1::MESSAGE_TYPE_NEW_VIEW && b == Behaviour::kBadNewView) {
    o.envelope = ForgeNewView(r, o.envelope);
  }
  return false;
}

// A faulty primary's PRE-PREPARE: slow, with a bad digest, skipping or
// reusing a sequence number, or two batches for one sequence number.
bool Simulation::ByzantinePrimary(SimReplica& r, const core::Outbound& o,
                                  Behaviour b,
                                  const std::vector<uint32_t>& targets) {
  EnvPtr real = std::make_shared<v1::Envelope>(o.envelope);
  switch (b) {
    case Behaviour::kPrimarySlow: {
      // Just under the view-change timeout: slow, never slow enough.
      const uint64_t late = params_.view_change_timeout_ticks > 20
                                ? params_.view_change_timeout_ticks - 20
                                : 0;
      for (uint32_t t : targets) {
        ++result_.messages_sent;
        Enqueue(false, t, real, late);
        --result_.messages_sent;
      }
      return true;
    }
    case Behaviour::kPrimaryBadDigest:
    case Behaviour::kPrimarySkipSeq: {
      const bool bad_digest = b == Behaviour::kPrimaryBadDigest;
      EnvPtr odd = std::make_shared<v1::Envelope>(
          Tamper(r, o.envelope, 0, bad_digest ? 0 : 1, bad_digest));
      for (uint32_t t : targets) SendToReplica(t, odd);
      return true;
    }
    case Behaviour::kPrimaryReuseSeq: {
      EnvPtr again =
          std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, -1, false));
      for (uint32_t t : targets) {
        SendToReplica(t, real);
        SendToReplica(t, again);
      }
      return true;
    }
    case Behaviour::kPrimaryEquivocate: {
      // Another valid batch for the same seq to half the backups.
      v1::PrePrepare pp;
      if (!pp.ParseFromString(o.envelope.payload())) return false;
      google::protobuf::RepeatedPtrField<v1::Envelope> batch =
          OtherBatch(o.envelope);
      pp.set_batch_digest(BatchDigest(batch).ToBytes());
      EnvPtr other =
          std::make_shared<v1::Envelope>(SignPrePrepare(r, pp, batch));
      for (size_t i = 0; i < targets.size(); ++i) {
        SendToReplica(targets[i], i % 2 == 0 ? real : other);
      }
      return true;
    }
    default:
      return false;
  }
}

// Any replica's misbehaviour: silence, a corrupted batch, tampered,
// padded, conflicting or out-of-window votes.
bool Simulation::ByzantineMessage(SimReplica& r, core::Outbound& o, Behaviour b,
                                  const std::vector<uint32_t>& targets) {
  const v1::MessageType type = o.envelope.type();
  const bool vote = type == v1::MESSAGE_TYPE_PREPARE ||
                    type == v1::MESSAGE_TYPE_COMMIT ||
                    type == v1::MESSAGE_TYPE_CHECKPOINT;
  switch (b) {
    case Behaviour::kSilent:
      return true;
    case Behaviour::kCorruptBatch:
      return type == v1::MESSAGE_TYPE_PRE_PREPARE && o.broadcast &&
             CorruptBatch(r, o, targets);
    case Behaviour::kWrongDigest:
      if (vote) o.envelope = Tamper(r, o.envelope, 0, 0, true);
      return false;
    case Behaviour::kPadVotes:
      o.envelope = r.signer->Sign(type, PadPayload(o.envelope.payload()));
      return false;
    case Behaviour::kEquivocate: {
      if (!vote) return false;
      // Conflicting votes: the truth to some, another digest to others.
      EnvPtr honest = std::make_shared<v1::Envelope>(o.envelope);
      EnvPtr lie =
          std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, 0, true));
      for (uint32_t t : targets) {
        SendToReplica(t, rng_.Chance(0.5) ? honest : lie);
      }
      return true;
    }
    case Behaviour::kFuture:
      // A copy shifted in view or sequence number, then the vote itself.
      if (vote) SendShiftedVote(r, o, targets);
      return false;
    default:
      return false;
  }
}

// Same digest, other requests (reversed, or none at all) to one victim.
bool Simulation::CorruptBatch(SimReplica& r, core::Outbound& o,
                              const std::vector<uint32_t>& targets) {
  v1::PrePrepare pp;
  if (!pp.ParseFromString(o.envelope.payload())) return false;
  const uint32_t victim = rng_.Pick(targets);
  EnvPtr bad = std::make_shared<v1::Envelope>(
      SignPrePrepare(r, pp, OtherBatch(o.envelope)));
  EnvPtr good = std::make_shared<v1::Envelope>(std::move(o.envelope));
  for (uint32_t t : targets) SendToReplica(t, t == victim ? bad : good);
  return true;
}

// An unknown length-delimited field (number 15) appended to a payload: a
// few bytes (not canonical) or more than any vote may hold (over its
// limit).
std::string Simulation::PadPayload(std::string payload) {
  const uint64_t pad = rng_.Pick<uint64_t>({1, 2, 100, 3000, 70000});
  payload.push_back(static_cast<char>((15 << 3) | 2));
  for (uint64_t len = pad;; len >>= 7) {
    payload.push_back(
        static_cast<char>(len < 0x80 ? len : (len & 0x7f) | 0x80));
    if (len < 0x80) break;
  }
  payload.append(pad, 'p');
  return payload;
}

void Simulation::SendShiftedVote(SimReplica& r, const core::Outbound& o,
                                 const std::vector<uint32_t>& targets) {
  const int64_t L = params_.watermark_window;
  const std::vector<std::pair<int64_t, int64_t>> shifts = {
      {1, 0}, {3, 0}, {0, L}, {0, 2 * L}, {0, -L}, {1, L}};
  const auto& [dv, ds] = rng_.Pick(shifts);
  EnvPtr odd =
      std::make_shared<v1::Envelope>(Tamper(r, o.envelope, dv, ds, false));
  for (uint32_t t : targets) SendToReplica(t, odd);
}

// A VIEW-CHANGE that lies: an unproven s*, a broken certificate, its
// certificates left out (a lie no check can catch), or an absurd view.
v1::Envelope Simulation::ForgeViewChange(SimReplica& r, const v1::Envelope& e) {
  v1::ViewChange vc;
  if (!vc.ParseFromString(e.payload())) return e;
  switch (rng_.Below(4)) {
    case 0:
      vc.mutable_stable_checkpoint()->set_seq(vc.stable_checkpoint().seq() +
                                              params_.checkpoint_interval);
      break;
    case 1:
      if (vc.prepared_size() > 0 && vc.prepared(0).prepares_size() > 1) {
        auto* cert = vc.mutable_prepared(0);
        *cert->mutable_prepares(1) = cert->prepares(0);
      } else {
        vc.mutable_stable_checkpoint()->clear_checkpoints();
        vc.mutable_stable_checkpoint()->set_seq(params_.checkpoint_interval);
      }
      break;
    case 2:
      vc.clear_prepared();
      break;
    default:
      vc.set_new_view(vc.new_view() + 1000);
      break;
  }
  return r.signer->Sign(v1::MESSAGE_TYPE_VIEW_CHANGE, vc.SerializeAsString());
}

// A NEW-VIEW whose O does not match its V: an entry (the first, a middle
// one or the last) made null or given another timestamp (a batch kept under
// its digest, or a null entry), one left out, one added, or a VIEW-CHANGE
// removed from V.
v1::Envelope Simulation::ForgeNewView(SimReplica& r, const v1::Envelope& e) {
  v1::NewView nv;
  if (!nv.ParseFromString(e.payload())) return e;
  const uint64_t how = rng_.Below(4);
  if (how == 0 && nv.pre_prepares_size() > 0) {
    const int last = nv.pre_prepares_size() - 1;
    const int at = rng_.Pick<int>({0, last / 2, last});
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(nv.pre_prepares(at).payload()));
    const bool batch = pp.batch_digest() != NullBatchDigest().ToBytes();
    // A batch is made null or keeps its digest under another timestamp
    // (the seq's parity decides); a null entry gets another timestamp.
    if (batch && pp.seq() % 2 == 1) {
      pp.set_batch_digest(NullBatchDigest().ToBytes());
    } else if (batch || rng_.Chance(0.5)) {
      pp.set_timestamp_ms(pp.timestamp_ms() + 1);
    } else {
      pp.set_timestamp_ms(pp.timestamp_ms() > 0 ? pp.timestamp_ms() - 1 : 1);
    }
    *nv.mutable_pre_prepares(at) =
        r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  } else if (how == 1 && nv.pre_prepares_size() > 0) {
    nv.mutable_pre_prepares()->erase(nv.mutable_pre_prepares()->begin());
  } else if (how == 2) {
    v1::PrePrepare pp;
    pp.set_view(nv.view());
    pp.set_seq(nv.pre_prepares_size() + 1000);
    pp.set_batch_digest(NullBatchDigest().ToBytes());
    *nv.add_pre_prepares() =
        r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  } else {
    nv.mutable_view_changes()->RemoveLast();
  }
  return r.signer->Sign(v1::MESSAGE_TYPE_NEW_VIEW, nv.SerializeAsString());
}

void Simulation::ByzantineOnReceive(SimReplica& r, const EnvPtr& e) {
  r.heard.push_back(e);
  if (r.heard.size() > 128) r.heard.pop_front();
  if (e->type() != v1::MESSAGE_TYPE_PRE_PREPARE) return;
  const Behaviour b = Pick(r);
  // React only to the real primary's pre-prepares (not to other fakes,
  // which would amplify without bound).
  v1::PrePrepare orig;
  if (!orig.ParseFromString(e->payload()) || e->sender() != orig.view() % n_) {
    return;
  }
  if (b != Behaviour::kFakePrimary) return;
  // Pose as the primary: the same requests in another batch at the same
  // seq, and again at later seqs, signed by this backup.
  v1::PrePrepare pp;
  if (!pp.ParseFromString(e->payload())) return;
  std::vector<v1::Envelope> fakes;
  v1::PrePrepare alt = pp;
  google::protobuf::RepeatedPtrField<v1::Envelope> alt_batch = OtherBatch(*e);
  alt.set_batch_digest(BatchDigest(alt_batch).ToBytes());
  fakes.push_back(SignPrePrepare(r, alt, alt_batch));
  v1::PrePrepare later = pp;
  later.set_seq(pp.seq() + rng_.Range(1, 3));
  fakes.push_back(SignPrePrepare(r, later, e->batch()));
  for (const v1::Envelope& fake : fakes) {
    EnvPtr fe = std::make_shared<v1::Envelope>(fake);
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, fe);
    }
  }
}

void Simulation::ByzantineTick(SimReplica& r) {
  const Behaviour b = Pick(r);
  if (b == Behaviour::kUnprovokedViewChange && rng_.Chance(0.02)) {
    v1::ViewChange vc;
    const uint64_t view = r.core().view().value();
    vc.set_new_view(rng_.Chance(0.5) ? view + 1 : view + rng_.Range(2, 1000));
    *vc.mutable_stable_checkpoint() = r.core().stable_checkpoint();
    vc.set_replica_id(r.id);
    EnvPtr e = std::make_shared<v1::Envelope>(
        r.signer->Sign(v1::MESSAGE_TYPE_VIEW_CHANGE, vc.SerializeAsString()));
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, e);
    }
  }
  if (b == Behaviour::kReplay && !r.heard.empty() && rng_.Chance(0.3)) {
    // Replay old messages (still validly signed by their senders).
    for (uint64_t i = rng_.Range(1, 3); i > 0; --i) {
      SendToReplica(static_cast<uint32_t>(rng_.Below(n_)),
                    r.heard[rng_.Below(r.heard.size())]);
    }
  }
  if (b == Behaviour::kGarbage && rng_.Chance(0.2)) {
    const std::vector<v1::MessageType> types = {
        v1::MESSAGE_TYPE_PRE_PREPARE, v1::MESSAGE_TYPE_PREPARE,
        v1::MESSAGE_TYPE_COMMIT,      v1::MESSAGE_TYPE_CHECKPOINT,
        v1::MESSAGE_TYPE_VIEW_CHANGE, v1::MESSAGE_TYPE_FETCH_RESPONSE};
    std::string junk;
    for (uint64_t i = rng_.Range(0, 40); i > 0; --i) {
      junk.push_back(static_cast<char>(rng_.Next()));
    }
    SendToReplica(static_cast<uint32_t>(rng_.Below(n_)),
                  std::make_shared<v1::Envelope>(
                      r.signer->Sign(rng_.Pick(types), std::move(junk))));
  }
}

}  // namespace pbft::sim::internal
