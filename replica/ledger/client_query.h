// A read-only client query (ledger.v1.LedgerService/Query), answered from
// the ledger's current state: the request's operation bytes decoded as a
// ledger.v1.Query, answered by Ledger::Answer, then held to the answer
// budget (docs/api.md, "Answer budgets"), which every correct replica
// applies alike. The replica signs what this returns.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_CLIENT_QUERY_H_
#define PBFT_LEDGER_REPLICA_LEDGER_CLIENT_QUERY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/proto_names.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/ledger.h"

namespace pbft::ledger {

// INVALID_ARGUMENT for operation bytes that are not a Query (or a malformed
// one), OUT_OF_RANGE (ANSWER_TOO_LARGE) for an answer over
// `answer_bytes_max`; otherwise the answer, with the request's client id and
// number and `replica_id` filled in.
absl::StatusOr<v1::QueryReply> AnswerClientQuery(
    const Ledger& ledger, const pbft::v1::Request& request,
    uint64_t answer_bytes_max, uint32_t replica_id);

}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_CLIENT_QUERY_H_
