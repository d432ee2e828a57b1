// Offline verification of certified blocks, chains and receipts, with only
// the cluster config (the replicas' and clients' public keys) as the trust
// root. No network. Used by `ledgerctl verify` / `verify-receipt` and by
// state transfer to check fetched blocks.
//
// Pure functions of their inputs (VerifyDataDir reads the data directory and
// re-executes into memory); thread-safe.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_VERIFY_H_
#define PBFT_LEDGER_REPLICA_LEDGER_VERIFY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/types.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"

namespace ledger {

// A commit certificate (Castro–Liskov §4.2: committed = 2f+1 matching
// COMMITs from distinct replicas): at least cluster.quorum() COMMIT
// envelopes, every one validly signed by a distinct replica of the config
// whose Commit payload names (view, seq, batch_digest) and its own id, and
// at most n of them. Strict: one bad commit fails the certificate.
absl::Status VerifyCommitCertificate(const Cluster& cluster,
                                     const EnvelopeVerifier& verifier,
                                     uint64_t view, uint64_t seq,
                                     const Digest& batch_digest,
                                     const pbft::v1::CommitCertificate& cert);

// The checks on one stored block that need no re-execution: header height,
// hash link to `previous_hash`, the primary's PRE-PREPARE signature and
// fields, Merkle root, batch digest, the commit certificate, and (when
// `client_signatures`) every client request signature. The message names
// what broke.
absl::Status VerifyBlockRecord(const Cluster& cluster,
                               const EnvelopeVerifier& verifier,
                               uint64_t height, const Digest& previous_hash,
                               const v1::Block& block, bool client_signatures);

struct ChainVerifyOptions {
  bool client_signatures = true;
};

struct ChainVerifyReport {
  bool ok = false;
  uint64_t head_height = 0;      // As the data directory claims.
  uint64_t blocks_verified = 0;  // Heights 1..blocks_verified passed.
  uint64_t requests = 0;
  // On failure: the height (0: genesis or the store itself), a short kind
  // ("storage", "hash_link", "certificate", "merkle_root", ...) and the
  // message naming the height and what broke.
  uint64_t failed_height = 0;
  std::string failed_check;
  std::string error;
  Digest head_hash;
  Digest state_digest;
  std::string cluster_id;  // Of the trust root used.
};

// Verifies a replica's data directory from genesis to its head: every block
// as VerifyBlockRecord, then re-executes it into an in-memory ledger created
// from `trust_root`'s genesis and compares the results and the state digest;
// finally compares the whole stored state with the re-executed one. With
// `trust_root` == nullptr, the config stored in the data directory is used.
ChainVerifyReport VerifyDataDir(const std::string& data_dir,
                                const Cluster* trust_root,
                                const ChainVerifyOptions& options);

struct ReceiptSummary {
  uint64_t height = 0;
  uint64_t view = 0;
  v1::TransferRecord transfer;
  // True when f+1 signed replies certify the result; otherwise the result
  // is the serving replica's word (inclusion and order are certified).
  bool result_certified = false;
};

// Checks a receipt offline (docs/api.md "Receipts").
absl::StatusOr<ReceiptSummary> VerifyReceipt(const Cluster& cluster,
                                             const v1::Receipt& receipt);

}  // namespace ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_VERIFY_H_
