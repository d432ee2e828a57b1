// What the PBFT core must remember across a crash (docs/protocol.md,
// crash recovery): its view, the pre-prepares it accepted or sent and its own
// PREPARE, COMMIT and CHECKPOINT envelopes above the stable checkpoint, and
// the stable checkpoint's proof. One LevelDB at <data-dir>/protocol.
//
// Key layout (all integers big-endian):
//   "v"                                 -> u64 view
//   "c"                                 -> pbft.v1.CheckpointProof
//   "n"                                 -> pbft.v1.Envelope (latest NEW-VIEW)
//   "e" u64(seq) u32(type) u64(counter) -> pbft.v1.Envelope
// Every Append is one WriteBatch with sync = true, so a Ready's persist
// part is durable, all or nothing, before its messages are sent.
//
// Thread-compatible: the core's owner thread uses it; FindBody may be called
// from any thread at the same time (LevelDB reads are thread-safe).
#ifndef PBFT_LEDGER_REPLICA_STORAGE_PROTOCOL_STORE_H_
#define PBFT_LEDGER_REPLICA_STORAGE_PROTOCOL_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "leveldb/db.h"
#include "leveldb/env.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::storage {

// What a restarted replica reloads.
struct ProtocolState {
  uint64_t view = 0;
  std::optional<pbft::v1::CheckpointProof> stable_checkpoint;
  std::vector<pbft::v1::Envelope> entries;  // Ascending by seq.
  // The NEW-VIEW of the last view the core entered (Persist.entries of type
  // NEW_VIEW; only the latest is kept, whatever the stable checkpoint).
  std::optional<pbft::v1::Envelope> new_view;
};

class ProtocolStore {
 public:
  // `env` may be null (the default Env) or e.g. leveldb::NewMemEnv for tests.
  static absl::StatusOr<std::unique_ptr<ProtocolStore>> Open(
      const std::string& path, leveldb::Env* env = nullptr);

  // Durably records (synced) an optional new view, envelopes, and an
  // optional new stable checkpoint (which also deletes entries at or below
  // its seq). All in one atomic write.
  absl::Status Append(std::optional<uint64_t> view,
                      const std::vector<pbft::v1::Envelope>& entries,
                      const std::optional<pbft::v1::CheckpointProof>& stable);

  absl::StatusOr<ProtocolState> Load() const;

  // A stored PRE-PREPARE (any view) for `seq` whose batch digest is
  // `batch_digest` and whose batch is beside it (docs/protocol.md, "Batch
  // bodies"); nullopt if none.
  absl::StatusOr<std::optional<pbft::v1::Envelope>> FindBody(
      uint64_t seq, const std::string& batch_digest) const;

  // Heap bytes LevelDB holds for the store now (its memtables and block
  // cache: LevelDB's approximate-memory-usage).
  uint64_t MemoryBytes() const;

 private:
  ProtocolStore() = default;
  std::unique_ptr<leveldb::DB> db_;
  uint64_t counter_ = 0;
};

// The seq an envelope of the core's persisted kinds refers to.
absl::StatusOr<uint64_t> EntrySeq(const pbft::v1::Envelope& e);

}  // namespace pbft::storage

#endif  // PBFT_LEDGER_REPLICA_STORAGE_PROTOCOL_STORE_H_
