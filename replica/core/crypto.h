// Production crypto for the core: the Signer and Verifier interfaces on top
// of common/'s Ed25519 EnvelopeSigner and EnvelopeVerifier.
//
// Both borrow the wrapped object, which must outlive them. Thread-safe as
// the wrapped objects are.
#ifndef PBFT_LEDGER_REPLICA_CORE_CRYPTO_H_
#define PBFT_LEDGER_REPLICA_CORE_CRYPTO_H_

#include <string>

#include "common/envelope.h"
#include "replica/core/core.h"

namespace pbft::core {

class Ed25519Signer : public Signer {
 public:
  explicit Ed25519Signer(const EnvelopeSigner* signer) : signer_(signer) {}
  v1::Envelope Sign(v1::MessageType type, std::string payload) const override;

 private:
  const EnvelopeSigner* signer_;
};

class Ed25519Verifier : public Verifier {
 public:
  explicit Ed25519Verifier(const EnvelopeVerifier* verifier)
      : verifier_(verifier) {}
  bool Verify(const v1::Envelope& envelope) const override;

 private:
  const EnvelopeVerifier* verifier_;
};

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_CRYPTO_H_
