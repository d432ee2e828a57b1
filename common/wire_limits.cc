#include "common/wire_limits.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <string>

namespace ledger {
namespace {

namespace pb = pbft::v1;

// One nested envelope of `payload_max` bytes in a repeated or message field.
constexpr size_t Nested(size_t payload_max) {
  return kLengthPrefixBytesMax + kEnvelopeOverheadBytesMax + payload_max;
}

// Parses `bytes` into `m` and checks that they are the canonical encoding
// of what they decode to.
template <typename M>
WireError ParseCanonical(const std::string& bytes, size_t max, M* m) {
  if (bytes.size() > max) return WireError::kOversize;
  if (!m->ParseFromString(bytes)) return WireError::kMalformed;
  m->DiscardUnknownFields();  // Recursive: any unknown field changes size.
  if (m->ByteSizeLong() != bytes.size()) return WireError::kNonCanonical;
  std::string out;
  out.reserve(bytes.size());
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m->SerializeWithCachedSizes(&coded);
  }
  return out == bytes ? WireError::kOk : WireError::kNonCanonical;
}

WireError CheckNested(const pb::Envelope& e, pb::MessageType want,
                      const WireLimits& l) {
  if (e.type() != want) return WireError::kMalformed;
  return CheckWireMessage(e, l);
}

template <typename Envelopes>
WireError CheckAll(const Envelopes& es, size_t count_max, pb::MessageType want,
                   const WireLimits& l) {
  if (static_cast<size_t>(es.size()) > count_max) return WireError::kTooMany;
  for (const pb::Envelope& e : es) {
    if (WireError r = CheckNested(e, want, l); r != WireError::kOk) return r;
  }
  return WireError::kOk;
}

WireError CheckProof(const pb::CheckpointProof& p, const WireLimits& l) {
  return CheckAll(p.checkpoints(), l.n, pb::MESSAGE_TYPE_CHECKPOINT, l);
}

WireError CheckPrepared(const pb::PreparedCertificate& c, const WireLimits& l) {
  if (WireError r =
          CheckNested(c.pre_prepare(), pb::MESSAGE_TYPE_PRE_PREPARE, l);
      r != WireError::kOk)
    return r;
  return CheckAll(c.prepares(), l.n, pb::MESSAGE_TYPE_PREPARE, l);
}

WireError CheckPayload(const pb::Envelope& e, const WireLimits& l) {
  const std::string& b = e.payload();
  const size_t max = l.PayloadMax(e.type());
  WireError r = WireError::kOk;
  switch (e.type()) {
    case pb::MESSAGE_TYPE_REQUEST: {
      pb::Request m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_PRE_PREPARE: {
      pb::PrePrepare m;
      if ((r = ParseCanonical(b, max, &m)) != WireError::kOk) return r;
      return CheckAll(m.requests(), l.batch_requests_max,
                      pb::MESSAGE_TYPE_REQUEST, l);
    }
    case pb::MESSAGE_TYPE_PREPARE: {
      pb::Prepare m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_COMMIT: {
      pb::Commit m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_CHECKPOINT: {
      pb::Checkpoint m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_VIEW_CHANGE: {
      pb::ViewChange m;
      if ((r = ParseCanonical(b, max, &m)) != WireError::kOk) return r;
      if ((r = CheckProof(m.stable_checkpoint(), l)) != WireError::kOk)
        return r;
      if (static_cast<size_t>(m.prepared_size()) > l.window)
        return WireError::kTooMany;
      for (const pb::PreparedCertificate& c : m.prepared()) {
        if ((r = CheckPrepared(c, l)) != WireError::kOk) return r;
      }
      return WireError::kOk;
    }
    case pb::MESSAGE_TYPE_NEW_VIEW: {
      pb::NewView m;
      if ((r = ParseCanonical(b, max, &m)) != WireError::kOk) return r;
      if ((r = CheckAll(m.view_changes(), l.n, pb::MESSAGE_TYPE_VIEW_CHANGE,
                        l)) != WireError::kOk)
        return r;
      return CheckAll(m.pre_prepares(), l.window, pb::MESSAGE_TYPE_PRE_PREPARE,
                      l);
    }
    case pb::MESSAGE_TYPE_FETCH_REQUEST: {
      pb::FetchRequest m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_FETCH_RESPONSE: {
      pb::FetchResponse m;
      if ((r = ParseCanonical(b, max, &m)) != WireError::kOk) return r;
      if (m.batches_size() > static_cast<int>(kFetchBlocksMax))
        return WireError::kTooMany;
      for (const pb::CertifiedBatch& cb : m.batches()) {
        if ((r = CheckNested(cb.pre_prepare(), pb::MESSAGE_TYPE_PRE_PREPARE,
                             l)) != WireError::kOk ||
            (r = CheckAll(cb.certificate().commits(), l.n,
                          pb::MESSAGE_TYPE_COMMIT, l)) != WireError::kOk)
          return r;
      }
      if ((r = CheckProof(m.stable_checkpoint(), l)) != WireError::kOk)
        return r;
      if (!m.has_batch_pre_prepare()) return WireError::kOk;
      return CheckNested(m.batch_pre_prepare(), pb::MESSAGE_TYPE_PRE_PREPARE,
                         l);
    }
    case pb::MESSAGE_TYPE_REPLY: {
      pb::Reply m;
      return ParseCanonical(b, max, &m);
    }
    default:
      return WireError::kMalformed;
  }
}

}  // namespace

WireLimits WireLimits::For(uint32_t n, const ProtocolParams& p) {
  WireLimits l;
  l.n = n;
  l.window = p.watermark_window;
  l.batch_requests_max = p.batch_requests_max;
  l.message_max = p.message_bytes_max;
  auto cap = [&](size_t v) { return std::min<size_t>(v, l.message_max); };
  l.request_payload_max = cap(p.batch_bytes_max);
  // View, seq, digest and timestamp, then the requests: their payloads and
  // signatures are what batch_bytes_max counts, plus each one's framing.
  l.pre_prepare_max =
      cap(3 * kU64FieldBytesMax + kDigestFieldBytesMax + p.batch_bytes_max +
          size_t{p.batch_requests_max} * Nested(0));
  l.checkpoint_proof_max =
      kU64FieldBytesMax + kDigestFieldBytesMax +
      size_t{n} * (kLengthPrefixBytesMax + kCheckpointEnvelopeBytesMax);
  l.commit_certificate_max =
      size_t{n} * (kLengthPrefixBytesMax + kVoteEnvelopeBytesMax);
  l.prepared_certificate_max =
      cap(Nested(l.pre_prepare_max) +
          size_t{n} * (kLengthPrefixBytesMax + kVoteEnvelopeBytesMax));
  l.view_change_max = cap(
      kU64FieldBytesMax + kLengthPrefixBytesMax + l.checkpoint_proof_max +
      size_t{l.window} * (kLengthPrefixBytesMax + l.prepared_certificate_max) +
      kU32FieldBytesMax);
  l.new_view_max =
      cap(kU64FieldBytesMax + size_t{n} * Nested(l.view_change_max) +
          size_t{l.window} * Nested(l.pre_prepare_max));
  // Responses are cut by bytes to fit (replica/fetch_server.h).
  l.fetch_response_max = l.message_max;
  return l;
}

size_t WireLimits::PayloadMax(pbft::v1::MessageType type) const {
  switch (type) {
    case pb::MESSAGE_TYPE_REQUEST:
      return request_payload_max;
    case pb::MESSAGE_TYPE_PRE_PREPARE:
      return pre_prepare_max;
    case pb::MESSAGE_TYPE_PREPARE:
    case pb::MESSAGE_TYPE_COMMIT:
      return kVotePayloadBytesMax;
    case pb::MESSAGE_TYPE_CHECKPOINT:
      return kCheckpointPayloadBytesMax;
    case pb::MESSAGE_TYPE_VIEW_CHANGE:
      return view_change_max;
    case pb::MESSAGE_TYPE_NEW_VIEW:
      return new_view_max;
    case pb::MESSAGE_TYPE_FETCH_REQUEST:
      return kFetchRequestPayloadBytesMax;
    case pb::MESSAGE_TYPE_FETCH_RESPONSE:
      return fetch_response_max;
    case pb::MESSAGE_TYPE_REPLY:
      return message_max;
    default:
      return 0;
  }
}

const char* WireErrorName(WireError e) {
  switch (e) {
    case WireError::kOk:
      return "ok";
    case WireError::kOversize:
      return "oversize_for_type";
    case WireError::kMalformed:
      return "malformed_payload";
    case WireError::kNonCanonical:
      return "non_canonical";
    case WireError::kTooMany:
      return "too_many_entries";
    case WireError::kCount:
      break;
  }
  return "unknown";
}

WireError CheckWireMessage(const pbft::v1::Envelope& e,
                           const WireLimits& limits) {
  // Unknown fields on the envelope itself would travel with it into
  // certificates as surely as unknown fields in its payload.
  if (!e.GetReflection()->GetUnknownFields(e).empty())
    return WireError::kNonCanonical;
  return CheckPayload(e, limits);
}

}  // namespace ledger
