// What a replica accepts from a peer: every message type has its own byte
// limit, derived from n, the watermark window L and the batch limits, and
// every payload must be canonical (docs/protocol.md, "Message limits").
//
// Canonical means: the payload parses, carries no unknown field at any
// depth, and is exactly the bytes protobuf's deterministic serialisation
// produces for what it decoded (fields in number order, no default values,
// minimal varints). So a signed vote is the only encoding of its content,
// and what enters a commit certificate or a checkpoint proof is always a
// small vote: certificates and proofs are O(n) small envelopes, and the
// VIEW-CHANGEs, NEW-VIEWs and fetch responses that carry them fit.
//
// The check recurses into nested envelopes (votes inside certificates,
// client requests inside a PRE-PREPARE, VIEW-CHANGEs inside a NEW-VIEW) and
// bounds how many of each a message may carry.
//
// Pure functions and constants; thread-safe.
#ifndef PBFT_LEDGER_COMMON_WIRE_LIMITS_H_
#define PBFT_LEDGER_COMMON_WIRE_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "common/protocol_params.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft {

// Upper bounds of encoded sizes, in bytes. A varint of a u64 takes at most
// 10 bytes, a field tag 1 (all our field numbers are below 16), a length
// prefix at most 5.
inline constexpr size_t kU64FieldBytesMax = 1 + 10;
inline constexpr size_t kU32FieldBytesMax = 1 + 5;
inline constexpr size_t kLengthPrefixBytesMax = 1 + 5;  // Tag + length.
inline constexpr size_t kDigestFieldBytesMax = 1 + 1 + 32;
// An Envelope minus its payload: type, sender, the payload's tag and
// length, and the 64-byte signature with its tag and length.
inline constexpr size_t kEnvelopeOverheadBytesMax =
    kU32FieldBytesMax + kU64FieldBytesMax + kLengthPrefixBytesMax + 1 + 1 + 64;
// PREPARE and COMMIT: view, seq, digest, replica id.
inline constexpr size_t kVotePayloadBytesMax =
    2 * kU64FieldBytesMax + kDigestFieldBytesMax + kU32FieldBytesMax;
// CHECKPOINT: seq, state digest, replica id.
inline constexpr size_t kCheckpointPayloadBytesMax =
    kU64FieldBytesMax + kDigestFieldBytesMax + kU32FieldBytesMax;
inline constexpr size_t kBoolFieldBytesMax = 1 + 1;
// FETCH_REQUEST: replica id, from seq, max blocks, optional digest, the
// requester's view and whether it is changing to it.
inline constexpr size_t kFetchRequestPayloadBytesMax =
    2 * kU32FieldBytesMax + 2 * kU64FieldBytesMax + kDigestFieldBytesMax +
    kBoolFieldBytesMax;
inline constexpr size_t kVoteEnvelopeBytesMax =
    kVotePayloadBytesMax + kEnvelopeOverheadBytesMax;
inline constexpr size_t kCheckpointEnvelopeBytesMax =
    kCheckpointPayloadBytesMax + kEnvelopeOverheadBytesMax;
// A PRE-PREPARE header: view, seq, digest, timestamp. Its batch travels
// beside it (Envelope.batch), never inside a VIEW-CHANGE or NEW-VIEW.
inline constexpr size_t kPrePrepareHeaderBytesMax =
    3 * kU64FieldBytesMax + kDigestFieldBytesMax;
inline constexpr size_t kPrePrepareHeaderEnvelopeBytesMax =
    kPrePrepareHeaderBytesMax + kEnvelopeOverheadBytesMax;
