#include "common/envelope.h"

#include "absl/strings/str_cat.h"
#include "common/codec.h"
#include "common/merkle.h"

namespace pbft {

EnvelopeSigner::EnvelopeSigner(std::string cluster_id, uint64_t sender,
                               crypto::SecretKey key)
    : cluster_id_(std::move(cluster_id)),
      sender_(sender),
      key_(std::move(key)) {}

pbft::v1::Envelope EnvelopeSigner::Sign(pbft::v1::MessageType type,
                                        std::string payload) const {
  pbft::v1::Envelope e;
  e.set_type(type);
  e.set_sender(sender_);
  e.set_signature(key_.Sign(
      crypto::SigningBytes(static_cast<uint32_t>(type), cluster_id_, payload)));
  e.set_payload(std::move(payload));
  return e;
}

const char* EnvelopeErrorName(EnvelopeError e) {
  switch (e) {
    case EnvelopeError::kOk:
      return "ok";
    case EnvelopeError::kUnknownType:
      return "unknown_type";
    case EnvelopeError::kUnknownSender:
      return "unknown_sender";
    case EnvelopeError::kBadSignatureSize:
      return "bad_signature_size";
    case EnvelopeError::kBadSignature:
      return "bad_signature";
    case EnvelopeError::kOversize:
      return "oversize";
  }
  return "unknown";
}

EnvelopeVerifier::EnvelopeVerifier(
    std::string cluster_id, std::vector<crypto::PublicKey> replica_keys,
    absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys,
    size_t message_bytes_max)
    : cluster_id_(std::move(cluster_id)),
      replica_keys_(std::move(replica_keys)),
      client_keys_(std::move(client_keys)),
      message_bytes_max_(message_bytes_max) {}

const crypto::PublicKey* EnvelopeVerifier::client_key(
    uint64_t client_id) const {
  auto it = client_keys_.find(client_id);
  return it == client_keys_.end() ? nullptr : &it->second;
}

EnvelopeError EnvelopeVerifier::Check(const pbft::v1::Envelope& e) const {
  if (e.payload().size() > message_bytes_max_) return EnvelopeError::kOversize;
  if (e.type() == pbft::v1::MESSAGE_TYPE_UNSPECIFIED ||
      !pbft::v1::MessageType_IsValid(e.type())) {
    return EnvelopeError::kUnknownType;
  }
  const crypto::PublicKey* key = nullptr;
  if (e.type() == pbft::v1::MESSAGE_TYPE_REQUEST) {
    key = client_key(e.sender());
  } else if (e.sender() < replica_keys_.size()) {
    key = &replica_keys_[e.sender()];
  }
  if (key == nullptr) return EnvelopeError::kUnknownSender;
  if (e.signature().size() != crypto::kSignatureSize) {
    return EnvelopeError::kBadSignatureSize;
  }
  if (!crypto::Verify(*key,
                      crypto::SigningBytes(static_cast<uint32_t>(e.type()),
                                           cluster_id_, e.payload()),
                      e.signature())) {
    return EnvelopeError::kBadSignature;
  }
  return EnvelopeError::kOk;
}

absl::Status EnvelopeVerifier::Verify(const pbft::v1::Envelope& e) const {
  EnvelopeError err = Check(e);
  switch (err) {
    case EnvelopeError::kOk:
      return absl::OkStatus();
    case EnvelopeError::kOversize:
      return absl::ResourceExhaustedError(
          absl::StrCat("envelope.payload: ", e.payload().size(),
                       " bytes exceeds the limit of ", message_bytes_max_));
    case EnvelopeError::kUnknownType:
      return absl::InvalidArgumentError(
          absl::StrCat("envelope.type: unknown message type ", e.type()));
    case EnvelopeError::kUnknownSender:
      return absl::UnauthenticatedError(absl::StrCat(
          "envelope.sender: ", e.sender(), " is not a registered ",
          e.type() == pbft::v1::MESSAGE_TYPE_REQUEST ? "client" : "replica"));
    case EnvelopeError::kBadSignatureSize:
      return absl::InvalidArgumentError(
          absl::StrCat("envelope.signature: must be ", crypto::kSignatureSize,
                       " bytes, got ", e.signature().size()));
    case EnvelopeError::kBadSignature:
      return absl::UnauthenticatedError(
          "envelope.signature: does not verify for this sender, type and "
          "cluster");
  }
  return absl::InternalError("unreachable");
}

size_t RequestBytes(const pbft::v1::Envelope& request) {
  return request.payload().size() + request.signature().size() + 16;
}

Digest RequestLeafHash(const pbft::v1::Envelope& request) {
  std::string prefix;
  codec::Writer w(&prefix);
  w.PutU8(0x00);  // Merkle leaf domain (common/merkle.h).
  w.PutU64(request.sender());
  return crypto::Sha256Of({prefix, request.payload()});
}

Digest RequestsRoot(
    const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& requests) {
  std::vector<Digest> leaves;
  leaves.reserve(static_cast<size_t>(requests.size()));
  for (const pbft::v1::Envelope& r : requests) {
    leaves.push_back(RequestLeafHash(r));
  }
  return merkle::Root(leaves);
}

Digest BatchDigestFromRoot(uint32_t count, const Digest& requests_root) {
  if (count == 0) return NullBatchDigest();
  std::string bytes;
  codec::Writer w(&bytes);
  w.PutRaw("pbft-ledger/batch/v2");
  w.PutU32(count);
  w.PutRaw(requests_root.view());
  return crypto::Sha256(bytes);
}

Digest BatchDigest(
    const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& requests) {
  if (requests.empty()) return NullBatchDigest();
  return BatchDigestFromRoot(static_cast<uint32_t>(requests.size()),
                             RequestsRoot(requests));
}

const Digest& NullBatchDigest() {
  static const Digest d = crypto::Sha256("pbft-ledger/null-batch/v1");
  return d;
}

const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& BatchOf(
    const pbft::v1::Envelope& pre_prepare, const pbft::v1::PrePrepare& header) {
  return header.legacy_requests_size() > 0 ? header.legacy_requests()
                                           : pre_prepare.batch();
}

}  // namespace pbft
