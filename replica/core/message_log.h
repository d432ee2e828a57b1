// The message log of the PBFT core (Castro & Liskov §4.2-4.4): what one
// replica holds per sequence number. Plain data; Core owns every instance
// (replica/core/core.h) and the quorum checks over them live in
// replica/core/certificates.h. Internal to replica/core.
#ifndef PBFT_LEDGER_REPLICA_CORE_MESSAGE_LOG_H_
#define PBFT_LEDGER_REPLICA_CORE_MESSAGE_LOG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "common/types.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::core {

// One replica's signed vote (PREPARE, COMMIT or CHECKPOINT) and the digest
// it names.
struct Vote {
  Digest digest;
  v1::Envelope envelope;
};

// Votes of one kind at one seq: one per sender, the first wins.
using VotesBySender = std::map<ReplicaId, Vote>;

// Everything about one seq in (h, h+L].
struct Slot {
  View view;
  uint64_t created_tick = 0;
  bool has_pre_prepare = false;
  // The batch is beside pre_prepare (or it is the null batch). An O entry
  // of a NEW-VIEW arrives without it: the slot neither prepares nor
  // commits until the body is fetched and matches the digest (§4.4).
  bool has_body = false;
  v1::Envelope pre_prepare;
  Digest digest;
  uint64_t timestamp_ms = 0;
  std::vector<std::pair<ClientId, RequestNumber>> requests;
  VotesBySender prepares;
  VotesBySender commits;
  std::optional<v1::Envelope> own_prepare;
  std::optional<v1::Envelope> own_commit;
  bool prepared = false;
  bool committed = false;
  bool fetched = false;  // Committed from a fetched certificate.
  v1::CommitCertificate certificate;
};

// The prepared certificate of the highest view in which this replica
// prepared at a seq (§4.4: the P set of its VIEW-CHANGE).
struct PreparedCert {
  View view;
  Digest digest;
  v1::PreparedCertificate cert;
};

// A batch body this replica received for (seq, digest), in a PRE-PREPARE
// of any view: kept until seq is stable, so that it can prepare an O entry
// of a later view with that digest without fetching (§4.4).
struct Body {
  Digest digest;
  View view;
  v1::Envelope pre_prepare;  // Its batch beside it.
};

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_MESSAGE_LOG_H_
