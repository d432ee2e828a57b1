// The ledger state machine: accounts, transfers and mints executed from
// committed PBFT batches into LevelDB, one certified block per batch.
//
// The shell hands ApplyBlock() every committed batch in seq order (null
// batches too). Each block is executed deterministically (no clock, no
// hash-map order, no floating point: the same blocks give the same bytes on
// every replica) and recorded with its state, the block record (header +
// commit certificate + the primary's PRE-PREPARE), the per-client
// last-reply table and the chain head in ONE LevelDB WriteBatch written with
// sync=true: after a crash the ledger is at the state before or after a
// block, never in between. The semantics of every operation and result code
// are in docs/api.md; the key layout and the state digest in
// docs/storage_format.md.
//
// Thread-safety: ApplyBlock() must be called from one thread at a time (the
// shell's execution thread). Queries (GetAccount ... BuildReceipt, head())
// may run on other threads concurrently with it and with each other; each
// sees the ledger before or after a block.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_LEDGER_H_
#define PBFT_LEDGER_REPLICA_LEDGER_LEDGER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "common/proto_names.h"
#include "common/types.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/state_hash.h"

namespace leveldb {
class Cache;
class DB;
class Env;
class FilterPolicy;
class WriteBatch;
}  // namespace leveldb

namespace pbft::ledger {
namespace internal {
class ParallelExpander;
}  // namespace internal

// One committed batch, as the core's Ready.execute hands it out.
struct BlockInput {
  uint64_t view = 0;
  uint64_t seq = 0;
  uint64_t timestamp_ms = 0;
  Digest batch_digest;             // NullBatchDigest() for a null batch.
  pbft::v1::Envelope pre_prepare;  // Signed PRE-PREPARE with the requests.
  pbft::v1::CommitCertificate certificate;  // 2f+1 signed COMMITs.
};

// What executing one request gave.
struct RequestOutcome {
  uint64_t client_id = 0;
  uint64_t request_number = 0;
  // Serialized ledger.v1.OperationResults; identical on every replica. For a
  // duplicate of the client's last request: the stored result; for an older
  // one: empty.
  std::string result;
  bool duplicate = false;  // Not executed again (exactly-once).
  // The request holds query operations: their answers are to be filled in
  // from the state after the block (Ledger::FillQueryAnswers).
  bool has_query = false;
};

struct BlockResult {
  uint64_t seq = 0;
  Digest state_digest;  // After the block; feeds CHECKPOINTs.
  Digest block_hash;
  std::vector<RequestOutcome> outcomes;  // One per request, in batch order.
};

// An entry of the last-reply table, to seed the core at start-up.
struct ClientReply {
  uint64_t client_id = 0;
  uint64_t request_number = 0;
  std::string result;
};

struct LedgerOptions {
  // nullptr: the default (disk) Env. Tests pass leveldb::NewMemEnv(...).
  leveldb::Env* env = nullptr;
  // Sync every block's WriteBatch. Only in-memory re-execution (verify)
  // turns it off.
  bool sync = true;
  // false: fail if the data directory holds no ledger yet.
  bool create_if_missing = true;
  size_t block_cache_bytes = 32 << 20;
  // LevelDB's memtable. 8-16 MB is fastest for block execution here: a
  // larger skip list costs a cache miss per level on every insert, a smaller
  // one more flushes and compactions (docs/benchmarks.md). ledgerd gives
  // each replica its own (WriteBufferForReplica).
  size_t write_buffer_bytes = 16 << 20;
  // Also check LevelDB checksums on every read (verify uses it).
  bool paranoid_checks = false;
  // Compute a block's state-hash expansions on a helper thread as well as
  // the ApplyBlock thread (docs/storage_format.md "State digest"). The
  // digest is the same bit for bit either way; false: one thread only.
  bool parallel_state_hash = true;
};

// The memtable size of replica `replica_id` for a `base` size: base plus
// (id mod 8) eighths of it (16, 18, 20, 22 MB for four replicas at 16 MB).
// Every replica executes the same blocks and so fills a memtable of one
// size at the same height; sizes that differ by replica spread their
// writes to level-0 tables apart (docs/benchmarks.md, "Memtables of
// different sizes").
size_t WriteBufferForReplica(size_t base, uint32_t replica_id);

// Limits of the query API.
inline constexpr uint32_t kHistoryLimitDefault = 100;
inline constexpr uint32_t kHistoryLimitMax = 1000;
// Memo bytes allowed in a transfer or mint.
inline constexpr size_t kMemoBytesMax = 64;
// Accounts kept decoded in memory with their state-hash element
// (about 2.2 KB each: 16384 entries is about 36 MB).
inline constexpr size_t kAccountCacheMax = 16384;

class Ledger {
 public:
  // Opens (or, on first use, creates from `cluster`'s genesis) the ledger in
  // directory `path`. A new ledger stores a copy of the cluster config, so
  // `ledgerctl verify --data-dir` can run without one. An existing ledger
  // must have been created for the same cluster id and genesis.
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(
      const Cluster& cluster, const std::string& path,
      const LedgerOptions& options);
  // Opens an existing ledger with the config stored in it.
  static absl::StatusOr<std::unique_ptr<Ledger>> OpenExisting(
      const std::string& path, const LedgerOptions& options);

  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Executes and records the block at input.seq, which must be
  // last_executed() + 1. Errors: FAILED_PRECONDITION for a wrong seq or a
  // ledger broken by an earlier write failure; INVALID_ARGUMENT if the
  // pre-prepare does not match view/seq/timestamp/batch digest; a LevelDB
  // error if the write failed (the ledger then refuses further blocks:
  // reopen it, it is at the state before this block).
  absl::StatusOr<BlockResult> ApplyBlock(const BlockInput& input);

