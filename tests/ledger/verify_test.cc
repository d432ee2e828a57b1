// Offline verification of chains and receipts, and tampering: one flipped
// byte anywhere must fail, naming the height and what broke.
#include "replica/ledger/verify.h"

#include <filesystem>
#include <fstream>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"
#include "tests/ledger/ledger_test_util.h"
#include "tests/unit/test_util.h"

namespace pbft::ledger {
namespace {

using test::Id;
using test::MintOp;
using test::Ops;
using test::TransferOp;

constexpr int kBlocks = 6;

// Builds a chain of kBlocks blocks (transfers, a mint, a null batch, a view
// change) in `dir`; blocks up to `legacy_to` in the form earlier versions
// stored (the batch inside the signed PRE-PREPARE header).
void BuildChain(test::BlockFactory* f, const std::string& dir,
                int legacy_to = 0) {
  std::unique_ptr<Ledger> l = *Ledger::Open(f->cluster(), dir, LedgerOptions{});
  uint64_t id = 1;
  for (int b = 1; b <= kBlocks; ++b) {
    std::vector<pbft::v1::Envelope> requests;
    if (b != 4) {  // Block 4 is a null batch.
      for (uint64_t c = 1; c <= 3; ++c) {
        std::vector<v1::Operation> ops;
        for (int i = 0; i < 3; ++i) {
          ops.push_back(TransferOp(Id(id++), Id(c), Id(1 + c % 3), 10 + i));
        }
        if (c == 1) ops.push_back(MintOp(Id(id++), Id(2), 7));
        requests.push_back(f->Request(c, Ops(ops)));
      }
    }
    // Block 5 and later committed in view 1 (after a view change).
    CHECK_OK(l->ApplyBlock(f->MakeBlock(b, requests, b >= 5 ? 1 : 0, 0, 0,
                                        /*legacy=*/b <= legacy_to))
                 .status());
  }
}

// Rewrites one record of a data directory.
void Rewrite(const std::string& dir, const std::string& key,
             const std::function<void(std::string*)>& edit) {
  leveldb::DB* raw = nullptr;
  leveldb::Options o;
  ASSERT_TRUE(leveldb::DB::Open(o, dir, &raw).ok());
  std::unique_ptr<leveldb::DB> db(raw);
  std::string value;
  ASSERT_TRUE(db->Get(leveldb::ReadOptions(), key, &value).ok()) << key;
  edit(&value);
  leveldb::WriteOptions w;
  w.sync = true;
  if (value.empty()) {
    ASSERT_TRUE(db->Delete(w, key).ok());
  } else {
    ASSERT_TRUE(db->Put(w, key, value).ok());
  }
}

void RewriteBlock(const std::string& dir, uint64_t height,
                  const std::function<void(v1::Block*)>& edit) {
  Rewrite(dir, internal::BlockKey(height), [&](std::string* bytes) {
    v1::Block b;
    ASSERT_TRUE(b.ParseFromString(*bytes));
    edit(&b);
    *bytes = b.SerializeAsString();
  });
}

void Flip(std::string* s, size_t i = 0) { (*s)[i % s->size()] ^= 0x01; }

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.file("chain");
    BuildChain(&factory_, dir_);
  }
  ChainVerifyReport Verify(const Cluster* trust = nullptr) {
    return VerifyDataDir(dir_, trust, {});
  }
  void ExpectFail(uint64_t height, const std::string& check) {
    ChainVerifyReport r = Verify();
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failed_height, height) << r.error;
    EXPECT_EQ(r.failed_check, check) << r.error;
    if (height > 0) {
      EXPECT_NE(r.error.find("block " + std::to_string(height)),
                std::string::npos)
          << r.error;
    }
  }

  ::pbft::test::TempDir tmp_;
  test::BlockFactory factory_;
  std::string dir_;
};

