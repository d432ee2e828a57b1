#include "replica/core/crypto.h"

#include "common/check.h"

namespace pbft::core {

v1::Envelope Ed25519Signer::Sign(v1::MessageType type,
                                 std::string payload) const {
  return signer_->Sign(type, std::move(payload));
}

bool Ed25519Verifier::Verify(const v1::Envelope& envelope) const {
  return verifier_->Check(envelope) == EnvelopeError::kOk;
}

}  // namespace pbft::core
