#include "replica/storage/protocol_store.h"

#include "absl/strings/str_cat.h"
#include "common/codec.h"
#include "common/leveldb_memory.h"
#include "leveldb/write_batch.h"

namespace pbft::storage {
namespace {

constexpr char kViewKey[] = "v";
constexpr char kStableKey[] = "c";
constexpr char kNewViewKey[] = "n";  // The latest NEW-VIEW the core entered.
constexpr char kEntryPrefix = 'e';

std::string EntryKey(uint64_t seq, uint32_t type, uint64_t counter) {
  std::string k(1, kEntryPrefix);
  codec::Writer w(&k);
  w.PutU64(seq);
  w.PutU32(type);
  w.PutU64(counter);
  return k;
}

absl::Status FromLevelDb(const leveldb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("protocol store: ", what, ": ", s.ToString()));
}

}  // namespace

absl::StatusOr<uint64_t> EntrySeq(const pbft::v1::Envelope& e) {
  switch (e.type()) {
    case pbft::v1::MESSAGE_TYPE_PRE_PREPARE: {
      pbft::v1::PrePrepare m;
      if (!m.ParseFromString(e.payload())) break;
      return m.seq();
    }
    case pbft::v1::MESSAGE_TYPE_PREPARE: {
      pbft::v1::Prepare m;
      if (!m.ParseFromString(e.payload())) break;
      return m.seq();
    }
    case pbft::v1::MESSAGE_TYPE_COMMIT: {
      pbft::v1::Commit m;
      if (!m.ParseFromString(e.payload())) break;
      return m.seq();
    }
    case pbft::v1::MESSAGE_TYPE_CHECKPOINT: {
      pbft::v1::Checkpoint m;
      if (!m.ParseFromString(e.payload())) break;
      return m.seq();
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("protocol store: cannot persist envelope of type ",
                   pbft::v1::MessageType_Name(e.type())));
}

absl::StatusOr<std::unique_ptr<ProtocolStore>> ProtocolStore::Open(
    const std::string& path, leveldb::Env* env) {
  leveldb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  // Entries live only until a later stable checkpoint drops them, so the
  // space compression would save is bounded by the watermark window, while
  // its CPU is spent on every table the store writes (docs/benchmarks.md,
  // "The protocol store uncompressed").
  o.compression = leveldb::kNoCompression;
  if (env != nullptr) o.env = env;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(o, path, &db);
  if (!s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot open protocol store: ", s.ToString()));
  }
  std::unique_ptr<ProtocolStore> store(new ProtocolStore());
  store->db_.reset(db);
  // Continue the counter after the largest one on disk.
  std::unique_ptr<leveldb::Iterator> it(
      db->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(std::string(1, kEntryPrefix));
       it->Valid() && it->key().size() > 0 && it->key()[0] == kEntryPrefix;
       it->Next()) {
    codec::Reader r(
        absl::string_view(it->key().data() + 1, it->key().size() - 1));
    (void)r.GetU64();
    (void)r.GetU32();
    absl::StatusOr<uint64_t> c = r.GetU64();
    if (c.ok()) store->counter_ = std::max(store->counter_, *c + 1);
  }
  return store;
}

absl::Status ProtocolStore::Append(
    std::optional<uint64_t> view,
    const std::vector<pbft::v1::Envelope>& entries,
    const std::optional<pbft::v1::CheckpointProof>& stable) {
  leveldb::WriteBatch batch;
  if (view.has_value()) {
    std::string v;
    codec::Writer(&v).PutU64(*view);
    batch.Put(kViewKey, v);
  }
  for (const pbft::v1::Envelope& e : entries) {
    if (e.type() == pbft::v1::MESSAGE_TYPE_NEW_VIEW) {
      pbft::v1::NewView nv;
      if (!nv.ParseFromString(e.payload())) {
        return absl::InvalidArgumentError(
            "protocol store: cannot persist an undecodable NEW_VIEW");
      }
      // Not filed by seq: it must outlive stable checkpoints until the next
      // view is entered, and only the latest one matters.
      batch.Put(kNewViewKey, e.SerializeAsString());
      continue;
    }
    absl::StatusOr<uint64_t> seq = EntrySeq(e);
    if (!seq.ok()) return seq.status();
    batch.Put(EntryKey(*seq, static_cast<uint32_t>(e.type()), counter_++),
              e.SerializeAsString());
  }
  if (stable.has_value()) {
    batch.Put(kStableKey, stable->SerializeAsString());
    // Garbage-collect entries at or below the stable checkpoint (§4.3).
    std::unique_ptr<leveldb::Iterator> it(
        db_->NewIterator(leveldb::ReadOptions()));
    const std::string end = EntryKey(stable->seq() + 1, 0, 0);
    for (it->Seek(std::string(1, kEntryPrefix));
         it->Valid() && it->key().compare(end) < 0; it->Next()) {
      batch.Delete(it->key());
    }
  }
  leveldb::WriteOptions wo;
  wo.sync = true;  // Durable before the Ready's messages are sent.
  return FromLevelDb(db_->Write(wo, &batch), "write");
}

absl::StatusOr<ProtocolState> ProtocolStore::Load() const {
  ProtocolState state;
  std::string v;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), kViewKey, &v);
  if (s.ok()) {
    absl::StatusOr<uint64_t> view = codec::Reader(v).GetU64();
    if (!view.ok())
      return absl::DataLossError("protocol store: corrupt view record");
    state.view = *view;
  } else if (!s.IsNotFound()) {
    return FromLevelDb(s, "read view");
  }
  s = db_->Get(leveldb::ReadOptions(), kStableKey, &v);
  if (s.ok()) {
    pbft::v1::CheckpointProof proof;
    if (!proof.ParseFromString(v)) {
      return absl::DataLossError(
          "protocol store: corrupt stable checkpoint record");
    }
    state.stable_checkpoint = std::move(proof);
  } else if (!s.IsNotFound()) {
    return FromLevelDb(s, "read stable checkpoint");
  }
  s = db_->Get(leveldb::ReadOptions(), kNewViewKey, &v);
  if (s.ok()) {
    pbft::v1::Envelope nv;
    if (!nv.ParseFromString(v)) {
      return absl::DataLossError("protocol store: corrupt NEW-VIEW record");
    }
    state.new_view = std::move(nv);
  } else if (!s.IsNotFound()) {
    return FromLevelDb(s, "read new view");
  }
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(std::string(1, kEntryPrefix));
       it->Valid() && it->key().size() > 0 && it->key()[0] == kEntryPrefix;
       it->Next()) {
    pbft::v1::Envelope e;
    if (!e.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError("protocol store: corrupt entry");
    }
    state.entries.push_back(std::move(e));
  }
  return state;
}

uint64_t ProtocolStore::MemoryBytes() const { return LevelDbMemoryBytes(*db_); }

absl::StatusOr<std::optional<pbft::v1::Envelope>> ProtocolStore::FindBody(
    uint64_t seq, const std::string& batch_digest) const {
  const std::string from = EntryKey(seq, pbft::v1::MESSAGE_TYPE_PRE_PREPARE, 0);
  const std::string to =
      EntryKey(seq, pbft::v1::MESSAGE_TYPE_PRE_PREPARE + 1, 0);
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(from); it->Valid() && it->key().compare(to) < 0; it->Next()) {
    pbft::v1::Envelope e;
    pbft::v1::PrePrepare pp;
    if (!e.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size())) ||
        !pp.ParseFromString(e.payload())) {
      return absl::DataLossError("protocol store: corrupt entry");
    }
    if (e.batch_size() > 0 && pp.batch_digest() == batch_digest) return e;
  }
  if (!it->status().ok()) return FromLevelDb(it->status(), "find body");
  return std::nullopt;
}

}  // namespace pbft::storage
