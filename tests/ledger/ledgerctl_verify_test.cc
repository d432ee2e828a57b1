// `ledgerctl verify`, `receipt` and `verify-receipt` end to end on a chain
// built with the block factory (the binary is run as a user would).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"
#include "tests/ledger/block_factory.h"
#include "tests/unit/test_util.h"

namespace pbft::ledger {
namespace {

using test::Id;

struct CliRun {
  int exit_code;
  std::string out;
};

CliRun Ledgerctl(const std::string& args) {
  const std::string cmd = std::string(LEDGERCTL_PATH) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  CHECK(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WEXITSTATUS(status), out};
}

class LedgerctlVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.file("data");
    config_ = tmp_.file("cluster.json");
    std::ofstream(config_) << ClusterConfigToJson(factory_.config());
    std::unique_ptr<Ledger> l =
        *Ledger::Open(factory_.cluster(), dir_, LedgerOptions{});
    for (int b = 1; b <= 4; ++b) {
      CHECK_OK(l->ApplyBlock(factory_.NextBlock({factory_.Request(
                                 2, test::Ops({test::TransferOp(
                                        Id(b), Id(2), Id(3), 100 + b)}))}))
                   .status());
    }
  }

  ::pbft::test::TempDir tmp_;
  test::BlockFactory factory_;
  std::string dir_;
  std::string config_;
};

TEST_F(LedgerctlVerifyTest, VerifyWithStoredAndGivenTrustRoot) {
  CliRun r = Ledgerctl("verify --data-dir " + dir_);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("verify: ok: 4 blocks"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trust root: stored config"), std::string::npos);
  r = Ledgerctl("verify --data-dir " + dir_ + " --config " + config_ +
                " --json");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("\"ok\":true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"trust_root\":\"" + config_ + "\""), std::string::npos)
      << r.out;
}

TEST_F(LedgerctlVerifyTest, TamperedChainFailsNamingTheHeight) {
  {
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir_, &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    std::string v;
    ASSERT_TRUE(
        db->Get(leveldb::ReadOptions(), internal::BlockKey(3), &v).ok());
    v1::Block b;
    ASSERT_TRUE(b.ParseFromString(v));
    std::string* root = b.mutable_header()->mutable_requests_root();
    (*root)[4] ^= 1;
    leveldb::WriteOptions w;
    w.sync = true;
    ASSERT_TRUE(db->Put(w, internal::BlockKey(3), b.SerializeAsString()).ok());
  }
  CliRun r = Ledgerctl("verify --data-dir " + dir_ + " --json");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("\"failed_height\":3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"failed_check\":\"merkle_root\""), std::string::npos)
      << r.out;
  r = Ledgerctl("verify --data-dir " + dir_);
  EXPECT_NE(r.out.find("FAILED at height 3"), std::string::npos) << r.out;
}

// Another replica's data dir: the same batches committed in other views
// with other certificates (and, from `fork_at`, another batch).
void BuildReplica(const test::BlockFactory& f, const std::string& dir,
                  uint64_t blocks, uint64_t fork_at) {
  test::BlockFactory mine(f.options());
  std::unique_ptr<Ledger> l = *Ledger::Open(f.cluster(), dir, LedgerOptions{});
  for (uint64_t b = 1; b <= blocks; ++b) {
    const uint64_t amount = b >= fork_at ? 7 : 100 + b;
    CHECK_OK(
        l->ApplyBlock(mine.MakeBlock(
                          b,
                          {mine.Request(2, test::Ops({test::TransferOp(
                                               Id(b), Id(2), Id(3), amount)}))},
                          /*view=*/b, /*timestamp_ms=*/0, /*commits=*/4))
            .status());
  }
}

TEST_F(LedgerctlVerifyTest, CompareReplicasChains) {
  const std::string same = tmp_.file("same");
  const std::string behind = tmp_.file("behind");
  const std::string forked = tmp_.file("forked");
  BuildReplica(factory_, same, 4, /*fork_at=*/99);
  BuildReplica(factory_, behind, 2, /*fork_at=*/99);
  BuildReplica(factory_, forked, 4, /*fork_at=*/3);
  CliRun r = Ledgerctl("verify --data-dir " + dir_ + " --compare " + same +
                       "," + behind);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("compare: ok: 3 chains agree up to height 2"),
            std::string::npos)
      << r.out;
  r = Ledgerctl("verify --json --data-dir " + dir_ + " --compare " + forked);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("\"agree\":false"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"fork_height\":3"), std::string::npos) << r.out;
  r = Ledgerctl("verify --data-dir " + dir_ + " --compare " + forked);
  EXPECT_NE(r.out.find("differ from height 3 on"), std::string::npos) << r.out;
}

// A receipt built from one replica proves its outcome against any correct
// replica's chain (the same block hashes), and not against another chain.
TEST_F(LedgerctlVerifyTest, ReceiptAgainstAnotherReplicasChain) {
  const std::string other = tmp_.file("other");
  const std::string forked = tmp_.file("forked");
  BuildReplica(factory_, other, 4, /*fork_at=*/99);
  BuildReplica(factory_, forked, 4, /*fork_at=*/2);
  const std::string file = tmp_.file("receipt.json");
  ASSERT_EQ(
      Ledgerctl("receipt --data-dir " + dir_ + " --transfer 3 --out " + file)
          .exit_code,
      0);
  CliRun r = Ledgerctl("verify-receipt " + file + " --config " + config_ +
                       " --data-dir " + other);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("result RESULT_CODE_OK in block"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("which is block 3 of " + other), std::string::npos)
      << r.out;
  r = Ledgerctl("verify-receipt " + file + " --config " + config_ +
                " --data-dir " + forked + " --json");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("is not block 3 of"), std::string::npos) << r.out;
}

TEST_F(LedgerctlVerifyTest, ReceiptRoundTripAndTamper) {
  const std::string file = tmp_.file("receipt.json");
  CliRun r =
      Ledgerctl("receipt --data-dir " + dir_ + " --transfer 3 --out " + file);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = Ledgerctl("verify-receipt " + file + " --config " + config_);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("committed at height 3"), std::string::npos) << r.out;
  // Change the amount in the JSON: the signed request disagrees.
  std::ifstream in(file);
  std::string json((std::istreambuf_iterator<char>(in)), {});
  const size_t at = json.find("\"amount\": \"103\"");
  ASSERT_NE(at, std::string::npos) << json;
  json.replace(at, 15, "\"amount\": \"104\"");
  std::ofstream(tmp_.file("bad.json")) << json;
  r = Ledgerctl("verify-receipt " + tmp_.file("bad.json") + " --config " +
                config_);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  r = Ledgerctl("receipt --data-dir " + dir_ + " --transfer 99 --out " + file);
  EXPECT_EQ(r.exit_code, 1) << r.out;
}

}  // namespace
}  // namespace pbft::ledger
