// Signed envelopes: signing outgoing messages, verifying incoming ones, and
// the canonical batch digest.
//
// An envelope's signature covers SigningBytes(type, cluster_id, payload)
// (common/crypto.h). Verification checks the *signature and sender* only;
// whether that sender may send that message in the current view is the
// PBFT core's business.
//
// EnvelopeSigner and EnvelopeVerifier are immutable after construction and
// thread-safe.
#ifndef PBFT_LEDGER_COMMON_ENVELOPE_H_
#define PBFT_LEDGER_COMMON_ENVELOPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/crypto.h"
#include "common/types.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft {

class EnvelopeSigner {
 public:
  EnvelopeSigner(std::string cluster_id, uint64_t sender,
                 crypto::SecretKey key);

  pbft::v1::Envelope Sign(pbft::v1::MessageType type,
                          std::string payload) const;

  // Serialises `message` once and signs exactly those bytes.
  template <typename Message>
  pbft::v1::Envelope SignMessage(pbft::v1::MessageType type,
                                 const Message& message) const {
    std::string payload;
    message.SerializeToString(&payload);
    return Sign(type, std::move(payload));
  }

  uint64_t sender() const { return sender_; }
  const crypto::PublicKey& public_key() const { return key_.public_key(); }

 private:
  std::string cluster_id_;
  uint64_t sender_;
  crypto::SecretKey key_;
};

// Why an envelope was refused; used as a metric label.
enum class EnvelopeError {
  kOk,
  kUnknownType,
  kUnknownSender,
  kBadSignatureSize,
  kBadSignature,
  kOversize,
};
const char* EnvelopeErrorName(EnvelopeError e);

class EnvelopeVerifier {
 public:
  // replica_keys[i] is replica i's key; client_keys maps client id to key.
  EnvelopeVerifier(std::string cluster_id,
                   std::vector<crypto::PublicKey> replica_keys,
                   absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys,
                   size_t message_bytes_max);

  // MESSAGE_TYPE_REQUEST must come from a registered client; every other
  // type from a replica. Checks size, sender and signature.
  EnvelopeError Check(const pbft::v1::Envelope& envelope) const;
  // Check() as a Status: UNAUTHENTICATED for an unknown sender or a bad
  // signature, INVALID_ARGUMENT / RESOURCE_EXHAUSTED otherwise.
  absl::Status Verify(const pbft::v1::Envelope& envelope) const;

  const std::string& cluster_id() const { return cluster_id_; }
  size_t replica_count() const { return replica_keys_.size(); }
  const crypto::PublicKey* client_key(uint64_t client_id) const;

 private:
  std::string cluster_id_;
  std::vector<crypto::PublicKey> replica_keys_;
  absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys_;
  size_t message_bytes_max_;
};

// The digest of a batch of client request envelopes, in order. The batch is
// a Merkle tree (common/merkle.h) whose leaves are the requests, so a single
// request can be proven part of a certified batch without the others
// (receipts):
//   leaf(r)        = merkle::LeafHash(u64 sender || payload)
//   requests_root  = merkle::Root(leaf(r_0), ..., leaf(r_{n-1}))
//   BatchDigest    = SHA-256("pbft-ledger/batch/v2" || u32 n || requests_root)
// Signatures are not part of it. The empty batch has the null digest (the
// null request of §4.4).
Digest BatchDigest(
    const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& requests);
Digest RequestLeafHash(const pbft::v1::Envelope& request);
Digest RequestsRoot(
    const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& requests);
// BatchDigest from the tree's size and root (count 0: the null digest).
Digest BatchDigestFromRoot(uint32_t count, const Digest& requests_root);
const Digest& NullBatchDigest();

// The batch of a PRE-PREPARE envelope whose payload decoded to `header`:
// the one beside the signed header (Envelope.batch), or, in a block stored
// by an earlier version, the one inside it (PrePrepare.legacy_requests).
const google::protobuf::RepeatedPtrField<pbft::v1::Envelope>& BatchOf(
    const pbft::v1::Envelope& pre_prepare, const pbft::v1::PrePrepare& header);

// What one client request counts against batch_bytes_max and the request
// queue's byte limits: its payload, its signature and a fixed overhead. A
// request whose cost exceeds batch_bytes_max can never be ordered.
size_t RequestBytes(const pbft::v1::Envelope& request);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_ENVELOPE_H_