TEST_F(VerifyTest, IntactChainVerifies) {
  ChainVerifyReport r = Verify();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.head_height, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(r.blocks_verified, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(r.requests, 15u);
  EXPECT_EQ(r.cluster_id, "test-cluster");
  // With the auditor's own copy of the config too.
  r = Verify(&factory_.cluster());
  EXPECT_TRUE(r.ok) << r.error;
}

TEST_F(VerifyTest, HashLink) {
  RewriteBlock(dir_, 3, [](v1::Block* b) {
    Flip(b->mutable_header()->mutable_previous_hash(), 5);
  });
  ExpectFail(3, "hash_link");
}

TEST_F(VerifyTest, MerkleRoot) {
  RewriteBlock(dir_, 2, [](v1::Block* b) {
    Flip(b->mutable_header()->mutable_requests_root(), 31);
  });
  ExpectFail(2, "merkle_root");
}

TEST_F(VerifyTest, StateDigest) {
  RewriteBlock(dir_, 5, [](v1::Block* b) {
    Flip(b->mutable_header()->mutable_state_digest(), 0);
  });
  ExpectFail(5, "state_digest");
}

TEST_F(VerifyTest, BatchDigestAgainstCertificate) {
  RewriteBlock(dir_, 2, [](v1::Block* b) {
    Flip(b->mutable_header()->mutable_batch_digest(), 9);
  });
  ExpectFail(2, "pre_prepare");  // The signed pre-prepare names the digest.
}

TEST_F(VerifyTest, Timestamp) {
  RewriteBlock(dir_, 2, [](v1::Block* b) {
    b->mutable_header()->set_timestamp_ms(b->header().timestamp_ms() ^ 1);
  });
  ExpectFail(2, "pre_prepare");
}

TEST_F(VerifyTest, CommitSignature) {
  RewriteBlock(dir_, 4, [](v1::Block* b) {
    Flip(b->mutable_certificate()->mutable_commits(1)->mutable_signature(), 7);
  });
  ExpectFail(4, "certificate");
}

TEST_F(VerifyTest, CommitMissingOrDuplicated) {
  RewriteBlock(dir_, 1, [](v1::Block* b) {
    b->mutable_certificate()->mutable_commits()->RemoveLast();
  });
  ExpectFail(1, "certificate");
}

TEST_F(VerifyTest, CommitFromTheSameReplicaTwice) {
  RewriteBlock(dir_, 6, [](v1::Block* b) {
    *b->mutable_certificate()->mutable_commits(2) = b->certificate().commits(0);
  });
  ExpectFail(6, "certificate");
}

TEST_F(VerifyTest, CommitForAnotherSeq) {
  // A valid certificate of block 2 pasted into block 3.
  v1::Block two;
  {
    std::unique_ptr<Ledger> l = *Ledger::OpenExisting(dir_, LedgerOptions{});
    two = *l->GetStoredBlock(2);
  }
  RewriteBlock(dir_, 3, [&](v1::Block* b) {
    *b->mutable_certificate() = two.certificate();
  });
  ExpectFail(3, "certificate");
}

TEST_F(VerifyTest, RequestPayload) {
  RewriteBlock(dir_, 3, [](v1::Block* b) {
    Flip(b->mutable_pre_prepare()->mutable_batch(1)->mutable_payload(), 20);
  });
  // The batch beside the signed header no longer has the header's digest.
  ExpectFail(3, "merkle_root");
}

TEST_F(VerifyTest, StoredResult) {
  RewriteBlock(dir_, 2, [](v1::Block* b) { Flip(b->mutable_results(0), 6); });
  ExpectFail(2, "results_root");
}

TEST_F(VerifyTest, StoredResultWithItsRoot) {
  // The header's results root recomputed over the flipped result: the
  // record is consistent, re-execution still disagrees.
  RewriteBlock(dir_, 2, [](v1::Block* b) {
    Flip(b->mutable_results(1), 3);
    b->mutable_header()->set_results_root(ResultsRoot(b->results()).ToBytes());
  });
  ExpectFail(2, "results");
}

TEST_F(VerifyTest, ResultsRoot) {
  RewriteBlock(dir_, 6, [](v1::Block* b) {
    Flip(b->mutable_header()->mutable_results_root(), 17);
  });
  ExpectFail(6, "results_root");
}

TEST_F(VerifyTest, ViewBesideTheHeader) {
  // The view is not hashed, but the pre-prepare and the certificate must be
  // of that view.
  RewriteBlock(dir_, 5, [](v1::Block* b) { b->set_view(b->view() + 4); });
  ExpectFail(5, "pre_prepare");
}

TEST_F(VerifyTest, AccountBalanceInState) {
  Rewrite(dir_, internal::AccountKey({0, 2}),
          [](std::string* v) { Flip(v, 60); });
  ExpectFail(kBlocks, "state");
}

TEST_F(VerifyTest, HistoryLinkInAccount) {
  // The history head: bytes 96..111 of the account record.
  Rewrite(dir_, internal::AccountKey({0, 2}),
          [](std::string* v) { Flip(v, 100); });
  ExpectFail(kBlocks, "state");
}

TEST_F(VerifyTest, ChainHead) {
  Rewrite(dir_, std::string(internal::kMetaHead),
          [](std::string* v) { Flip(v, 12); });  // In the block hash.
  ExpectFail(kBlocks, "head");
}

TEST_F(VerifyTest, BlockRemoved) {
  Rewrite(dir_, internal::BlockKey(4), [](std::string* v) { v->clear(); });
  ExpectFail(4, "storage");
}

TEST_F(VerifyTest, ClientSignature) {
  // A primary that orders a request with a bad client signature.
  test::BlockFactory f;
  ::pbft::test::TempDir tmp;
  {
    std::unique_ptr<Ledger> l =
        *Ledger::Open(f.cluster(), tmp.file("c"), LedgerOptions{});
    pbft::v1::Envelope bad =
        f.Request(2, Ops({TransferOp(Id(9), Id(2), Id(1), 5)}));
    Flip(bad.mutable_signature(), 3);
    ASSERT_TRUE(l->ApplyBlock(f.NextBlock({})).ok());
    ASSERT_TRUE(l->ApplyBlock(f.NextBlock({bad})).ok());
  }
  ChainVerifyReport r = VerifyDataDir(tmp.file("c"), nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed_height, 2u);
  EXPECT_EQ(r.failed_check, "client_signature") << r.error;
}

TEST_F(VerifyTest, AnotherTrustRoot) {
  // Same cluster id and genesis owners' ids, other replica keys.
  v1::ClusterConfig other = factory_.config();
  test::FactoryOptions o;
  o.key_seed = 9;
  test::BlockFactory impostor(o);
  for (int i = 0; i < other.replicas_size(); ++i) {
    other.mutable_replicas(i)->set_public_key(
        impostor.config().replicas(i).public_key());
  }
  Cluster trust = *Cluster::FromProto(other, "auditor.json");
  ChainVerifyReport r = Verify(&trust);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed_height, 1u);
  EXPECT_EQ(r.failed_check, "pre_prepare") << r.error;
  // Another genesis (client keys differ) fails before block 1.
  r = Verify(&impostor.cluster());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed_height, 0u);
}

