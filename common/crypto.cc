#include "common/crypto.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/check.h"
#include "common/codec.h"

namespace pbft::crypto {

static_assert(kPublicKeySize == crypto_sign_PUBLICKEYBYTES);
static_assert(kSeedSize == crypto_sign_SEEDBYTES);
static_assert(kSignatureSize == crypto_sign_BYTES);
static_assert(crypto_sign_SECRETKEYBYTES == 64);
static_assert(Digest::kSize == crypto_hash_sha256_BYTES);

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

namespace {

// Fetched once: EVP_sha256() would look the implementation up again in
// every EVP_DigestInit_ex (OpenSSL 3).
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    CHECK(fetched != nullptr);
    return fetched;
  }();
  return md;
}

EVP_MD_CTX* NewSha256Context() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  CHECK(ctx != nullptr);
  CHECK_EQ(EVP_DigestInit_ex(ctx, Sha256Md(), nullptr), 1);
  return ctx;
}

Digest FinishSha256(EVP_MD_CTX* ctx) {
  std::array<uint8_t, Digest::kSize> out;
  unsigned int size = 0;
  CHECK_EQ(EVP_DigestFinal_ex(ctx, out.data(), &size), 1);
  CHECK_EQ(size, Digest::kSize);
  return Digest(out);
}

struct ContextDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// One context per thread for one-shot digests (no allocation per call).
EVP_MD_CTX* ThreadContext() {
  thread_local std::unique_ptr<EVP_MD_CTX, ContextDeleter> ctx(
      NewSha256Context());
  CHECK_EQ(EVP_DigestInit_ex(ctx.get(), Sha256Md(), nullptr), 1);
  return ctx.get();
}

}  // namespace

Digest Sha256(absl::string_view data) { return Sha256Of({data}); }

Digest Sha256Of(std::initializer_list<absl::string_view> parts) {
  EVP_MD_CTX* ctx = ThreadContext();
  for (absl::string_view part : parts) {
    CHECK_EQ(EVP_DigestUpdate(ctx, part.data(), part.size()), 1);
  }
  return FinishSha256(ctx);
}

Sha256Hasher::Sha256Hasher() : ctx_(NewSha256Context()) {}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_); }

Sha256Hasher::Sha256Hasher(Sha256Hasher&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)) {}

Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&& other) noexcept {
  if (this != &other) {
    EVP_MD_CTX_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

void Sha256Hasher::Update(absl::string_view data) {
  CHECK(ctx_ != nullptr);  // Moved from.
  CHECK_EQ(EVP_DigestUpdate(ctx_, data.data(), data.size()), 1);
}

Digest Sha256Hasher::Finish() {
  CHECK(ctx_ != nullptr);  // Moved from.
  return FinishSha256(ctx_);
}

std::string RandomBytes(size_t n) {
  EnsureInitialized();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

}  // namespace pbft::crypto
