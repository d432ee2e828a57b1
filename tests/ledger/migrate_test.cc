// Ledger format 2 -> 3: a format-2 data directory (the committing view
// hashed into block headers, no results root) is rewritten at open into the
// chain a format-3 ledger builds from the same blocks.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/codec.h"
#include "common/crypto.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "leveldb/write_batch.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"
#include "replica/ledger/verify.h"
#include "tests/ledger/ledger_test_util.h"
#include "tests/unit/test_util.h"

namespace pbft::ledger {
namespace {

using test::Id;
using test::Ops;
using test::TransferOp;

constexpr uint64_t kBlocks = 5;

// Builds `count` blocks in views 0, 1, 1, 2, 2, ...; returns the head.
v1::ChainHead BuildChain(test::BlockFactory* f, const std::string& dir,
                         uint64_t count, std::vector<uint64_t>* views) {
  LedgerOptions o;
  o.sync = false;  // Test data: durability is not what is tested here.
  std::unique_ptr<Ledger> l = *Ledger::Open(f->cluster(), dir, o);
  for (uint64_t seq = 1; seq <= count; ++seq) {
    views->push_back(seq / 2);
    std::vector<pbft::v1::Envelope> requests = {
        f->Request(1, Ops({TransferOp(Id(seq), Id(1), Id(2), seq)}))};
    CHECK_OK(
        l->ApplyBlock(f->MakeBlock(seq, requests, views->back())).status());
  }
  return l->head();
}

// The format-2 block hash.
Digest Format2Hash(const v1::BlockHeader& h, uint64_t view) {
  std::string bytes;
  codec::Writer w(&bytes);
  w.PutRaw("pbft-ledger/block/v1");
  w.PutU64(h.height());
  w.PutU64(view);
  w.PutBytes(h.previous_hash());
  w.PutBytes(h.requests_root());
  w.PutBytes(h.batch_digest());
  w.PutBytes(h.state_digest());
  w.PutU64(h.timestamp_ms());
  return crypto::Sha256(bytes);
}

// Rewrites a format-3 data directory as format 2 would have written it.
void Downgrade(const std::string& dir, uint64_t blocks = kBlocks) {
  leveldb::DB* raw = nullptr;
  ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir, &raw).ok());
  std::unique_ptr<leveldb::DB> db(raw);
  leveldb::WriteOptions wo;
  wo.sync = true;
  Digest previous;
  for (uint64_t height = 1; height <= blocks; ++height) {
    std::string bytes;
    ASSERT_TRUE(
        db->Get(leveldb::ReadOptions(), internal::BlockKey(height), &bytes)
            .ok());
    v1::Block b;
    ASSERT_TRUE(b.ParseFromString(bytes));
    v1::BlockHeader& h = *b.mutable_header();
    h.clear_results_root();
    h.set_previous_hash(previous.ToBytes());
    previous = Format2Hash(h, b.view());
    // Format 2 kept the view in header field 2 and had no Block.view.
    h.GetReflection()->MutableUnknownFields(&h)->AddVarint(2, b.view());
    b.clear_view();
    ASSERT_TRUE(
        db->Put(wo, internal::BlockKey(height), b.SerializeAsString()).ok());
  }
  std::string head_bytes;
  ASSERT_TRUE(db->Get(leveldb::ReadOptions(), std::string(internal::kMetaHead),
                      &head_bytes)
                  .ok());
  internal::HeadValue head = *internal::DecodeHead(head_bytes);
  head.block_hash = previous;
  std::string format;
  internal::PutU32(&format, 2);
  ASSERT_TRUE(
      db->Put(wo, std::string(internal::kMetaHead), internal::EncodeHead(head))
          .ok());
  ASSERT_TRUE(db->Put(wo, std::string(internal::kMetaFormat), format).ok());
}