// A flipped byte in LevelDB's files (below the records): the checksums
// LevelDB keeps catch it, and verify reports the store as broken.
TEST_F(VerifyTest, FlippedByteInTheFiles) {
  ASSERT_TRUE(Verify().ok);  // Reopening moved the log into a table file.
  std::vector<std::filesystem::path> tables;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    if (e.path().extension() == ".ldb") tables.push_back(e.path());
  }
  ASSERT_FALSE(tables.empty());
  const std::string pristine = tmp_.file("pristine");
  std::filesystem::copy(dir_, pristine);
  int flips = 0;
  for (const auto& table : tables) {
    const auto size = std::filesystem::file_size(table);
    for (uint64_t off = 7; off < size; off += size / 9 + 1) {
      std::filesystem::remove_all(dir_);
      std::filesystem::copy(pristine, dir_);
      {
        std::fstream f(table, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(off));
        char c;
        f.read(&c, 1);
        c ^= 0x10;
        f.seekp(static_cast<std::streamoff>(off));
        f.write(&c, 1);
      }
      ChainVerifyReport r = Verify();
      EXPECT_FALSE(r.ok) << table << " offset " << off;
      ++flips;
    }
  }
  EXPECT_GE(flips, 9);
}

// ---------------------------------------------------------------------------
// Receipts.

class ReceiptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BuildChain(&factory_, tmp_.file("chain"));
    ledger_ = *Ledger::OpenExisting(tmp_.file("chain"), LedgerOptions{});
  }

  ::pbft::test::TempDir tmp_;
  test::BlockFactory factory_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(ReceiptTest, BuildAndVerify) {
  // Transfer 14 is in block 2, request from client 2; 13 is a mint.
  for (uint64_t id : {1, 4, 14, 23, 40}) {
    absl::StatusOr<v1::Receipt> receipt = ledger_->BuildReceipt(Id(id));
    ASSERT_TRUE(receipt.ok()) << id << ": " << receipt.status();
    absl::StatusOr<ReceiptSummary> s =
        VerifyReceipt(factory_.cluster(), *receipt);
    ASSERT_TRUE(s.ok()) << id << ": " << s.status();
    EXPECT_EQ(s->transfer.id().low(), id);
    EXPECT_EQ(s->height, receipt->header().height());
    EXPECT_FALSE(s->result_certified);
    // The header is the replica's block: same hash as its chain's.
    EXPECT_EQ(s->block_hash,
              BlockHash(ledger_->GetStoredBlock(s->height)->header()));
    EXPECT_LT(receipt->ByteSizeLong(), 4096u);  // A few KB at most.
  }
  EXPECT_TRUE(absl::IsNotFound(ledger_->BuildReceipt(Id(999)).status()));
}

