// The crypto interfaces of the PBFT core: it signs what it originates with
// a Signer and checks envelopes nested in other messages with a Verifier.
// Production implementations: replica/core/crypto.h (Ed25519); the
// simulator's are in tests/sim/sim_crypto.h. Both are used from the core's
// owner thread only.
#ifndef PBFT_LEDGER_REPLICA_CORE_SIGNING_H_
#define PBFT_LEDGER_REPLICA_CORE_SIGNING_H_

#include <string>

#include "pbft/v1/pbft.pb.h"

namespace pbft::core {

// Signs the messages this replica originates (Ed25519 in production:
// EnvelopeSigner; a cheap deterministic fake in the simulator).
class Signer {
 public:
  virtual ~Signer() = default;
  virtual v1::Envelope Sign(v1::MessageType type,
                            std::string payload) const = 0;
};

// Checks sender and signature of an envelope nested inside another message
// (client requests inside a PRE-PREPARE, COMMITs in a certificate,
// CHECKPOINTs in a proof). True iff the envelope is authentic.
class Verifier {
 public:
  virtual ~Verifier() = default;
  virtual bool Verify(const v1::Envelope& envelope) const = 0;
};

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_SIGNING_H_
