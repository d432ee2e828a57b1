#include "common/envelope.h"

#include "gtest/gtest.h"

namespace pbft {
namespace {

using pbft::v1::Envelope;

class EnvelopeTest : public ::testing::Test {
 protected:
  EnvelopeTest()
      : replica0_(crypto::SecretKey::Generate()),
        replica1_(crypto::SecretKey::Generate()),
        client7_(crypto::SecretKey::Generate()),
        verifier_("cluster-a", {replica0_.public_key(), replica1_.public_key()},
                  {{7, client7_.public_key()}}, 1 << 20) {}

  crypto::SecretKey replica0_, replica1_, client7_;
  EnvelopeVerifier verifier_;
};

TEST_F(EnvelopeTest, SignedEnvelopesVerify) {
  EnvelopeSigner s0("cluster-a", 0, replica0_);
  pbft::v1::Prepare p;
  p.set_view(1);
  p.set_seq(2);
  Envelope e = s0.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p);
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kOk);
  EXPECT_TRUE(verifier_.Verify(e).ok());

  EnvelopeSigner c7("cluster-a", 7, client7_);
  EXPECT_EQ(verifier_.Check(c7.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, "req")),
            EnvelopeError::kOk);
}

TEST_F(EnvelopeTest, TamperingIsDetected) {
  EnvelopeSigner s0("cluster-a", 0, replica0_);
  Envelope good = s0.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, "payload");

  Envelope e = good;
  e.set_payload("payloae");
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kBadSignature);

  e = good;  // Same bytes, other type: the domain tag differs.
  e.set_type(pbft::v1::MESSAGE_TYPE_PREPARE);
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kBadSignature);

  e = good;  // Claims another replica's identity.
  e.set_sender(1);
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kBadSignature);

  e = good;
  e.set_signature(good.signature().substr(0, 10));
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kBadSignatureSize);
  EXPECT_EQ(verifier_.Verify(e).code(), absl::StatusCode::kInvalidArgument);

  EnvelopeSigner other_cluster("cluster-b", 0, replica0_);
  EXPECT_EQ(verifier_.Check(
                other_cluster.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, "payload")),
            EnvelopeError::kBadSignature);
}

TEST_F(EnvelopeTest, SenderMustBeKnownForItsRole) {
  EnvelopeSigner stranger("cluster-a", 9, crypto::SecretKey::Generate());
  Envelope e = stranger.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, "x");
  EXPECT_EQ(verifier_.Check(e), EnvelopeError::kUnknownSender);
  EXPECT_EQ(verifier_.Verify(e).code(), absl::StatusCode::kUnauthenticated);

  // A replica's key cannot sign a client request and vice versa.
  EnvelopeSigner r0_as_client("cluster-a", 0, replica0_);
  EXPECT_EQ(
      verifier_.Check(r0_as_client.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, "x")),
      EnvelopeError::kUnknownSender);
  EnvelopeSigner c7_as_replica("cluster-a", 7, client7_);
  EXPECT_EQ(
      verifier_.Check(c7_as_replica.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, "x")),
      EnvelopeError::kUnknownSender);

  Envelope untyped = r0_as_client.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, "x");
  untyped.set_type(static_cast<pbft::v1::MessageType>(999));
  EXPECT_EQ(verifier_.Check(untyped), EnvelopeError::kUnknownType);
}

TEST_F(EnvelopeTest, OversizePayloadRefused) {
  EnvelopeVerifier small("cluster-a", {replica0_.public_key()}, {}, 16);
  EnvelopeSigner s0("cluster-a", 0, replica0_);
  Envelope e = s0.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, std::string(17, 'x'));
  EXPECT_EQ(small.Check(e), EnvelopeError::kOversize);
  EXPECT_EQ(small.Verify(e).code(), absl::StatusCode::kResourceExhausted);
}

TEST(BatchDigestTest, OrderAndContentMatter) {
  google::protobuf::RepeatedPtrField<Envelope> a, b, empty;
  Envelope r1, r2;
  r1.set_sender(1);
  r1.set_payload("one");
  r2.set_sender(2);
  r2.set_payload("two");
  *a.Add() = r1;
  *a.Add() = r2;
  *b.Add() = r2;
  *b.Add() = r1;
  EXPECT_NE(BatchDigest(a), BatchDigest(b));
  EXPECT_EQ(BatchDigest(a), BatchDigest(a));
  EXPECT_EQ(BatchDigest(empty), NullBatchDigest());
  EXPECT_NE(BatchDigest(a), NullBatchDigest());
  // Sender is part of the digest: same payload from another client differs.
  google::protobuf::RepeatedPtrField<Envelope> c;
  Envelope r1b = r1;
  r1b.set_sender(3);
  *c.Add() = r1b;
  *c.Add() = r2;
  EXPECT_NE(BatchDigest(a), BatchDigest(c));
  // Signatures are not part of the digest.
  google::protobuf::RepeatedPtrField<Envelope> d = a;
  d.Mutable(0)->set_signature("different");
  EXPECT_EQ(BatchDigest(a), BatchDigest(d));
}

}  // namespace
}  // namespace pbft
