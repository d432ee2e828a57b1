// Ledger format migrations, run by Ledger::Open on an older data directory.
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/proto_names.h"
#include "leveldb/db.h"
#include "leveldb/write_batch.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger_internal.h"

namespace pbft::ledger::internal {
namespace {

absl::Status Io(const leveldb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("ledger migration to format 3: ", what, ": ", s.ToString()));
}

absl::Status Corrupt(uint64_t height, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("ledger migration to format 3: block ", height, ": ", why));
}

// Rewrites block `height` of format 2 (view hashed into the header) as
// format 3 linked to `previous`; returns its new hash.
absl::StatusOr<Digest> MigrateBlock(leveldb::DB* db, uint64_t height,
                                    const Digest& previous,
                                    leveldb::WriteBatch* batch) {
  std::string bytes;
  absl::Status s = Io(db->Get(leveldb::ReadOptions(), BlockKey(height), &bytes),
                      absl::StrCat("block ", height));
  if (!s.ok()) return s;
  v1::Block block;
  pbft::v1::PrePrepare pp;
  if (!block.ParseFromString(bytes) ||
      !pp.ParseFromString(block.pre_prepare().payload())) {
    return Corrupt(height, "stored record does not parse");
  }
  if (pp.seq() != height || block.header().height() != height) {
    return Corrupt(height, "stored at the wrong height");
  }
  // The old header's view (field 2) is the pre-prepare's: keep it beside.
  block.mutable_header()->DiscardUnknownFields();
  block.set_view(pp.view());
  v1::BlockHeader& h = *block.mutable_header();
  h.set_previous_hash(previous.ToBytes());
  h.set_results_root(ResultsRoot(block.results()).ToBytes());
  std::string out;
  CHECK(block.SerializeToString(&out));
  batch->Put(BlockKey(height), out);
  return BlockHash(h);
}

// Progress of an interrupted migration: the last height rewritten and its
// hash.
void PutProgress(leveldb::WriteBatch* batch, uint64_t height,
                 const Digest& hash) {
  std::string v;
  PutU64(&v, height);
  v.append(hash.view().data(), Digest::kSize);
  batch->Put(std::string(kMetaMigrate), v);
}

}  // namespace

absl::Status MigrateFormat2To3(leveldb::DB* db, bool sync) {
  leveldb::WriteOptions wo;
  wo.sync = sync;  // Explicit: LevelDB's default is false.
  std::string bytes;
  absl::Status s = Io(
      db->Get(leveldb::ReadOptions(), std::string(kMetaHead), &bytes), "head");
  if (!s.ok()) return s;
  absl::StatusOr<HeadValue> head = DecodeHead(bytes);
  if (!head.ok()) return head.status();
  uint64_t done = 0;
  Digest previous;  // Zero before block 1.
  leveldb::Status p =
      db->Get(leveldb::ReadOptions(), std::string(kMetaMigrate), &bytes);
  if (p.ok()) {
    if (bytes.size() != 8 + Digest::kSize) {
      return Corrupt(0, "progress record is malformed");
    }
    done = GetU64(bytes.data());
    previous = *Digest::FromBytes(absl::string_view(bytes).substr(8));
  } else if (!p.IsNotFound()) {
    return Io(p, "progress record");
  }
  leveldb::WriteBatch batch;
  for (uint64_t height = done + 1; height <= head->height; ++height) {
    absl::StatusOr<Digest> hash = MigrateBlock(db, height, previous, &batch);
    if (!hash.ok()) return hash.status();
    previous = *hash;
    if (height % kMigrateBlocksPerWrite == 0) {
      PutProgress(&batch, height, previous);
      s = Io(db->Write(wo, &batch), "write");
      if (!s.ok()) return s;
      batch.Clear();
    }
  }
  // The head's hash and the format record last, with the remaining blocks.
  head->block_hash = previous;
  batch.Put(std::string(kMetaHead), EncodeHead(*head));
  batch.Delete(std::string(kMetaMigrate));
  std::string format;
  PutU32(&format, 3);
  batch.Put(std::string(kMetaFormat), format);
  return Io(db->Write(wo, &batch), "final write");
}

}  // namespace pbft::ledger::internal
