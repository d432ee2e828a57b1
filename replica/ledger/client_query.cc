#include "replica/ledger/client_query.h"

#include "absl/strings/str_cat.h"
#include "common/proto_names.h"

namespace pbft::ledger {

absl::StatusOr<v1::QueryReply> AnswerClientQuery(
    const Ledger& ledger, const pbft::v1::Request& request,
    uint64_t answer_bytes_max, uint32_t replica_id) {
  v1::Query q;
  if (!q.ParseFromString(request.operation())) {
    return absl::InvalidArgumentError("query.operation: not a ledger.v1.Query");
  }
  v1::QueryReply reply;
  absl::Status s = ledger.Answer(q, &reply);
  if (!s.ok()) return s;
  // The answer budget (docs/api.md): refused the same on every replica.
  const size_t bytes = ledger.AnswerBudgetBytes(reply);
  if (bytes > answer_bytes_max) {
    return absl::OutOfRangeError(absl::StrCat(
        "query: the answer (", bytes, " bytes) exceeds answer_bytes_max (",
        answer_bytes_max, "); ANSWER_TOO_LARGE"));
  }
  reply.set_replica_id(replica_id);
  reply.set_client_id(request.client_id());
  reply.set_request_number(request.request_number());
  return reply;
}

}  // namespace pbft::ledger
