#include "common/crypto.h"

#include "gtest/gtest.h"

namespace pbft::crypto {
namespace {

constexpr uint32_t kPrepare = 3;
constexpr uint32_t kCommit = 4;

TEST(CryptoTest, SignVerifyRoundTrip) {
  SecretKey key = SecretKey::Generate();
  std::string msg = SigningBytes(kPrepare, "cluster-a", "payload bytes");
  std::string sig = key.Sign(msg);
  EXPECT_EQ(sig.size(), kSignatureSize);
  EXPECT_TRUE(Verify(key.public_key(), msg, sig));
}

TEST(CryptoTest, TamperedPayloadRejected) {
  SecretKey key = SecretKey::Generate();
  std::string sig = key.Sign(SigningBytes(kPrepare, "c", "payload"));
  EXPECT_FALSE(
      Verify(key.public_key(), SigningBytes(kPrepare, "c", "paylaod"), sig));
  EXPECT_FALSE(
      Verify(key.public_key(), SigningBytes(kPrepare, "c", "payload "), sig));
}

TEST(CryptoTest, WrongDomainTagRejected) {
  SecretKey key = SecretKey::Generate();
  std::string sig = key.Sign(SigningBytes(kPrepare, "c", "payload"));
  EXPECT_FALSE(
      Verify(key.public_key(), SigningBytes(kCommit, "c", "payload"), sig));
  // A signature over the raw payload (no domain tag) is not valid either.
  std::string raw_sig = key.Sign("payload");
  EXPECT_FALSE(Verify(key.public_key(), SigningBytes(kPrepare, "c", "payload"),
                      raw_sig));
}

TEST(CryptoTest, WrongClusterIdRejected) {
  SecretKey key = SecretKey::Generate();
  std::string sig = key.Sign(SigningBytes(kPrepare, "cluster-a", "payload"));
  EXPECT_FALSE(Verify(key.public_key(),
                      SigningBytes(kPrepare, "cluster-b", "payload"), sig));
  // Length prefixing keeps the cluster id and type from running together.
  EXPECT_NE(SigningBytes(kPrepare, "ab", "c"),
            SigningBytes(kPrepare, "a", "bc"));
}

TEST(CryptoTest, WrongKeyRejected) {
  SecretKey key = SecretKey::Generate();
  SecretKey other = SecretKey::Generate();
  std::string msg = SigningBytes(kPrepare, "c", "payload");
  EXPECT_FALSE(Verify(other.public_key(), msg, key.Sign(msg)));
}

TEST(CryptoTest, TruncatedAndCorruptSignatureRejected) {
  SecretKey key = SecretKey::Generate();
  std::string msg = SigningBytes(kPrepare, "c", "payload");
  std::string sig = key.Sign(msg);
  EXPECT_FALSE(Verify(key.public_key(), msg, sig.substr(0, 63)));
  EXPECT_FALSE(Verify(key.public_key(), msg, ""));
  EXPECT_FALSE(Verify(key.public_key(), msg, sig + "x"));
  for (size_t i : {0u, 31u, 63u}) {
    std::string bad = sig;
    bad[i] ^= 0x01;
    EXPECT_FALSE(Verify(key.public_key(), msg, bad)) << "flipped byte " << i;
  }
}

TEST(CryptoTest, SeedIsDeterministic) {
  std::string seed(kSeedSize, '\x07');
  absl::StatusOr<SecretKey> a = SecretKey::FromSeed(seed);
  absl::StatusOr<SecretKey> b = SecretKey::FromSeed(seed);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->public_key(), b->public_key());
  EXPECT_EQ(a->Seed(), seed);
  EXPECT_FALSE(SecretKey::FromSeed("short").ok());
}

TEST(CryptoTest, PublicKeyTextForms) {
  SecretKey key = SecretKey::Generate();
  absl::StatusOr<PublicKey> from_b64 =
      PublicKey::FromText(key.public_key().ToBase64());
  absl::StatusOr<PublicKey> from_hex =
      PublicKey::FromText(key.public_key().ToHex());
  ASSERT_TRUE(from_b64.ok());
  ASSERT_TRUE(from_hex.ok());
  EXPECT_EQ(*from_b64, key.public_key());
  EXPECT_EQ(*from_hex, key.public_key());
  EXPECT_FALSE(PublicKey::FromText("not a key!").ok());
  EXPECT_FALSE(PublicKey::FromBytes(std::string(31, 'a')).ok());
}

TEST(CryptoTest, Sha256KnownAnswer) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(Sha256("abc").ToHex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256Hasher h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Finish(), Sha256("abc"));
}

}  // namespace
}  // namespace pbft::crypto
