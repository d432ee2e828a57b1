// Ed25519 keys and signatures over domain-separated bytes (libsodium), and
// SHA-256 (OpenSSL's libcrypto, see Sha256 below).
//
// Domain separation: every signature covers
//   SigningBytes(type, cluster_id, payload) =
//     "pbft-ledger/v1\0" || u32be(type) || u32be(len(cluster_id)) ||
//     cluster_id || SHA-256(payload)
// so a signature made for one message type, or in one cluster, is never
// valid for another. The payload enters as its SHA-256, which keeps the
// cost of signing a large pre-prepare at one hash pass.
//
// All functions are thread-safe. SecretKey wipes its memory on destruction.
#ifndef PBFT_LEDGER_COMMON_CRYPTO_H_
#define PBFT_LEDGER_COMMON_CRYPTO_H_

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/types.h"

// OpenSSL's EVP_MD_CTX (openssl/types.h), without its headers here.
struct evp_md_ctx_st;

namespace pbft::crypto {

inline constexpr size_t kPublicKeySize = 32;
inline constexpr size_t kSeedSize = 32;
inline constexpr size_t kSignatureSize = 64;
inline constexpr absl::string_view kDomainPrefix{"pbft-ledger/v1\0", 15};

// Initialises libsodium once; every function below calls it. Aborts if the
// library cannot initialise (no entropy source): nothing can be signed then.
void EnsureInitialized();

class PublicKey {
 public:
  PublicKey() : bytes_{} {}
  // Fails unless `bytes` is exactly kPublicKeySize bytes.
  static absl::StatusOr<PublicKey> FromBytes(absl::string_view bytes);
  // Accepts standard base64 (the config's encoding) or 64 hex digits.
  static absl::StatusOr<PublicKey> FromText(absl::string_view text);

  absl::string_view view() const {
    return {reinterpret_cast<const char*>(bytes_.data()), kPublicKeySize};
  }
  std::string ToBytes() const { return std::string(view()); }
  std::string ToBase64() const;
  std::string ToHex() const;

  friend bool operator==(const PublicKey&, const PublicKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PublicKey& k) {
    return H::combine_contiguous(std::move(h), k.bytes_.data(), kPublicKeySize);
  }

 private:
  std::array<uint8_t, kPublicKeySize> bytes_;
};

class SecretKey {
 public:
  // A fresh key from the system's CSPRNG.
  static SecretKey Generate();
  // Deterministic key from a 32-byte seed (tests, simulator, key files).
  static absl::StatusOr<SecretKey> FromSeed(absl::string_view seed);

  SecretKey(const SecretKey& other);
  SecretKey& operator=(const SecretKey& other);
  ~SecretKey();

  const PublicKey& public_key() const { return public_key_; }
  // The 32-byte seed; what a key file stores. Handle with care.
  std::string Seed() const;
  // Ed25519 signature (kSignatureSize bytes) over `message`.
  std::string Sign(absl::string_view message) const;

 private:
  SecretKey() = default;
  std::array<uint8_t, 64> secret_{};  // libsodium's seed || public key form.
  PublicKey public_key_;
};

// True iff `signature` is a valid Ed25519 signature by `key` over `message`.
bool Verify(const PublicKey& key, absl::string_view message,
            absl::string_view signature);

// The domain-separated bytes a signature covers (see the file comment).
std::string SigningBytes(uint32_t type, absl::string_view cluster_id,
                         absl::string_view payload);

// SHA-256 is OpenSSL's: it uses the CPU's SHA extensions where there are
// some (several times libsodium's portable code, which matters for the
// request digests every replica computes for every message).
Digest Sha256(absl::string_view data);
// SHA-256 of the concatenation of `parts`, without concatenating them.
Digest Sha256Of(std::initializer_list<absl::string_view> parts);

// Incremental SHA-256. Move-only.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&& other) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&& other) noexcept;
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(absl::string_view data);
  // Once per hasher.
  Digest Finish();

 private:
  evp_md_ctx_st* ctx_;
};

// Cryptographically secure random bytes.
std::string RandomBytes(size_t n);

}  // namespace pbft::crypto

#endif  // PBFT_LEDGER_COMMON_CRYPTO_H_
