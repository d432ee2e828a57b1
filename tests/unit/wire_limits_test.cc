// Per-type limits and the canonical-encoding rule for peer messages
// (common/wire_limits.h).
#include "common/wire_limits.h"

#include <gtest/gtest.h>

#include "common/envelope.h"

namespace pbft {
namespace {

namespace pb = pbft::v1;

WireLimits Limits() {
  ProtocolParams p;
  return WireLimits::For(4, p);
}

EnvelopeSigner Signer(uint64_t id = 1) {
  return EnvelopeSigner("wire-test", id, crypto::SecretKey::Generate());
}

pb::Commit Vote() {
  pb::Commit c;
  c.set_view(3);
  c.set_seq(17);
  c.set_batch_digest(std::string(32, 'd'));
  c.set_replica_id(1);
  return c;
}

// An unknown length-delimited field (number 15) of `n` bytes.
std::string UnknownField(size_t n) {
  std::string s;
  s.push_back(static_cast<char>((15 << 3) | 2));
  while (n >= 0x80) {
    s.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  s.push_back(static_cast<char>(n));
  return s + std::string(n, 'p');
}

TEST(WireLimitsTest, NormalVotesPass) {
  const WireLimits l = Limits();
  const pb::Envelope e = Signer().SignMessage(pb::MESSAGE_TYPE_COMMIT, Vote());
  EXPECT_EQ(CheckWireMessage(e, l), WireError::kOk);
  pb::Commit max = Vote();
  max.set_view(~0ull);
  max.set_seq(~0ull);
  max.set_replica_id(~0u);
  EXPECT_LE(max.ByteSizeLong(), kVotePayloadBytesMax);
  EXPECT_EQ(
      CheckWireMessage(Signer().SignMessage(pb::MESSAGE_TYPE_COMMIT, max), l),
      WireError::kOk);
}

TEST(WireLimitsTest, PaddedVoteIsOversizeForItsType) {
  const WireLimits l = Limits();
  const pb::Envelope e =
      Signer().Sign(pb::MESSAGE_TYPE_COMMIT,
                    Vote().SerializeAsString() + UnknownField(1 << 20));
  EXPECT_EQ(CheckWireMessage(e, l), WireError::kOversize);
}

TEST(WireLimitsTest, SmallUnknownFieldIsNonCanonical) {
  const WireLimits l = Limits();
  for (pb::MessageType t :
       {pb::MESSAGE_TYPE_PREPARE, pb::MESSAGE_TYPE_COMMIT}) {
    const pb::Envelope e =
        Signer().Sign(t, Vote().SerializeAsString() + UnknownField(2));
    EXPECT_EQ(CheckWireMessage(e, l), WireError::kNonCanonical) << t;
  }
  // On the envelope itself.
  pb::Envelope e = Signer().SignMessage(pb::MESSAGE_TYPE_COMMIT, Vote());
  pb::Envelope padded;
  ASSERT_TRUE(padded.ParseFromString(e.SerializeAsString() + UnknownField(4)));
  EXPECT_EQ(CheckWireMessage(padded, l), WireError::kNonCanonical);
}

TEST(WireLimitsTest, NonMinimalVarintAndFieldOrderAreNonCanonical) {
  const WireLimits l = Limits();
  // view = 3 encoded in two bytes (0x83 0x00) instead of one.
  std::string b = Vote().SerializeAsString();
  ASSERT_EQ(b[0], 0x08);
  ASSERT_EQ(b[1], 0x03);
  std::string longer = b;
  longer.replace(1, 1, std::string("\x83\x00", 2));
  EXPECT_EQ(CheckWireMessage(Signer().Sign(pb::MESSAGE_TYPE_COMMIT, longer), l),
            WireError::kNonCanonical);
  // seq before view.
  pb::Commit only_view, rest = Vote();
  only_view.set_view(3);
  rest.clear_view();
  const std::string swapped =
      rest.SerializeAsString() + only_view.SerializeAsString();
  EXPECT_EQ(
      CheckWireMessage(Signer().Sign(pb::MESSAGE_TYPE_COMMIT, swapped), l),
      WireError::kNonCanonical);
  // An explicit default value (replica_id = 0 written out).
  pb::Commit zero = Vote();
  zero.set_replica_id(0);
  std::string explicit_zero =
      zero.SerializeAsString() + std::string("\x20\x00", 2);
  EXPECT_EQ(CheckWireMessage(
                Signer().Sign(pb::MESSAGE_TYPE_COMMIT, explicit_zero), l),
            WireError::kNonCanonical);
}

TEST(WireLimitsTest, GarbageIsMalformed) {
  const WireLimits l = Limits();
  EXPECT_EQ(
      CheckWireMessage(Signer().Sign(pb::MESSAGE_TYPE_PREPARE, "\xff\xff"), l),
      WireError::kMalformed);
  EXPECT_EQ(
      CheckWireMessage(Signer().Sign(pb::MESSAGE_TYPE_UNSPECIFIED, ""), l),
      WireError::kMalformed);
}

// A padded vote nested in a commit certificate of a fetch response, or in a
// checkpoint proof of a VIEW-CHANGE, is refused with the whole message.
TEST(WireLimitsTest, PaddedVotesNestedInCertificatesAreRefused) {
  const WireLimits l = Limits();
  const EnvelopeSigner s = Signer();
  const pb::Envelope good = s.SignMessage(pb::MESSAGE_TYPE_COMMIT, Vote());
  const pb::Envelope bad = s.Sign(pb::MESSAGE_TYPE_COMMIT,
                                  Vote().SerializeAsString() + UnknownField(3));

  pb::PrePrepare pp;
  pp.set_view(3);
  pp.set_seq(17);
  pp.set_batch_digest(std::string(32, 'd'));
  pb::FetchResponse r;
  r.set_replica_id(2);
  pb::CertifiedBatch* cb = r.add_batches();
  *cb->mutable_pre_prepare() = s.SignMessage(pb::MESSAGE_TYPE_PRE_PREPARE, pp);
  *cb->mutable_certificate()->add_commits() = good;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_FETCH_RESPONSE, r), l),
      WireError::kOk);
  *cb->mutable_certificate()->add_commits() = bad;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_FETCH_RESPONSE, r), l),
      WireError::kNonCanonical);

  pb::Checkpoint c;
  c.set_seq(16);
  c.set_state_digest(std::string(32, 's'));
  pb::ViewChange vc;
  vc.set_new_view(4);
  vc.mutable_stable_checkpoint()->set_seq(16);
  *vc.mutable_stable_checkpoint()->add_checkpoints() = s.Sign(
      pb::MESSAGE_TYPE_CHECKPOINT, c.SerializeAsString() + UnknownField(100));
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_VIEW_CHANGE, vc), l),
      WireError::kOversize);
}

