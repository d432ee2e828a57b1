#include "common/crypto.h"

#include <sodium.h>

#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/check.h"
#include "common/codec.h"

namespace ledger::crypto {

static_assert(kPublicKeySize == crypto_sign_PUBLICKEYBYTES);
static_assert(kSeedSize == crypto_sign_SEEDBYTES);
static_assert(kSignatureSize == crypto_sign_BYTES);
static_assert(crypto_sign_SECRETKEYBYTES == 64);
static_assert(Digest::kSize == crypto_hash_sha256_BYTES);
static_assert(sizeof(crypto_hash_sha256_state) <= 128);

void EnsureInitialized() {
  static std::once_flag once;
  std::call_once(once, [] { CHECK_GE(sodium_init(), 0); });
}

absl::StatusOr<PublicKey> PublicKey::FromBytes(absl::string_view bytes) {
  if (bytes.size() != kPublicKeySize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "public key must be ", kPublicKeySize, " bytes, got ", bytes.size()));
  }
  PublicKey k;
  std::memcpy(k.bytes_.data(), bytes.data(), kPublicKeySize);
  return k;
}

absl::StatusOr<PublicKey> PublicKey::FromText(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text.size() == 2 * kPublicKeySize &&
      std::all_of(text.begin(), text.end(),
                  [](char c) { return absl::ascii_isxdigit(c); })) {
    return FromBytes(absl::HexStringToBytes(text));
  }
  std::string raw;
  if (!absl::Base64Unescape(text, &raw)) {
    return absl::InvalidArgumentError(
        "public key is neither base64 nor 64 hex digits");
  }
  return FromBytes(raw);
}

std::string PublicKey::ToBase64() const { return absl::Base64Escape(view()); }
std::string PublicKey::ToHex() const { return absl::BytesToHexString(view()); }

SecretKey SecretKey::Generate() {
  EnsureInitialized();
  SecretKey k;
  std::array<uint8_t, kPublicKeySize> pk;
  crypto_sign_keypair(pk.data(), k.secret_.data());
  k.public_key_ = *PublicKey::FromBytes(
      {reinterpret_cast<const char*>(pk.data()), pk.size()});
  return k;
}

absl::StatusOr<SecretKey> SecretKey::FromSeed(absl::string_view seed) {
  EnsureInitialized();
  if (seed.size() != kSeedSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key seed must be ", kSeedSize, " bytes, got ", seed.size()));
  }
  SecretKey k;
  std::array<uint8_t, kPublicKeySize> pk;
  crypto_sign_seed_keypair(pk.data(), k.secret_.data(),
                           reinterpret_cast<const uint8_t*>(seed.data()));
  k.public_key_ = *PublicKey::FromBytes(
      {reinterpret_cast<const char*>(pk.data()), pk.size()});
  return k;
}

SecretKey::SecretKey(const SecretKey& other)
    : secret_(other.secret_), public_key_(other.public_key_) {}

SecretKey& SecretKey::operator=(const SecretKey& other) {
  secret_ = other.secret_;
  public_key_ = other.public_key_;
  return *this;
}

SecretKey::~SecretKey() { sodium_memzero(secret_.data(), secret_.size()); }

std::string SecretKey::Seed() const {
  std::string seed(kSeedSize, '\0');
  crypto_sign_ed25519_sk_to_seed(reinterpret_cast<uint8_t*>(seed.data()),
                                 secret_.data());
  return seed;
}

std::string SecretKey::Sign(absl::string_view message) const {
  std::string sig(kSignatureSize, '\0');
  crypto_sign_detached(reinterpret_cast<uint8_t*>(sig.data()), nullptr,
                       reinterpret_cast<const uint8_t*>(message.data()),
                       message.size(), secret_.data());
  return sig;
}

bool Verify(const PublicKey& key, absl::string_view message,
            absl::string_view signature) {
  EnsureInitialized();
  if (signature.size() != kSignatureSize) return false;
  return crypto_sign_verify_detached(
             reinterpret_cast<const uint8_t*>(signature.data()),
             reinterpret_cast<const uint8_t*>(message.data()), message.size(),
             reinterpret_cast<const uint8_t*>(key.view().data())) == 0;
}

std::string SigningBytes(uint32_t type, absl::string_view cluster_id,
                         absl::string_view payload) {
  std::string out;
  out.reserve(kDomainPrefix.size() + 8 + cluster_id.size() + Digest::kSize);
  codec::Writer w(&out);
  w.PutRaw(kDomainPrefix);
  w.PutU32(type);
  w.PutBytes(cluster_id);
  w.PutRaw(Sha256(payload).view());
  return out;
}

Digest Sha256(absl::string_view data) {
  EnsureInitialized();
  std::array<uint8_t, Digest::kSize> out;
  crypto_hash_sha256(out.data(), reinterpret_cast<const uint8_t*>(data.data()),
                     data.size());
  return Digest(out);
}

Sha256Hasher::Sha256Hasher() {
  EnsureInitialized();
  crypto_hash_sha256_init(reinterpret_cast<crypto_hash_sha256_state*>(state_));
}

void Sha256Hasher::Update(absl::string_view data) {
  crypto_hash_sha256_update(reinterpret_cast<crypto_hash_sha256_state*>(state_),
                            reinterpret_cast<const uint8_t*>(data.data()),
                            data.size());
}

Digest Sha256Hasher::Finish() {
  std::array<uint8_t, Digest::kSize> out;
  crypto_hash_sha256_final(reinterpret_cast<crypto_hash_sha256_state*>(state_),
                           out.data());
  return Digest(out);
}

std::string RandomBytes(size_t n) {
  EnsureInitialized();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

}  // namespace ledger::crypto
