// Receipts: building one from the ledger's store, and checking one offline.
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/merkle.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"
#include "replica/ledger/verify.h"

namespace ledger {
namespace {

bool SameId(const v1::Uint128& a, const v1::Uint128& b) {
  return a.high() == b.high() && a.low() == b.low();
}

// Index of the operation with transfer/mint id `id` in `batch`, or -1.
// `from` skips earlier matches.
int FindOperation(const v1::OperationBatch& batch, const v1::Uint128& id,
                  int from) {
  for (int j = from; j < batch.operations_size(); ++j) {
    const v1::Operation& op = batch.operations(j);
    if ((op.has_transfer() && SameId(op.transfer().id(), id)) ||
        (op.has_mint() && SameId(op.mint().id(), id))) {
      return j;
    }
  }
  return -1;
}

// Do the operation's fields match the recorded transfer?
bool Matches(const v1::Operation& op, const v1::TransferRecord& t) {
  if (op.has_transfer()) {
    const v1::Transfer& x = op.transfer();
    return !t.is_mint() && SameId(x.debit_account_id(), t.debit_account_id()) &&
           SameId(x.credit_account_id(), t.credit_account_id()) &&
           x.amount() == t.amount() && x.ledger() == t.ledger() &&
           x.memo() == t.memo();
  }
  const v1::Mint& m = op.mint();
  return t.is_mint() && SameId(m.account_id(), t.credit_account_id()) &&
         m.amount() == t.amount() && m.ledger() == t.ledger() &&
         m.memo() == t.memo();
}

absl::Status Bad(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("receipt: ", what));
}

}  // namespace

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
  for (int i = 0; i < pp.requests_size() && found < 0; ++i) {
    const pbft::v1::Envelope& e = pp.requests(i);
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
    for (int j = FindOperation(batch, transfer_id, 0); j >= 0;
         j = FindOperation(batch, transfer_id, j + 1)) {
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
  for (const pbft::v1::Envelope& e : pp.requests()) {
    leaves.push_back(RequestLeafHash(e));
  }
  v1::Receipt receipt;
  *receipt.mutable_header() = block->header();
  *receipt.mutable_certificate() = block->certificate();
  receipt.set_view(block->view());
  *receipt.mutable_request() = pp.requests(found);
  receipt.set_request_index(static_cast<uint32_t>(found));
  receipt.set_request_count(static_cast<uint32_t>(pp.requests_size()));
  for (const Digest& d : merkle::Proof(leaves, static_cast<uint64_t>(found))) {
    receipt.add_proof(d.ToBytes());
  }
  *receipt.mutable_transfer() = *record;
  receipt.set_result(block->results(found));
  return receipt;
}

absl::StatusOr<ReceiptSummary> VerifyReceipt(const Cluster& cluster,
                                             const v1::Receipt& receipt) {
  const EnvelopeVerifier verifier = cluster.MakeVerifier();
  const v1::BlockHeader& h = receipt.header();
  const v1::TransferRecord& t = receipt.transfer();
  absl::StatusOr<Digest> root = Digest::FromBytes(h.requests_root());
  absl::StatusOr<Digest> batch_digest = Digest::FromBytes(h.batch_digest());
  if (!root.ok() || !batch_digest.ok()) {
    return Bad("header digests must be 32 bytes");
  }

  // 1. The client signed the request, and it holds the transfer.
  const pbft::v1::Envelope& e = receipt.request();
  if (e.type() != pbft::v1::MESSAGE_TYPE_REQUEST) {
    return Bad("request is not a REQUEST envelope");
  }
  absl::Status s = verifier.Verify(e);
  if (!s.ok()) return Bad(absl::StrCat("request signature: ", s.message()));
  pbft::v1::Request request;
  v1::OperationBatch batch;
  if (!request.ParseFromString(e.payload()) ||
      request.client_id() != e.sender() ||
      !batch.ParseFromString(request.operation())) {
    return Bad("request does not parse");
  }
  if (t.client_id() != e.sender()) {
    return Bad("the transfer's client is not the request's signer");
  }
  v1::OperationResults results;
  if (!results.ParseFromString(receipt.result()) ||
      results.seq() != h.height()) {
    return Bad("result does not parse or names another block");
  }
  int op_index = -1;
  for (int j = FindOperation(batch, t.id(), 0); j >= 0;
       j = FindOperation(batch, t.id(), j + 1)) {
    if (Matches(batch.operations(j), t) && j < results.results_size() &&
        results.results(j).code() == t.result()) {
      op_index = j;
      break;
    }
  }
  if (op_index < 0) {
    return Bad(
        "the request holds no operation matching the transfer and "
        "its result");
  }
  if (t.seq() != h.height()) {
    return Bad("the transfer's seq is not the block height");
  }
  if (t.timestamp_ms() != h.timestamp_ms() ||
      results.timestamp_ms() != h.timestamp_ms()) {
    return Bad("timestamps of the transfer, result and header differ");
  }

  // 2. The request is leaf request_index of the block's batch.
  std::vector<Digest> proof;
  for (const std::string& p : receipt.proof()) {
    absl::StatusOr<Digest> d = Digest::FromBytes(p);
    if (!d.ok()) return Bad("merkle proof: an entry is not 32 bytes");
    proof.push_back(*d);
  }
  if (!merkle::VerifyProof(RequestLeafHash(e), receipt.request_index(),
                           receipt.request_count(), proof, *root)) {
    return Bad("merkle proof does not lead to the header's requests_root");
  }
  if (BatchDigestFromRoot(receipt.request_count(), *root) != *batch_digest) {
    return Bad("batch_digest is not the digest of requests_root");
  }

  // 3. 2f+1 replicas committed that batch at (view, height).
  s = VerifyCommitCertificate(cluster, verifier, receipt.view(), h.height(),
                              *batch_digest, receipt.certificate());
  if (!s.ok()) return Bad(s.message());

  ReceiptSummary summary;
  summary.height = h.height();
  summary.view = receipt.view();
  summary.transfer = t;

  // 4. Optional: f+1 replicas replied this result.
  if (receipt.replies_size() > 0) {
    absl::flat_hash_set<uint64_t> repliers;
    for (int i = 0; i < receipt.replies_size(); ++i) {
      const pbft::v1::Envelope& r = receipt.replies(i);
      pbft::v1::Reply reply;
      if (r.type() != pbft::v1::MESSAGE_TYPE_REPLY ||
          !verifier.Verify(r).ok() || !reply.ParseFromString(r.payload()) ||
          reply.replica_id() != r.sender() ||
          reply.client_id() != request.client_id() ||
          reply.request_number() != request.request_number() ||
          reply.result() != receipt.result() ||
          !repliers.insert(r.sender()).second) {
        return Bad(absl::StrCat("reply ", i,
                                " is not a valid, distinct "
                                "signed reply with this result"));
      }
    }
    if (repliers.size() < cluster.weak_quorum()) {
      return Bad(absl::StrCat(repliers.size(),
                              " replies, need f+1 = ", cluster.weak_quorum()));
    }
    summary.result_certified = true;
  }
  return summary;
}

}  // namespace ledger
