// Quorum and certificate checks of the PBFT core (Castro & Liskov, §4.2
// prepared and committed-local, §4.3 stable checkpoints, §4.4 VIEW-CHANGE
// and its prepared certificates; docs/protocol.md). Pure: the answers
// depend only on the arguments and the cluster's shape, so they are tested
// on tables (tests/core/certificates_test.cc).
//
// CertificateChecker borrows its Verifier (which must outlive it); it is
// immutable and thread-compatible. Internal to replica/core.
#ifndef PBFT_LEDGER_REPLICA_CORE_CERTIFICATES_H_
#define PBFT_LEDGER_REPLICA_CORE_CERTIFICATES_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/protocol_params.h"
#include "common/types.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/core/message_log.h"
#include "replica/core/signing.h"

namespace pbft::core {

// The votes of `votes` that name `digest`, in sender order, leaving out
// `except` (the primary, for PREPAREs: §4.2, its vote is its PRE-PREPARE).
std::vector<const Vote*> MatchingVotes(
    const VotesBySender& votes, const Digest& digest,
    std::optional<ReplicaId> except = std::nullopt);

// §4.2: how many PREPAREs from backups of view `view` (primary `primary`)
// match `digest`; prepared needs 2f of them.
inline uint32_t MatchingPrepares(const VotesBySender& prepares,
                                 ReplicaId primary, const Digest& digest) {
  return static_cast<uint32_t>(MatchingVotes(prepares, digest, primary).size());
}

// The distinct-signers rule of every certificate: true iff each envelope
// comes from a replica below `n` that signed no other envelope of the list,
// passes `valid` (its fields and its signature), and there are at least
// `need` of them. Stops at the first that fails, so that `valid` (a
// signature check) runs at most once per replica.
template <typename Valid>
bool DistinctQuorum(
    const google::protobuf::RepeatedPtrField<v1::Envelope>& envelopes,
    uint32_t n, uint32_t need, Valid valid) {
  std::vector<uint64_t> senders;
  for (const v1::Envelope& e : envelopes) {
    if (e.sender() >= n ||
        std::find(senders.begin(), senders.end(), e.sender()) !=
            senders.end() ||
        !valid(e)) {
      return false;
    }
    senders.push_back(e.sender());
  }
  return senders.size() >= need;
}

class CertificateChecker {
 public:
  // n = 3f+1 replicas; K = checkpoint_interval, L = watermark_window.
  CertificateChecker(uint32_t n, uint32_t f, uint32_t checkpoint_interval,
                     uint32_t watermark_window, const Verifier* verifier);

  uint32_t quorum() const { return Quorum(f_); }
  ReplicaId PrimaryOf(View v) const {
    return ReplicaId(static_cast<uint32_t>(v.value() % n_));
  }

  // §4.3: a stable checkpoint proof is 2f+1 signed CHECKPOINTs from
  // distinct replicas for (seq, state digest), seq a positive multiple of
  // K. Sets `digest` to the proof's state digest.
  bool CheckpointProof(const v1::CheckpointProof& proof, Digest* digest) const;
  // A certified batch is committed at 2f+1 replicas' word: the PRE-PREPARE
  // signed by the primary of its view, the batch matching its digest, and
  // 2f+1 valid COMMITs from distinct replicas for (view, seq, digest). The
  // client signatures inside are not re-checked: f+1 correct replicas
  // prepared the batch, and they checked them. Sets `pp` and `digest`.
  bool CertifiedBatch(const v1::CertifiedBatch& batch, v1::PrePrepare* pp,
                      Digest* digest) const;
  // §4.4: a prepared certificate is the PRE-PREPARE header (no batch)
  // signed by the primary of its view (< target), seq in (low, low + L],
  // and 2f matching PREPAREs from distinct backups.
  bool PreparedCertificate(const v1::PreparedCertificate& cert, View target,
                           Seq low) const;
  // §4.4 valid VIEW-CHANGE for `target`: C proves s* (none for s* = 0),
  // every certificate in P is well formed, at most one per seq,
  // ascending, within (s*, s*+L]. Does not check the envelope's own
  // signature (the shell did, or the caller does). Sets `vc`.
  bool ViewChange(const v1::Envelope& e, View target, v1::ViewChange* vc) const;

 private:
  const uint32_t n_;
  const uint32_t f_;
  const uint32_t checkpoint_interval_;
  const uint32_t watermark_window_;
  const Verifier* const verifier_;
};

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_CERTIFICATES_H_
