// Receipts: building one from the ledger's store (checked by VerifyReceipt,
// receipt_verify.cc).
#include "absl/strings/str_cat.h"
#include "common/merkle.h"
#include "common/proto_names.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"
#include "replica/ledger/verify.h"

namespace pbft::ledger {

absl::StatusOr<v1::Receipt> Ledger::BuildReceipt(
    const v1::Uint128& transfer_id) const {
  absl::StatusOr<v1::TransferRecord> record = GetTransfer(transfer_id);
  if (!record.ok()) return record.status();
  absl::StatusOr<v1::Block> block = GetStoredBlock(record->seq());
  if (!block.ok()) return block.status();
  pbft::v1::PrePrepare pp;
  if (!pp.ParseFromString(block->pre_prepare().payload())) {
    return absl::DataLossError(absl::StrCat(
        "block ", record->seq(), ": stored pre-prepare does not parse"));
  }
  // The request that recorded the transfer: the first one in the block from
  // its client with an operation of that id whose result is the recorded one.
  int found = -1;
  const auto& requests = BatchOf(block->pre_prepare(), pp);
  for (int i = 0; i < requests.size() && found < 0; ++i) {
    const pbft::v1::Envelope& e = requests[i];
    pbft::v1::Request request;
    v1::OperationBatch batch;
    v1::OperationResults results;
    if (e.sender() != record->client_id() ||
        !request.ParseFromString(e.payload()) ||
        !batch.ParseFromString(request.operation()) ||
        i >= block->results_size() ||
        !results.ParseFromString(block->results(i))) {
      continue;
    }
    for (int j = FindTransferOperation(batch, transfer_id, 0); j >= 0;
         j = FindTransferOperation(batch, transfer_id, j + 1)) {
      if (j < results.results_size() &&
          results.results(j).code() == record->result()) {
        found = i;
        break;
      }
    }
  }
  if (found < 0) {
    return absl::DataLossError(absl::StrCat(
        "block ", record->seq(), ": no request holds the recorded transfer"));
  }
  std::vector<Digest> leaves;
  for (const pbft::v1::Envelope& e : requests) {
    leaves.push_back(RequestLeafHash(e));
  }
  v1::Receipt receipt;
  *receipt.mutable_header() = block->header();
  *receipt.mutable_certificate() = block->certificate();
  receipt.set_view(block->view());
  *receipt.mutable_request() = requests[found];
  receipt.set_request_index(static_cast<uint32_t>(found));
  receipt.set_request_count(static_cast<uint32_t>(requests.size()));
  for (const Digest& d : merkle::Proof(leaves, static_cast<uint64_t>(found))) {
    receipt.add_proof(d.ToBytes());
  }
  std::vector<Digest> result_leaves;
  for (const std::string& r : block->results()) {
    result_leaves.push_back(ResultLeafHash(r));
  }
  for (const Digest& d :
       merkle::Proof(result_leaves, static_cast<uint64_t>(found))) {
    receipt.add_result_proof(d.ToBytes());
  }
  *receipt.mutable_transfer() = *record;
  receipt.set_result(block->results(found));
  return receipt;
}

}  // namespace pbft::ledger
