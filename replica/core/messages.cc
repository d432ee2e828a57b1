#include "replica/core/messages.h"

namespace pbft::core {

bool ParseDigest(const std::string& bytes, Digest* out) {
  auto d = Digest::FromBytes(bytes);
  if (!d.ok()) return false;
  *out = *d;
  return true;
}

v1::Envelope PrePrepareHeader(const v1::Envelope& pre_prepare) {
  v1::Envelope h;
  h.set_type(pre_prepare.type());
  h.set_sender(pre_prepare.sender());
  h.set_payload(pre_prepare.payload());
  h.set_signature(pre_prepare.signature());
  return h;
}

std::vector<std::pair<ClientId, RequestNumber>> RequestKeys(
    const google::protobuf::RepeatedPtrField<v1::Envelope>& batch) {
  std::vector<std::pair<ClientId, RequestNumber>> out;
  for (const v1::Envelope& re : batch) {
    v1::Request r;
    if (!r.ParseFromString(re.payload())) continue;
    out.emplace_back(ClientId(r.client_id()),
                     RequestNumber(r.request_number()));
  }
  return out;
}

}  // namespace pbft::core