// One envelope nested in a repeated or message field.
inline constexpr size_t NestedBytesMax(size_t envelope_bytes_max) {
  return kLengthPrefixBytesMax + envelope_bytes_max;
}
// §4.4 messages are O(n x L) small signed headers and votes, whatever the
// batch size: a prepared certificate is a PRE-PREPARE header and at most n
// PREPAREs; a VIEW-CHANGE a checkpoint proof and at most L certificates; a
// NEW-VIEW at most n VIEW-CHANGEs and L PRE-PREPARE headers.
inline constexpr size_t CheckpointProofBytesMax(uint64_t n) {
  return kU64FieldBytesMax + kDigestFieldBytesMax +
         n * NestedBytesMax(kCheckpointEnvelopeBytesMax);
}
inline constexpr size_t PreparedCertificateBytesMax(uint64_t n) {
  return NestedBytesMax(kPrePrepareHeaderEnvelopeBytesMax) +
         n * NestedBytesMax(kVoteEnvelopeBytesMax);
}
inline constexpr size_t ViewChangeBytesMax(uint64_t n, uint64_t window) {
  return kU64FieldBytesMax + kLengthPrefixBytesMax +
         CheckpointProofBytesMax(n) +
         window * (kLengthPrefixBytesMax + PreparedCertificateBytesMax(n)) +
         kU32FieldBytesMax;
}
inline constexpr size_t NewViewBytesMax(uint64_t n, uint64_t window) {
  return kU64FieldBytesMax +
         n * NestedBytesMax(kEnvelopeOverheadBytesMax +
                            ViewChangeBytesMax(n, window)) +
         window * NestedBytesMax(kPrePrepareHeaderEnvelopeBytesMax);
}

// Blocks a replica serves per FETCH_REQUEST (and asks for).
inline constexpr uint32_t kFetchBlocksMax = 64;

static_assert(kVotePayloadBytesMax < 128, "a vote stays small");
static_assert(kVoteEnvelopeBytesMax < 256, "a signed vote stays small");
static_assert(kCheckpointEnvelopeBytesMax <= kVoteEnvelopeBytesMax);
static_assert(kPrePrepareHeaderEnvelopeBytesMax < 256,
              "a signed PRE-PREPARE header stays as small as a signed vote");
static_assert(PreparedCertificateBytesMax(4) < 1024,
              "a prepared certificate is a few hundred bytes per replica");
static_assert(ViewChangeBytesMax(4, 256) < (1 << 20) / 4 &&
                  NewViewBytesMax(4, 256) < (1 << 20),
              "n = 4, L = 256: a NEW-VIEW stays under 1 MiB");
static_assert(NewViewBytesMax(7, 256) < (4 << 20),
              "n = 7, L = 256: a NEW-VIEW stays under 4 MiB");
static_assert(NewViewBytesMax(13, 256) < (8 << 20),
              "n = 13, L = 256: a NEW-VIEW fits the default message limit");

// Per-type payload limits of one cluster.
struct WireLimits {
  static WireLimits For(uint32_t n, const ProtocolParams& params);

  // Limit for an envelope's payload of `type` (0 for a type peers do not
  // send each other).
  size_t PayloadMax(pbft::v1::MessageType type) const;

  uint32_t n = 0;
  uint32_t window = 0;              // L: prepared certificates per VIEW-CHANGE.
  uint32_t batch_requests_max = 0;  // Requests per PRE-PREPARE.
  size_t request_payload_max = 0;   // One client request.
  size_t pre_prepare_max = 0;       // The signed header (payload).
  // The batch beside a PRE-PREPARE header (Envelope.batch, encoded): the
  // requests' payloads and signatures (what batch_bytes_max counts) and
  // each one's framing.
  size_t pre_prepare_batch_max = 0;
  size_t checkpoint_proof_max = 0;  // A CheckpointProof message (nested).
  size_t prepared_certificate_max = 0;
  size_t commit_certificate_max = 0;
  // Not capped at message_max: ClusterConfig validation refuses a window
  // whose NEW-VIEW would not fit (ValidateWireLimits).
  size_t view_change_max = 0;
  size_t new_view_max = 0;
  size_t fetch_response_max = 0;
  size_t message_max = 0;  // message_bytes_max: no payload is ever larger.
};

// NEW-VIEW and VIEW-CHANGE of n replicas and window L must fit
// message_bytes_max; fails naming protocol.watermark_window otherwise.
absl::Status ValidateWireLimits(uint32_t n, const ProtocolParams& params);

enum class WireError {
  kOk,
  kOversize,      // Over its type's limit.
  kMalformed,     // Does not parse, or a nested envelope of the wrong type.
  kNonCanonical,  // Unknown fields or not the deterministic encoding.
  kTooMany,       // More nested entries than the type allows.
  kCount,
};
const char* WireErrorName(WireError e);

// Checks one envelope's payload (its signature is checked elsewhere) and,
// recursively, every envelope nested in it. For every type a peer or a
// client may send (REQUEST included).
WireError CheckWireMessage(const pbft::v1::Envelope& e,
                           const WireLimits& limits);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_WIRE_LIMITS_H_