// The outcome is bound to the header: another result for the same
// request, however well-formed, does not verify.
TEST_F(ReceiptTest, ResultIsProvenByTheResultsRoot) {
  v1::Receipt receipt = *ledger_->BuildReceipt(Id(14));
  ASSERT_GT(receipt.result_proof_size(), 0);
  ASSERT_TRUE(VerifyReceipt(factory_.cluster(), receipt).ok());
  v1::OperationResults results;
  ASSERT_TRUE(results.ParseFromString(receipt.result()));
  for (v1::OperationResult& r : *results.mutable_results()) {
    r.set_code(v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  }
  v1::Receipt forged = receipt;
  forged.set_result(results.SerializeAsString());
  forged.mutable_transfer()->set_result(v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  absl::StatusOr<ReceiptSummary> s = VerifyReceipt(factory_.cluster(), forged);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("results_root"), std::string::npos)
      << s.status();
  // A receipt without the path proves nothing about the outcome.
  forged = receipt;
  forged.clear_result_proof();
  EXPECT_FALSE(VerifyReceipt(factory_.cluster(), forged).ok());
}

TEST_F(ReceiptTest, RepliesCertifyTheResult) {
  v1::Receipt receipt = *ledger_->BuildReceipt(Id(14));
  pbft::v1::Request request;
  ASSERT_TRUE(request.ParseFromString(receipt.request().payload()));
  for (uint32_t i = 0; i < 2; ++i) {  // f+1 = 2.
    *receipt.add_replies() = factory_.SignReply(
        i, 0, request.client_id(), request.request_number(), receipt.result());
  }
  absl::StatusOr<ReceiptSummary> s = VerifyReceipt(factory_.cluster(), receipt);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->result_certified);
  // Only one distinct replier: not enough.
  *receipt.mutable_replies(1) = receipt.replies(0);
  EXPECT_FALSE(VerifyReceipt(factory_.cluster(), receipt).ok());
}

// Every single-bit flip of a serialized receipt is rejected, except in what
// a receipt does not certify: the header's previous_hash and state_digest
// (chain verification covers them; they change the block hash, which is
// compared with a replica's chain). The result and its path to the
// header's results root are certified (docs/api.md "Receipts").
TEST_F(ReceiptTest, EveryFlippedByteIsRejected) {
  const v1::Receipt receipt = *ledger_->BuildReceipt(Id(23));
  const std::string bytes = receipt.SerializeAsString();
  auto certified_part = [](v1::Receipt r) {
    r.mutable_header()->clear_previous_hash();
    r.mutable_header()->clear_state_digest();
    r.DiscardUnknownFields();
    return r.SerializeAsString();
  };
  int rejected = 0, uncertified = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t bit : {0x01, 0x80}) {
      std::string flipped = bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ bit);
      v1::Receipt r;
      if (!r.ParseFromString(flipped) ||
          !VerifyReceipt(factory_.cluster(), r).ok()) {
        ++rejected;
        continue;
      }
      ++uncertified;
      EXPECT_TRUE(certified_part(r) == certified_part(receipt))
          << "byte " << i << " bit " << int(bit) << " was accepted";
    }
  }
  EXPECT_GT(rejected, static_cast<int>(bytes.size()));
  EXPECT_LT(uncertified, static_cast<int>(bytes.size()) / 4);
}

}  // namespace
}  // namespace pbft::ledger

namespace pbft::ledger {
namespace {

// Data directories written before the batch moved beside the signed header
// stay readable and verifiable, without migration: blocks 1-3 in the older
// form, 4-6 in the current one.
TEST(VerifyOlderForm, MixedChainVerifiesAndServesItsBatches) {
  ::pbft::test::TempDir tmp;
  test::BlockFactory factory;
  const std::string dir = tmp.file("chain");
  BuildChain(&factory, dir, /*legacy_to=*/3);
  ChainVerifyReport r = VerifyDataDir(dir, nullptr, {});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.blocks_verified, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(r.requests, 15u);
  std::unique_ptr<Ledger> l = *Ledger::OpenExisting(dir, LedgerOptions{});
  for (uint64_t h : {2u, 5u}) {
    absl::StatusOr<v1::Block> b = l->GetBlock(h);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->requests_size(), 3) << h;
    absl::StatusOr<pbft::v1::CertifiedBatch> cb = l->GetCertifiedBatch(h);
    ASSERT_TRUE(cb.ok());
    pbft::v1::PrePrepare pp;
    ASSERT_TRUE(pp.ParseFromString(cb->pre_prepare().payload()));
    EXPECT_EQ(BatchOf(cb->pre_prepare(), pp).size(), 3) << h;
    EXPECT_EQ(pp.legacy_requests_size() > 0, h <= 3) << h;
  }
  l.reset();
  // A flipped byte in an older block's batch breaks its signed header.
  RewriteBlock(dir, 2, [](v1::Block* b) {
    pbft::v1::PrePrepare pp;
    ASSERT_TRUE(pp.ParseFromString(b->pre_prepare().payload()));
    Flip(pp.mutable_legacy_requests(1)->mutable_payload(), 20);
    b->mutable_pre_prepare()->set_payload(pp.SerializeAsString());
  });
  r = VerifyDataDir(dir, nullptr, {});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed_height, 2u) << r.error;
  EXPECT_EQ(r.failed_check, "pre_prepare") << r.error;
}

}  // namespace
}  // namespace pbft::ledger