TEST(WireLimitsTest, NestedCountsAreBounded) {
  const WireLimits l = Limits();
  const EnvelopeSigner s = Signer();
  pb::CheckpointProof proof;
  pb::Checkpoint c;
  c.set_seq(16);
  c.set_state_digest(std::string(32, 's'));
  pb::ViewChange vc;
  vc.set_new_view(4);
  vc.mutable_stable_checkpoint()->set_seq(16);
  for (uint32_t i = 0; i <= l.n; ++i) {
    *vc.mutable_stable_checkpoint()->add_checkpoints() =
        s.SignMessage(pb::MESSAGE_TYPE_CHECKPOINT, c);
  }
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_VIEW_CHANGE, vc), l),
      WireError::kTooMany);
  // A nested envelope of the wrong type.
  vc.mutable_stable_checkpoint()->clear_checkpoints();
  *vc.mutable_stable_checkpoint()->add_checkpoints() =
      s.SignMessage(pb::MESSAGE_TYPE_COMMIT, Vote());
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_VIEW_CHANGE, vc), l),
      WireError::kMalformed);
}

// Every field of the small messages at its largest encoding still fits
// its type's limit (a new field must raise the limit with it).
TEST(WireLimitsTest, LargestSmallMessagesFit) {
  pb::Prepare p;
  p.set_view(~0ull);
  p.set_seq(~0ull);
  p.set_batch_digest(std::string(32, 'd'));
  p.set_replica_id(~0u);
  EXPECT_EQ(p.ByteSizeLong(), kVotePayloadBytesMax);
  pb::Checkpoint c;
  c.set_seq(~0ull);
  c.set_state_digest(std::string(32, 's'));
  c.set_replica_id(~0u);
  EXPECT_EQ(c.ByteSizeLong(), kCheckpointPayloadBytesMax);
  pb::FetchRequest f;
  f.set_replica_id(~0u);
  f.set_from_seq(~0ull);
  f.set_max_blocks(~0u);
  f.set_batch_digest(std::string(32, 'd'));
  f.set_view(~0ull);
  f.set_view_changing(true);
  EXPECT_EQ(f.ByteSizeLong(), kFetchRequestPayloadBytesMax);
  // Every field of these messages was set above: a field added to the
  // schema without raising the limit fails here.
  EXPECT_EQ(pb::Prepare::descriptor()->field_count(), 4);
  EXPECT_EQ(pb::Commit::descriptor()->field_count(), 4);
  EXPECT_EQ(pb::Checkpoint::descriptor()->field_count(), 3);
  EXPECT_EQ(pb::FetchRequest::descriptor()->field_count(), 6);
  pb::PrePrepare h;
  h.set_view(~0ull);
  h.set_seq(~0ull);
  h.set_batch_digest(std::string(32, 'd'));
  h.set_timestamp_ms(~0ull);
  EXPECT_EQ(h.ByteSizeLong(), kPrePrepareHeaderBytesMax);
  // The fifth is legacy_requests, refused outside a stored block.
  EXPECT_EQ(pb::PrePrepare::descriptor()->field_count(), 5);
}

