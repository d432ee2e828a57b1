// Decoding helpers of the PBFT core: the digest fields of protocol messages,
// the signed header of a PRE-PREPARE, the (client, number) keys of a batch.
// Pure functions; internal to replica/core.
#ifndef PBFT_LEDGER_REPLICA_CORE_MESSAGES_H_
#define PBFT_LEDGER_REPLICA_CORE_MESSAGES_H_

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/types.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::core {

// False if `bytes` is not a digest.
bool ParseDigest(const std::string& bytes, Digest* out);

// Parses the payload of `e` as M and the digest it names (batch_digest;
// state_digest for a CHECKPOINT). False if either does not decode. Says
// nothing about sender, type or signature.
template <typename M>
bool Decode(const v1::Envelope& e, M* m, Digest* d) {
  if (!m->ParseFromString(e.payload())) return false;
  if constexpr (std::is_same_v<M, v1::Checkpoint>) {
    return ParseDigest(m->state_digest(), d);
  } else {
    return ParseDigest(m->batch_digest(), d);
  }
}

// The signed header of a PRE-PREPARE, without the batch beside it: what a
// prepared certificate and a NEW-VIEW's O carry (§4.4).
v1::Envelope PrePrepareHeader(const v1::Envelope& pre_prepare);

// The (client, number) of each request of a batch whose envelopes were
// checked (by this replica, or by the f+1 correct ones that prepared it);
// a request that does not decode is left out.
std::vector<std::pair<ClientId, RequestNumber>> RequestKeys(
    const google::protobuf::RepeatedPtrField<v1::Envelope>& batch);

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_MESSAGES_H_
