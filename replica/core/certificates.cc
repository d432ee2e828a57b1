#include "replica/core/certificates.h"

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/messages.h"

namespace pbft::core {

std::vector<const Vote*> MatchingVotes(const VotesBySender& votes,
                                       const Digest& digest,
                                       std::optional<ReplicaId> except) {
  std::vector<const Vote*> out;
  for (const auto& [sender, vote] : votes) {
    if (sender != except && vote.digest == digest) out.push_back(&vote);
  }
  return out;
}

CertificateChecker::CertificateChecker(uint32_t n, uint32_t f,
                                       uint32_t checkpoint_interval,
                                       uint32_t watermark_window,
                                       const Verifier* verifier)
    : n_(n),
      f_(f),
      checkpoint_interval_(checkpoint_interval),
      watermark_window_(watermark_window),
      verifier_(verifier) {
  CHECK_EQ(n_, 3 * f_ + 1);
  CHECK_GT(checkpoint_interval_, 0u);
  CHECK(verifier_ != nullptr);
}

bool CertificateChecker::CheckpointProof(const v1::CheckpointProof& proof,
                                         Digest* digest) const {
  if (!ParseDigest(proof.state_digest(), digest) || proof.seq() == 0 ||
      proof.seq() % checkpoint_interval_ != 0) {
    return false;
  }
  return DistinctQuorum(
      proof.checkpoints(), n_, quorum(), [&](const v1::Envelope& e) {
        v1::Checkpoint cp;
        return e.type() == v1::MESSAGE_TYPE_CHECKPOINT &&
               cp.ParseFromString(e.payload()) &&
               cp.replica_id() == e.sender() && cp.seq() == proof.seq() &&
               cp.state_digest() == proof.state_digest() &&
               verifier_->Verify(e);
      });
}

bool CertificateChecker::CertifiedBatch(const v1::CertifiedBatch& b,
                                        v1::PrePrepare* pp, Digest* d) const {
  const v1::Envelope& pe = b.pre_prepare();
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE || !Decode(pe, pp, d) ||
      pe.sender() != PrimaryOf(View(pp->view())).value() ||
      BatchDigest(BatchOf(pe, *pp)) != *d || !verifier_->Verify(pe)) {
    return false;
  }
  return DistinctQuorum(
      b.certificate().commits(), n_, quorum(), [&](const v1::Envelope& e) {
        v1::Commit c;
        return e.type() == v1::MESSAGE_TYPE_COMMIT &&
               c.ParseFromString(e.payload()) && c.replica_id() == e.sender() &&
               c.view() == pp->view() && c.seq() == pp->seq() &&
               c.batch_digest() == pp->batch_digest() && verifier_->Verify(e);
      });
}

bool CertificateChecker::PreparedCertificate(
    const v1::PreparedCertificate& cert, View target, Seq low) const {
  const v1::Envelope& pe = cert.pre_prepare();
  v1::PrePrepare pp;
  Digest d;
  if (pe.type() != v1::MESSAGE_TYPE_PRE_PREPARE || pe.batch_size() > 0 ||
      !Decode(pe, &pp, &d) || pp.legacy_requests_size() > 0) {
    return false;
  }
  const View v(pp.view());
  const Seq s(pp.seq());
  if (v >= target || pe.sender() != PrimaryOf(v).value() || s <= low ||
      s > low + watermark_window_ ||
      static_cast<uint32_t>(cert.prepares_size()) > n_ ||
      !verifier_->Verify(pe)) {
    return false;
  }
  return DistinctQuorum(
      cert.prepares(), n_, quorum() - 1, [&](const v1::Envelope& e) {
        v1::Prepare m;
        return e.type() == v1::MESSAGE_TYPE_PREPARE &&
               e.sender() != PrimaryOf(v).value() &&
               m.ParseFromString(e.payload()) && m.replica_id() == e.sender() &&
               m.view() == pp.view() && m.seq() == pp.seq() &&
               m.batch_digest() == pp.batch_digest() && verifier_->Verify(e);
      });
}

bool CertificateChecker::ViewChange(const v1::Envelope& e, View target,
                                    v1::ViewChange* vc) const {
  if (e.type() != v1::MESSAGE_TYPE_VIEW_CHANGE || e.sender() >= n_ ||
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
    if (!CheckpointProof(proof, &d)) return false;
  }
  if (static_cast<uint32_t>(vc->prepared_size()) > watermark_window_) {
    return false;
  }
  Seq prev = low;
  for (const v1::PreparedCertificate& cert : vc->prepared()) {
    if (!PreparedCertificate(cert, target, low)) return false;
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(cert.pre_prepare().payload()));
    if (Seq(pp.seq()) <= prev) return false;
    prev = Seq(pp.seq());
  }
  return true;
}

}  // namespace pbft::core
