// Blocks and receipts without storage: the block hash, the results root,
// the checks that a batch was committed (the commit certificate and the
// primary's PRE-PREPARE), and receipt verification. Shared by the ledger,
// offline verification, the SDK (which verifies the certificate of a block
// or receipt it is given) and the simulator. No LevelDB, no gRPC.
//
// Pure functions of their inputs; thread-safe.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_BLOCK_H_
#define PBFT_LEDGER_REPLICA_LEDGER_BLOCK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/types.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::ledger {

// SHA-256 over the canonical header encoding (common/codec.h):
//   "pbft-ledger/block/v2" || u64 height || bytes previous_hash ||
//   bytes requests_root || bytes batch_digest || bytes results_root ||
//   bytes state_digest || u64 timestamp_ms
// Only what every correct replica agrees on for the height: no view, no
// certificate, so all correct replicas have the same block hashes.
Digest BlockHash(const v1::BlockHeader& header);

// Leaf i of a block's results tree: merkle::LeafHash(results[i]), where
// results[i] is the OperationResults bytes of request i as executed.
Digest ResultLeafHash(absl::string_view result);
// merkle::Root over ResultLeafHash of each result (empty batch: the root of
// the empty tree).
Digest ResultsRoot(
    const google::protobuf::RepeatedPtrField<std::string>& results);

// A commit certificate (Castro–Liskov §4.2: committed = 2f+1 matching
// COMMITs from distinct replicas): at least cluster.quorum() COMMIT
// envelopes, every one validly signed by a distinct replica of the config
// whose Commit payload names (view, seq, batch_digest) and its own id, and
// at most n of them. Strict: one bad commit fails the certificate.
// Errors are FAILED_PRECONDITION "certificate: ...".
absl::Status VerifyCommitCertificate(const Cluster& cluster,
                                     const EnvelopeVerifier& verifier,
                                     uint64_t view, uint64_t seq,
                                     const Digest& batch_digest,
                                     const pbft::v1::CommitCertificate& cert);

// The per-replica part of a block (Block.view/pre_prepare/certificate, or
// a BlockCommit) against its header: `pre_prepare` is a PRE-PREPARE signed
// by the primary of `view` whose view, seq, timestamp and batch digest are
// `view` and the header's, and `certificate` certifies (view, height,
// batch_digest). Errors are FAILED_PRECONDITION "header: ...",
// "pre_prepare: ..." or "certificate: ...". On success, `parsed` (if not
// null) holds the parsed PRE-PREPARE.
absl::Status VerifyBlockCommit(const Cluster& cluster,
                               const EnvelopeVerifier& verifier,
                               const v1::BlockHeader& header, uint64_t view,
                               const pbft::v1::Envelope& pre_prepare,
                               const pbft::v1::CommitCertificate& certificate,
                               pbft::v1::PrePrepare* parsed = nullptr);

// Index of the first transfer or mint operation with id `id` in `batch` at
// or after index `from`, or -1.
int FindTransferOperation(const v1::OperationBatch& batch,
                          const v1::Uint128& id, int from = 0);

struct ReceiptSummary {
  uint64_t height = 0;
  uint64_t view = 0;
  v1::TransferRecord transfer;
  // The hash of the receipt's header: equal to the block hash at `height`
  // on every correct replica iff the header (and so its results root, which
  // the result was checked against) is genuine.
  Digest block_hash;
  // True when f+1 signed replies also certify the result.
  bool result_certified = false;
};

// Checks a receipt offline against the cluster config (docs/api.md
// "Receipts"): the request's signature and transfer, its path to the
// header's requests_root, the batch digest, the commit certificate for
// (view, height, batch_digest), the result's path to the header's
// results_root, and any replies. FAILED_PRECONDITION "receipt: ..." names
// what broke.
absl::StatusOr<ReceiptSummary> VerifyReceipt(const Cluster& cluster,
                                             const v1::Receipt& receipt);

}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_BLOCK_H_
