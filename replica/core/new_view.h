// The new-view computation of the PBFT core (Castro & Liskov §4.4;
// docs/protocol.md "View change (§4.4), message by message", NEW-VIEW): from
// the VIEW-CHANGEs in V, min-s, max-s and the O set the new primary
// re-proposes. The new primary computes it to build its NEW-VIEW and every
// backup recomputes it to check one. Pure function; tested on tables in
// tests/core/new_view_test.cc. Internal to replica/core.
#ifndef PBFT_LEDGER_REPLICA_CORE_NEW_VIEW_H_
#define PBFT_LEDGER_REPLICA_CORE_NEW_VIEW_H_

#include <cstdint>
#include <vector>

#include "common/types.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::core {

// One entry of a NEW-VIEW's O set.
struct OEntry {
  Seq seq;
  Digest digest;  // NullBatchDigest() for a null request.
  uint64_t timestamp_ms = 0;
  // The PRE-PREPARE header of the certificate chosen for seq; null for a
  // null request. Points into the VIEW-CHANGEs passed in.
  const v1::Envelope* source = nullptr;
};

struct NewViewComputation {
  Seq min_s;  // The highest s* (stable checkpoint) in V.
  // The proof of min_s: the stable checkpoint of the first VIEW-CHANGE in
  // V with that seq. Points into the VIEW-CHANGEs passed in.
  const v1::CheckpointProof* min_proof = nullptr;
  Seq max_s;  // The highest seq of a prepared certificate in V (>= min_s).
  // One entry per seq in (min_s, max_s], ascending: the digest and
  // timestamp of the highest-view certificate for that seq, else the null
  // request, which takes the highest timestamp of the entries before it.
  std::vector<OEntry> o;
};

// `vcs` is V: non-empty, each one valid (CertificateChecker::ViewChange);
// CHECK-fails on a certificate that does not decode.
NewViewComputation ComputeNewView(
    const std::vector<const v1::ViewChange*>& vcs);

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_NEW_VIEW_H_