  uint64_t last_executed() const;
  v1::ChainHead head() const;
  Digest state_digest() const;
  Digest genesis_state_digest() const;
  const Cluster& cluster() const { return cluster_; }

  // Queries. NOT_FOUND names what was not found.
  absl::StatusOr<v1::Account> GetAccount(const v1::Uint128& id) const;
  absl::StatusOr<v1::TransferRecord> GetTransfer(const v1::Uint128& id) const;
  // The OK transfers and mints that moved the account, newest first. limit
  // 0 means kHistoryLimitDefault; above kHistoryLimitMax is
  // INVALID_ARGUMENT. cursor zero starts at the newest entry; otherwise it
  // is the id of an entry of this history (a page's next_cursor) and the
  // page continues after it (INVALID_ARGUMENT if it is not an entry).
  // NOT_FOUND if the account does not exist.
  absl::StatusOr<v1::HistoryPage> GetHistory(
      const v1::Uint128& account_id, uint32_t limit,
      const v1::Uint128& cursor = v1::Uint128()) const;
  // The block with its requests filled in from the pre-prepare.
  absl::StatusOr<v1::Block> GetBlock(uint64_t height) const;
  // The block as stored (requests only inside pre_prepare).
  absl::StatusOr<v1::Block> GetStoredBlock(uint64_t height) const;
  // What a lagging replica fetches in state transfer.
  absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t height) const;
  // Answers a ledger.v1.Query (fills the answer of `reply`; not_found when
  // there is nothing). INVALID_ARGUMENT for a malformed query.
  absl::Status Answer(const v1::Query& query, v1::QueryReply* reply) const;
  // Receipt for the transfer or mint `transfer_id` (docs/api.md).
  absl::StatusOr<v1::Receipt> BuildReceipt(
      const v1::Uint128& transfer_id) const;
  // For a request whose outcome has_query: answers each query operation
  // of `request` (a pbft.v1.Request) from the current state into `result`
  // (serialized OperationResults), deterministically. Call right after the
  // block that executed it, before the next. An answer over the answer
  // budget, or over what is left of the reply budget, is replaced by
  // RESULT_CODE_ANSWER_TOO_LARGE (the same on every correct replica).
  absl::Status FillQueryAnswers(const pbft::v1::Envelope& request,
                                std::string* result) const;
  // What `answer` counts against the answer budgets: its size, computed
  // from what every correct replica has in common (docs/api.md).
  size_t AnswerBudgetBytes(const v1::QueryReply& answer) const;
  // The last-reply table, ascending by client id.
  absl::StatusOr<std::vector<ClientReply>> ClientTable() const;
  // Total money on `ledger`: genesis plus minted.
  uint64_t Supply(uint32_t ledger) const;
  // Heap bytes LevelDB holds for this ledger now: its memtables and block
  // cache (LevelDB's approximate-memory-usage), bounded by
  // LedgerOptions::write_buffer_bytes and block_cache_bytes.
  uint64_t MemoryBytes() const;

