// Offline verification of certified blocks and chains, with only
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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/types.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/block.h"

namespace pbft::ledger {

// The checks on one stored block that need no re-execution: header height,
// hash link to `previous_hash`, the primary's PRE-PREPARE signature and
// fields, requests root, batch digest, the commit certificate (for the
// view stored beside the header), the results root over the stored
// results, and (when `client_signatures`) every client request signature. The
// message names what broke.
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
  // The hash of every verified block, block_hashes[i] at height i+1.
  std::vector<Digest> block_hashes;
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

// Compares verified chains (reports with ok set, e.g. of several replicas'
// data directories). Every correct replica has the same block hash at every
// height (the header holds only what they agree on), so two chains agree
// iff their hashes agree at the lower head; a chain being shorter (behind)
// is not a disagreement.
struct ChainComparison {
  bool agree = false;
  uint64_t common_height = 0;  // The lowest head among the chains.
  Digest common_hash;          // The hash at common_height (if agree).
  // If !agree: the first height where two chains differ, and which two
  // (indices into the reports).
  uint64_t fork_height = 0;
  size_t fork_first = 0;
  size_t fork_second = 0;
};
ChainComparison CompareChains(const std::vector<ChainVerifyReport>& reports);

}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_VERIFY_H_
