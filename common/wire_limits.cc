#include "common/wire_limits.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace pbft {
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

// Where a PRE-PREPARE appears decides what it may carry beside its header.
enum class BatchPlace {
  kBeside,     // Normal path: the batch beside the header (or none).
  kNone,       // VIEW-CHANGE and NEW-VIEW (§4.4): the signed header only.
  kAnyStored,  // A fetched block or body: beside, or inside (older blocks).
};

WireError CheckEnvelope(const pb::Envelope& e, const WireLimits& l,
                        BatchPlace batch);

WireError CheckNested(const pb::Envelope& e, pb::MessageType want,
                      const WireLimits& l,
                      BatchPlace batch = BatchPlace::kNone) {
  if (e.type() != want) return WireError::kMalformed;
  return CheckEnvelope(e, l, batch);
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

// A PRE-PREPARE: the signed header, and the batch where `batch` allows
// one: beside it (bounded like the batch it is) or, in a block an earlier
// version stored, inside it.
WireError CheckPrePrepare(const pb::Envelope& e, const WireLimits& l,
                          BatchPlace batch) {
  const bool inside_ok = batch == BatchPlace::kAnyStored;
  const size_t max =
      l.pre_prepare_max + (inside_ok ? l.pre_prepare_batch_max : 0);
  pb::PrePrepare m;
  if (WireError r = ParseCanonical(e.payload(), max, &m); r != WireError::kOk)
    return r;
  if (m.legacy_requests_size() > 0 && (!inside_ok || e.batch_size() > 0))
    return WireError::kMalformed;
  if (e.batch_size() > 0 && batch == BatchPlace::kNone)
    return WireError::kMalformed;
  if (WireError r = CheckAll(m.legacy_requests(), l.batch_requests_max,
                             pb::MESSAGE_TYPE_REQUEST, l);
      r != WireError::kOk)
    return r;
  size_t bytes = 0;
  for (const pb::Envelope& q : e.batch()) {
    bytes += kLengthPrefixBytesMax + q.ByteSizeLong();
  }
  if (bytes > l.pre_prepare_batch_max) return WireError::kOversize;
  return CheckAll(e.batch(), l.batch_requests_max, pb::MESSAGE_TYPE_REQUEST, l);
}

WireError CheckPayload(const pb::Envelope& e, const WireLimits& l,
                       BatchPlace batch) {
  const std::string& b = e.payload();
  const size_t max = l.PayloadMax(e.type());
  WireError r = WireError::kOk;
  if (e.type() != pb::MESSAGE_TYPE_PRE_PREPARE && e.batch_size() > 0)
    return WireError::kMalformed;  // Only a PRE-PREPARE has a batch beside.
  switch (e.type()) {
    case pb::MESSAGE_TYPE_REQUEST: {
      pb::Request m;
      return ParseCanonical(b, max, &m);
    }
    case pb::MESSAGE_TYPE_PRE_PREPARE:
      return CheckPrePrepare(e, l, batch);
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
        if ((r = CheckNested(cb.pre_prepare(), pb::MESSAGE_TYPE_PRE_PREPARE, l,
                             BatchPlace::kAnyStored)) != WireError::kOk ||
            (r = CheckAll(cb.certificate().commits(), l.n,
                          pb::MESSAGE_TYPE_COMMIT, l)) != WireError::kOk)
          return r;
      }
      if ((r = CheckProof(m.stable_checkpoint(), l)) != WireError::kOk)
        return r;
      if (!m.has_batch_pre_prepare()) return WireError::kOk;
      return CheckNested(m.batch_pre_prepare(), pb::MESSAGE_TYPE_PRE_PREPARE, l,
                         BatchPlace::kAnyStored);
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
  l.pre_prepare_max = kPrePrepareHeaderBytesMax;
  // The requests' payloads and signatures are what batch_bytes_max counts;
  // plus each one's framing.
  l.pre_prepare_batch_max =
      cap(p.batch_bytes_max + size_t{p.batch_requests_max} * Nested(0));
  l.checkpoint_proof_max = CheckpointProofBytesMax(n);
  l.commit_certificate_max =
      size_t{n} * (kLengthPrefixBytesMax + kVoteEnvelopeBytesMax);
  l.prepared_certificate_max = PreparedCertificateBytesMax(n);
  l.view_change_max = ViewChangeBytesMax(n, l.window);
  l.new_view_max = NewViewBytesMax(n, l.window);
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

namespace {

WireError CheckEnvelope(const pb::Envelope& e, const WireLimits& l,
                        BatchPlace batch) {
  // Unknown fields on the envelope itself would travel with it into
  // certificates as surely as unknown fields in its payload.
  if (!e.GetReflection()->GetUnknownFields(e).empty())
    return WireError::kNonCanonical;
  return CheckPayload(e, l, batch);
}

}  // namespace

WireError CheckWireMessage(const pbft::v1::Envelope& e,
                           const WireLimits& limits) {
  return CheckEnvelope(e, limits, BatchPlace::kBeside);
}

absl::Status ValidateWireLimits(uint32_t n, const ProtocolParams& params) {
  const size_t nv = NewViewBytesMax(n, params.watermark_window);
  if (nv <= params.message_bytes_max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("a NEW-VIEW of ", n, " replicas with a window of ",
                   params.watermark_window, " may take ", nv,
                   " bytes, over message_bytes_max (", params.message_bytes_max,
                   "): lower the window or raise message_bytes_max"));
}

}  // namespace pbft
