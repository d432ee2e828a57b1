// Checkpoints and garbage collection (Castro & Liskov §4.3): own
// CHECKPOINTs every K seqs, stable at 2f+1 matching, the log discarded
// below the stable checkpoint; verified proofs adopted from peers.

#include "common/check.h"
#include "replica/core/core.h"
#include "replica/core/messages.h"

namespace pbft::core {

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
  if (!Decode(e, &m, &d) || m.replica_id() != e.sender() || m.seq() == 0 ||
      m.seq() % options_.params.checkpoint_interval != 0) {
    Drop(DropReason::kMalformed);
    return;
  }
  const Seq s(m.seq());
  NoteSeq(e.sender(), s, &highest_seq_seen_);
  if (s <= low_watermark_) {  // Old: already stable here.
    AnswerStableVote(ReplicaId(e.sender()), s, d);
    return;
  }
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

// Our stable checkpoint is sent again only to a peer that shows it lacks
// it: a replica keeps sending its own vote for a checkpoint until that
// checkpoint is stable there (Retransmit), so its vote for our stable one,
// or for an older one, means it needs ours for the stable one (with which
// it becomes stable there once it executed that far). At most once per
// retransmission period per peer; at rest, no CHECKPOINT is sent at all.
void Core::AnswerStableVote(ReplicaId from, Seq s, const Digest& d) {
  if (from.value() >= options_.n || from == options_.id) return;
  auto it = checkpoints_.find(low_watermark_);
  if (it == checkpoints_.end()) return;
  auto own = it->second.find(options_.id);
  if (own == it->second.end()) return;
  // Another digest for the same checkpoint: ours would not help it; a
  // correct replica never votes so, so it is counted as a conflicting vote.
  if (s == low_watermark_ && own->second.digest != d) {
    Drop(DropReason::kConflictingVote);
    return;
  }
  uint64_t& until = stable_offered_until_[from.value()];
  if (tick_ < until) return;
  until = tick_ + options_.retransmit_ticks;
  SendTo(from, own->second.envelope);
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
  const std::vector<const Vote*> matching = MatchingVotes(it->second, d);
  if (matching.size() < quorum_) return;
  std::vector<v1::Envelope> proof;
  for (uint32_t i = 0; i < quorum_; ++i) {
    proof.push_back(matching[i]->envelope);
  }
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

// §4.3/§4.4: a verified proof that s (above h) is stable at 2f+1 replicas,
// from a fetch response or as a NEW-VIEW's min-s. Stable here at once if
// this replica executed s with the same state digest; if s is ahead of what
// it executed, kept so that it fetches up to it (state transfer).
void Core::AdoptStableProof(Seq s, const Digest& digest,
                            const v1::CheckpointProof& proof) {
  CHECK_GT(s, low_watermark_);
  if (s > last_executed_) {
    AdoptFetchedProof(s, proof);
    return;
  }
  auto cit = checkpoints_.find(s);
  if (cit == checkpoints_.end()) return;
  auto own = cit->second.find(options_.id);
  if (own != cit->second.end() && own->second.digest == digest) {
    MakeStable(s, digest,
               std::vector<v1::Envelope>(proof.checkpoints().begin(),
                                         proof.checkpoints().end()));
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

}  // namespace pbft::core