  // Test and audit hooks: full scans (cost proportional to the ledger).
  // The state digest recomputed from every state record.
  absl::StatusOr<Digest> TEST_RecomputeStateDigest() const;
  // Sum of balances of all accounts on `ledger`.
  absl::StatusOr<uint64_t> TEST_SumBalances(uint32_t ledger) const;
  leveldb::DB* TEST_db() const { return db_.get(); }
  // State-hash expansions the helper thread computed so far (ApplyBlock
  // thread only; see LedgerOptions::parallel_state_hash).
  size_t TEST_helper_expansions() const;

 private:
  class Execution;
  friend class Execution;

  Ledger(Cluster cluster, std::unique_ptr<const leveldb::FilterPolicy> filter,
         std::unique_ptr<leveldb::Cache> cache, std::unique_ptr<leveldb::DB> db,
         const LedgerOptions& options);
  static absl::StatusOr<std::unique_ptr<Ledger>> OpenImpl(
      const Cluster* cluster, const std::string& path,
      const LedgerOptions& options);
  absl::Status WriteGenesis();
  absl::Status LoadHead();
  // A block expands one or two 2 KB lane vectors per changed account: they
  // are recycled instead of allocated and freed every block.
  std::unique_ptr<StateHash::Lanes> TakeLanes();
  void ReturnLanes(std::unique_ptr<StateHash::Lanes> lanes);
  static constexpr size_t kSpareLanesMax = 4096;  // 8 MB.

  Cluster cluster_;
  // The DB uses filter_ and cache_: declared first, destroyed last.
  std::unique_ptr<const leveldb::FilterPolicy> filter_;
  std::unique_ptr<leveldb::Cache> cache_;
  std::unique_ptr<leveldb::DB> db_;
  LedgerOptions options_;
  // Signers' keys by client id (look-ups only, never iterated).
  absl::flat_hash_map<uint64_t, crypto::PublicKey> client_keys_;

  mutable absl::Mutex mu_;
  uint64_t height_ ABSL_GUARDED_BY(mu_) = 0;
  Digest block_hash_ ABSL_GUARDED_BY(mu_);
  Digest state_digest_ ABSL_GUARDED_BY(mu_);
  Digest genesis_digest_ ABSL_GUARDED_BY(mu_);
  // Owned by the ApplyBlock thread; mu_ only orders it against readers.
  StateHash state_hash_;
  // Accounts as last written, with the state-hash expansion of that value
  // (so a block removes a hot account's old element without hashing), at
  // most kAccountCacheMax entries (cleared when full). Look-ups only.
  struct CachedAccount;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>,
                      std::unique_ptr<CachedAccount>>
      account_cache_;
  uint64_t transfer_count_ = 0;
  // Accounts or transfers the last block touched (at most
  // kRecordsHintMax): the next block's tables start at that size
  // (ApplyBlock thread only).
  static constexpr size_t kRecordsHintMax = 1 << 16;
  size_t last_block_records_ = 0;
  // The block's WriteBatch, reused (ApplyBlock thread only).
  std::unique_ptr<leveldb::WriteBatch> write_batch_;
  // Recycled lane vectors (ApplyBlock thread only; TakeLanes()).
  std::vector<std::unique_ptr<StateHash::Lanes>> spare_lanes_;
  // Expands the block's changed accounts on a helper thread too.
  std::unique_ptr<internal::ParallelExpander> expander_;
  bool broken_ = false;  // A block write failed: fail-stop.
};

}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_LEDGER_H_
