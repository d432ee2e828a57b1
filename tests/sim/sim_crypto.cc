#include "tests/sim/sim_crypto.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/crypto.h"

namespace pbft::sim {
namespace {

std::string PrincipalSecret(bool client, uint64_t id) {
  return crypto::Sha256(
             absl::StrCat("pbft-sim/", client ? "client/" : "replica/", id))
      .ToBytes();
}

std::string FakeSignature(const std::string& secret, uint32_t type,
                          absl::string_view payload) {
  std::string bytes = secret;
  const std::string signing =
      crypto::SigningBytes(type, kSimClusterId, payload);
  bytes.append(signing);
  const Digest a = crypto::Sha256(bytes);
  const Digest b = crypto::Sha256(a.view());
  return a.ToBytes() + b.ToBytes();
}

}  // namespace

v1::Envelope FakeSigner::Sign(v1::MessageType type, std::string payload) const {
  v1::Envelope e;
  e.set_type(type);
  e.set_sender(sender_);
  e.set_signature(FakeSignature(secret_, static_cast<uint32_t>(type), payload));
  e.set_payload(std::move(payload));
  return e;
}

class SimCrypto::FakeVerifier : public core::Verifier {
 public:
  FakeVerifier(uint32_t n, uint32_t clients) : n_(n), clients_(clients) {}
  bool Verify(const v1::Envelope& e) const override {
    const bool client = e.type() == v1::MESSAGE_TYPE_REQUEST;
    if (client ? (e.sender() == 0 || e.sender() > clients_)
               : e.sender() >= n_) {
      return false;
    }
    if (e.type() == v1::MESSAGE_TYPE_UNSPECIFIED ||
        !v1::MessageType_IsValid(e.type())) {
      return false;
    }
    return e.signature() == FakeSignature(PrincipalSecret(client, e.sender()),
                                          static_cast<uint32_t>(e.type()),
                                          e.payload());
  }

 private:
  uint32_t n_;
  uint32_t clients_;
};

namespace {
crypto::SecretKey RealKey(bool client, uint64_t id) {
  auto k = crypto::SecretKey::FromSeed(PrincipalSecret(client, id));
  CHECK(k.ok());
  return *k;
}
}  // namespace

SimCrypto::SimCrypto(uint32_t n, uint32_t clients, bool real)
    : n_(n), clients_(clients), real_(real) {
  if (!real_) {
    verifier_ = std::make_unique<FakeVerifier>(n, clients);
    return;
  }
  std::vector<crypto::PublicKey> replica_keys;
  absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys;
  for (uint32_t i = 0; i < n; ++i) {
    real_replicas_.emplace_back(kSimClusterId, i, RealKey(false, i));
    replica_keys.push_back(real_replicas_.back().public_key());
  }
  for (uint64_t c = 1; c <= clients; ++c) {
    real_clients_.emplace_back(kSimClusterId, c, RealKey(true, c));
    client_keys[c] = real_clients_.back().public_key();
  }
  real_verifier_ = std::make_unique<EnvelopeVerifier>(
      kSimClusterId, std::move(replica_keys), std::move(client_keys),
      ProtocolParams::kDefaultMessageBytesMax);
  verifier_ = std::make_unique<core::Ed25519Verifier>(real_verifier_.get());
}

std::unique_ptr<core::Signer> SimCrypto::ReplicaSigner(uint32_t id) const {
  CHECK_LT(id, n_);
  if (real_) return std::make_unique<core::Ed25519Signer>(&real_replicas_[id]);
  return std::make_unique<FakeSigner>(PrincipalSecret(false, id), id);
}

std::unique_ptr<core::Signer> SimCrypto::ClientSigner(uint64_t id) const {
  CHECK_GE(id, 1u);
  CHECK_LE(id, clients_);
  if (real_)
    return std::make_unique<core::Ed25519Signer>(&real_clients_[id - 1]);
  return std::make_unique<FakeSigner>(PrincipalSecret(true, id), id);
}

}  // namespace pbft::sim
