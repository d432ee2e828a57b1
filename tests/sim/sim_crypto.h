// Crypto for the simulator, tests and core-bench, behind the core's Signer
// and Verifier interfaces.
//
//  - FakeSigner/FakeVerifier: a deterministic keyed-hash "signature"
//    (64 bytes: SHA-256(secret || SigningBytes) and its hash). Unforgeable
//    inside the simulator because each simulated principal only ever holds
//    its own signer. About 2 µs per sign or verify against 14/40 µs for
//    Ed25519, so thousands of seeds run in minutes.
//  - Ed25519 keys for the same principals (SimCrypto with real = true), to
//    run the simulator with the production signer (--real-crypto).
//  - NullSigner/NullVerifier: no crypto at all (core-bench).
//
// Principals: replica i and client c (ids >= 1). Immutable; thread-safe.
#ifndef PBFT_LEDGER_TESTS_SIM_SIM_CRYPTO_H_
#define PBFT_LEDGER_TESTS_SIM_SIM_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "replica/core/core.h"
#include "replica/core/crypto.h"

namespace pbft::sim {

inline constexpr char kSimClusterId[] = "sim-cluster";

class FakeSigner : public core::Signer {
 public:
  FakeSigner(std::string secret, uint64_t sender)
      : secret_(std::move(secret)), sender_(sender) {}
  v1::Envelope Sign(v1::MessageType type, std::string payload) const override;

 private:
  std::string secret_;
  uint64_t sender_;
};

// Creates signers and the verifier for n replicas and clients 1..clients.
class SimCrypto {
 public:
  SimCrypto(uint32_t n, uint32_t clients, bool real);

  std::unique_ptr<core::Signer> ReplicaSigner(uint32_t id) const;
  std::unique_ptr<core::Signer> ClientSigner(uint64_t id) const;
  const core::Verifier& verifier() const { return *verifier_; }

 private:
  class FakeVerifier;
  uint32_t n_;
  uint32_t clients_;
  bool real_;
  std::vector<EnvelopeSigner> real_replicas_;
  std::vector<EnvelopeSigner> real_clients_;
  std::unique_ptr<EnvelopeVerifier> real_verifier_;
  std::unique_ptr<core::Verifier> verifier_;
};

class NullSigner : public core::Signer {
 public:
  explicit NullSigner(uint64_t sender) : sender_(sender) {}
  v1::Envelope Sign(v1::MessageType type, std::string payload) const override {
    v1::Envelope e;
    e.set_type(type);
    e.set_sender(sender_);
    e.set_payload(std::move(payload));
    return e;
  }

 private:
  uint64_t sender_;
};

class NullVerifier : public core::Verifier {
 public:
  bool Verify(const v1::Envelope&) const override { return true; }
};

}  // namespace pbft::sim

#endif  // PBFT_LEDGER_TESTS_SIM_SIM_CRYPTO_H_