TEST(LedgerMigrate, Format2ChainIsRewrittenAsFormat3) {
  ::pbft::test::TempDir tmp;
  const std::string dir = tmp.file("ledger");
  test::BlockFactory f;
  std::vector<uint64_t> views;
  const v1::ChainHead built = BuildChain(&f, dir, kBlocks, &views);
  Downgrade(dir);

  // Read-only openers (verify) refuse it with the reason.
  absl::StatusOr<std::unique_ptr<Ledger>> ro =
      Ledger::OpenExisting(dir, LedgerOptions{});
  ASSERT_FALSE(ro.ok());
  EXPECT_NE(ro.status().message().find("format version 2"), std::string::npos)
      << ro.status();
  EXPECT_FALSE(VerifyDataDir(dir, &f.cluster(), {}).ok);

  {
    absl::StatusOr<std::unique_ptr<Ledger>> l =
        Ledger::Open(f.cluster(), dir, LedgerOptions{});
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_EQ((*l)->head().SerializeAsString(), built.SerializeAsString());
    for (uint64_t seq = 1; seq <= kBlocks; ++seq) {
      absl::StatusOr<v1::Block> b = (*l)->GetStoredBlock(seq);
      ASSERT_TRUE(b.ok());
      EXPECT_EQ(b->view(), views[seq - 1]);
      EXPECT_TRUE(
          b->header().GetReflection()->GetUnknownFields(b->header()).empty());
    }
  }
  ChainVerifyReport r = VerifyDataDir(dir, &f.cluster(), {});
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.head_hash.ToBytes(), built.block_hash());
}

// A migration interrupted after its first synced write (the first
// kMigrateBlocksPerWrite blocks rewritten, the progress record set)
// completes at the next open with the same chain, and removes the record.
TEST(LedgerMigrate, InterruptedMigrationResumes) {
  ::pbft::test::TempDir tmp;
  const std::string dir = tmp.file("ledger");
  test::BlockFactory f;
  std::vector<uint64_t> views;
  const uint64_t blocks = internal::kMigrateBlocksPerWrite + 40;
  const v1::ChainHead built = BuildChain(&f, dir, blocks, &views);
  // The format-3 records of the first batch, and its progress record.
  std::map<std::string, std::string> first_write;
  {
    std::unique_ptr<Ledger> l = *Ledger::OpenExisting(dir, LedgerOptions{});
    for (uint64_t h = 1; h <= internal::kMigrateBlocksPerWrite; ++h) {
      first_write[internal::BlockKey(h)] =
          l->GetStoredBlock(h)->SerializeAsString();
    }
    std::string progress;
    internal::PutU64(&progress, internal::kMigrateBlocksPerWrite);
    progress +=
        BlockHash(l->GetStoredBlock(internal::kMigrateBlocksPerWrite)->header())
            .ToBytes();
    first_write[std::string(internal::kMetaMigrate)] = progress;
  }
  Downgrade(dir, blocks);
  {
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir, &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    leveldb::WriteBatch batch;
    for (const auto& [k, v] : first_write) batch.Put(k, v);
    leveldb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Write(wo, &batch).ok());
  }
  {
    absl::StatusOr<std::unique_ptr<Ledger>> l =
        Ledger::Open(f.cluster(), dir, LedgerOptions{});
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_EQ((*l)->head().SerializeAsString(), built.SerializeAsString());
    std::string progress;
    EXPECT_TRUE((*l)->TEST_db()
                    ->Get(leveldb::ReadOptions(),
                          std::string(internal::kMetaMigrate), &progress)
                    .IsNotFound());
  }
  ChainVerifyReport r = VerifyDataDir(dir, &f.cluster(), {});
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.blocks_verified, blocks);
}

TEST(LedgerMigrate, RefusesUnknownFormats) {
  ::pbft::test::TempDir tmp;
  const std::string dir = tmp.file("ledger");
  test::BlockFactory f;
  { ASSERT_TRUE(Ledger::Open(f.cluster(), dir, LedgerOptions{}).ok()); }
  for (uint32_t version : {1u, 4u}) {
    {
      leveldb::DB* raw = nullptr;
      ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir, &raw).ok());
      std::unique_ptr<leveldb::DB> db(raw);
      std::string format;
      internal::PutU32(&format, version);
      leveldb::WriteOptions wo;
      wo.sync = true;
      ASSERT_TRUE(db->Put(wo, std::string(internal::kMetaFormat), format).ok());
    }
    absl::StatusOr<std::unique_ptr<Ledger>> l =
        Ledger::Open(f.cluster(), dir, LedgerOptions{});
    ASSERT_FALSE(l.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(l.status())) << l.status();
    EXPECT_NE(
        l.status().message().find(absl::StrCat("format version ", version)),
        std::string::npos)
        << l.status();
  }
}

}  // namespace
}  // namespace pbft::ledger