TEST(WireLimitsTest, LimitsFollowTheClusterShape) {
  ProtocolParams p;
  const WireLimits four = WireLimits::For(4, p);
  const WireLimits seven = WireLimits::For(7, p);
  EXPECT_LT(four.commit_certificate_max, seven.commit_certificate_max);
  EXPECT_LE(seven.commit_certificate_max, 7 * 256u);
  EXPECT_LE(four.view_change_max, p.message_bytes_max);
  EXPECT_LE(four.new_view_max, p.message_bytes_max);
  EXPECT_EQ(four.pre_prepare_max, kPrePrepareHeaderBytesMax);
  EXPECT_GE(four.pre_prepare_batch_max, p.batch_bytes_max);
  // §4.4 messages carry headers, not batches: their limits do not grow
  // with the batch size, and are O(n x L).
  ProtocolParams big = p;
  big.batch_bytes_max = p.batch_bytes_max / 4;
  EXPECT_EQ(WireLimits::For(4, big).view_change_max, four.view_change_max);
  EXPECT_EQ(WireLimits::For(4, big).new_view_max, four.new_view_max);
  EXPECT_LT(four.view_change_max, size_t{p.watermark_window} * 1024);
  EXPECT_LT(seven.new_view_max, size_t{7} * p.watermark_window * 2048);
  EXPECT_TRUE(ValidateWireLimits(7, p).ok());
  ProtocolParams tight = p;
  tight.message_bytes_max = static_cast<uint32_t>(four.new_view_max - 1);
  EXPECT_FALSE(ValidateWireLimits(4, tight).ok());
  EXPECT_EQ(four.PayloadMax(pb::MESSAGE_TYPE_COMMIT), kVotePayloadBytesMax);
  EXPECT_EQ(four.PayloadMax(pb::MESSAGE_TYPE_QUERY_REPLY), 0u);
}

// The batch travels beside a PRE-PREPARE on the normal path and in fetched
// blocks and bodies, never inside a VIEW-CHANGE or NEW-VIEW (§4.4), and
// never beside any other type.
TEST(WireLimitsTest, BatchesOnlyBesideAPrePrepareOutsideViewChanges) {
  ProtocolParams p;
  p.batch_bytes_max = 4096;
  const WireLimits l = WireLimits::For(4, p);
  const EnvelopeSigner s = Signer();
  pb::Request r;
  r.set_client_id(1);
  r.set_request_number(1);
  r.set_operation("op");
  const pb::Envelope request = s.SignMessage(pb::MESSAGE_TYPE_REQUEST, r);
  pb::PrePrepare pp;
  pp.set_view(3);
  pp.set_seq(17);
  pp.set_batch_digest(std::string(32, 'd'));
  pb::Envelope header = s.SignMessage(pb::MESSAGE_TYPE_PRE_PREPARE, pp);
  pb::Envelope with_batch = header;
  *with_batch.add_batch() = request;
  EXPECT_EQ(CheckWireMessage(with_batch, l), WireError::kOk);
  pb::Envelope vote = s.SignMessage(pb::MESSAGE_TYPE_COMMIT, Vote());
  *vote.add_batch() = request;
  EXPECT_EQ(CheckWireMessage(vote, l), WireError::kMalformed);
  pb::Envelope too_big = header;
  r.set_operation(std::string(p.batch_bytes_max, 'x'));
  *too_big.add_batch() = s.SignMessage(pb::MESSAGE_TYPE_REQUEST, r);
  EXPECT_NE(CheckWireMessage(too_big, l), WireError::kOk);

  pb::ViewChange vc;
  vc.set_new_view(4);
  pb::PreparedCertificate* cert = vc.add_prepared();
  *cert->mutable_pre_prepare() = header;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_VIEW_CHANGE, vc), l),
      WireError::kOk);
  *cert->mutable_pre_prepare() = with_batch;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_VIEW_CHANGE, vc), l),
      WireError::kMalformed);
  pb::NewView nv;
  nv.set_view(4);
  *nv.add_pre_prepares() = with_batch;
  EXPECT_EQ(CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_NEW_VIEW, nv), l),
            WireError::kMalformed);

  // The older stored form (the batch inside the signed header): only in a
  // fetched block.
  pb::PrePrepare legacy = pp;
  *legacy.add_legacy_requests() = request;
  const pb::Envelope old = s.SignMessage(pb::MESSAGE_TYPE_PRE_PREPARE, legacy);
  EXPECT_EQ(CheckWireMessage(old, l), WireError::kOversize);
  pb::FetchResponse fr;
  fr.set_replica_id(2);
  *fr.add_batches()->mutable_pre_prepare() = old;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_FETCH_RESPONSE, fr), l),
      WireError::kOk);
  *fr.mutable_batch_pre_prepare() = with_batch;
  EXPECT_EQ(
      CheckWireMessage(s.SignMessage(pb::MESSAGE_TYPE_FETCH_RESPONSE, fr), l),
      WireError::kOk);
}

}  // namespace
}  // namespace pbft
