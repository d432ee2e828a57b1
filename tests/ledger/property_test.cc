// Property tests over random operation sequences (seeded; a failure names
// its seed): two independent ledgers given the same blocks reach identical
// state digests and results; money is conserved after every block (sum of
// balances == genesis + minted, per ledger); the incremental state digest
// equals one recomputed from scratch; balance == credits - debits.
#include <random>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "replica/ledger/ledger.h"
#include "tests/ledger/ledger_test_util.h"
#include "tests/unit/test_util.h"

namespace pbft::ledger {
namespace {

using test::Id;

constexpr uint64_t kClients = 5;
constexpr uint64_t kGenesis = 1'000'000;

class RandomOps {
 public:
  explicit RandomOps(uint64_t seed) : rng_(seed) {}

  uint64_t Pick(uint64_t n) { return rng_() % n; }

  v1::Uint128 AccountId() {
    // Genesis accounts 1..kClients, created ones 100..119, some unknown.
    const uint64_t r = Pick(10);
    if (r < 5) return Id(1 + Pick(kClients));
    if (r < 9) return Id(100 + Pick(20));
    return Id(500 + Pick(3));
  }

  uint64_t Amount() {
    switch (Pick(8)) {
      case 0:
        return 0;
      case 1:
        return std::numeric_limits<uint64_t>::max() - Pick(3);
      case 2:
        return kGenesis + Pick(kGenesis);
      default:
        return 1 + Pick(5000);
    }
  }

  v1::Operation Op(uint64_t* minted_ledger, uint64_t* minted_amount) {
    *minted_amount = 0;
    const uint32_t ledger = Pick(6) == 0 ? 2 : 1;
    const std::string memo(Pick(10) == 0 ? 65 : Pick(8), 'm');
    // A small id pool so that retries and conflicts happen.
    const v1::Uint128 id = Id(Pick(40) == 0 ? 0 : 1 + Pick(300), 7);
    switch (Pick(10)) {
      case 0:
      case 1:
        return test::CreateAccountOp(Id(100 + Pick(20)), ledger,
                                     static_cast<uint32_t>(Pick(2)));
      case 2: {
        const uint64_t amount = Amount();
        *minted_ledger = ledger;
        *minted_amount = amount;
        return test::MintOp(id, AccountId(), amount, ledger, memo);
      }
      case 3:
        return v1::Operation();
      default:
        return test::TransferOp(id, AccountId(), AccountId(), Amount(), ledger,
                                memo);
    }
  }

 private:
  std::mt19937_64 rng_;
};

void RunSeed(uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  test::FactoryOptions fo;
  fo.clients = kClients;
  test::MemLedger a(fo);  // In memory.
  ::pbft::test::TempDir dir;
  test::BlockFactory& f = a.factory();
  LedgerOptions disk;
  disk.sync = true;
  absl::StatusOr<std::unique_ptr<Ledger>> b =
      Ledger::Open(f.cluster(), dir.file("b"), disk);  // On disk.
  ASSERT_TRUE(b.ok()) << b.status();
  RandomOps gen(seed);
  std::map<uint64_t, uint64_t> request_number;
  // Minted per ledger, counted from the OK results of mint operations.
  std::map<uint32_t, uint64_t> minted;

  for (int block = 0; block < 25; ++block) {
    std::vector<pbft::v1::Envelope> requests;
    std::vector<std::vector<std::pair<uint64_t, uint64_t>>> mints;
    const uint64_t n_requests = gen.Pick(4);  // 0: a null batch.
    for (uint64_t r = 0; r < n_requests; ++r) {
      const uint64_t client = 1 + gen.Pick(kClients);
      std::vector<v1::Operation> ops;
      std::vector<std::pair<uint64_t, uint64_t>> op_mints;
      for (uint64_t i = 0, n = gen.Pick(8); i < n; ++i) {
        uint64_t ml = 0, ma = 0;
        ops.push_back(gen.Op(&ml, &ma));
        op_mints.push_back({ml, ma});
      }
      // Sometimes resend the client's last request number (a duplicate).
      uint64_t& number = request_number[client];
      if (number == 0 || gen.Pick(8) != 0) ++number;
      requests.push_back(f.SignRequest(client, number, test::Ops(ops)));
      mints.push_back(op_mints);
    }
    const BlockInput in = f.MakeBlock(block + 1, requests);
    absl::StatusOr<BlockResult> ra = a.ledger().ApplyBlock(in);
    absl::StatusOr<BlockResult> rb = (*b)->ApplyBlock(in);
    ASSERT_TRUE(ra.ok()) << ra.status();
    ASSERT_TRUE(rb.ok()) << rb.status();
    ASSERT_EQ(ra->state_digest, rb->state_digest) << "block " << block + 1;
    ASSERT_EQ(ra->block_hash, rb->block_hash);
    ASSERT_EQ(ra->outcomes.size(), rb->outcomes.size());
    for (size_t i = 0; i < ra->outcomes.size(); ++i) {
      ASSERT_EQ(ra->outcomes[i].result, rb->outcomes[i].result);
      ASSERT_EQ(ra->outcomes[i].duplicate, rb->outcomes[i].duplicate);
      if (ra->outcomes[i].duplicate) continue;
      v1::OperationResults res;
      ASSERT_TRUE(res.ParseFromString(ra->outcomes[i].result));
      for (int j = 0;
           j < res.results_size() && j < static_cast<int>(mints[i].size());
           ++j) {
        if (res.results(j).code() == v1::RESULT_CODE_OK &&
            mints[i][j].second > 0) {
          minted[static_cast<uint32_t>(mints[i][j].first)] +=
              mints[i][j].second;
        }
      }
    }
    // Conservation, per ledger.
    for (uint32_t l : {1u, 2u}) {
      const uint64_t genesis = l == 1 ? kClients * kGenesis : 0;
      absl::StatusOr<uint64_t> sum = a.ledger().TEST_SumBalances(l);
      ASSERT_TRUE(sum.ok());
      EXPECT_EQ(*sum, genesis + minted[l]) << "ledger " << l;
      EXPECT_EQ(a.ledger().Supply(l), genesis + minted[l]);
    }
    // Incremental == from scratch.
    absl::StatusOr<Digest> full = (*b)->TEST_RecomputeStateDigest();
    ASSERT_TRUE(full.ok());
    ASSERT_EQ(*full, rb->state_digest) << "block " << block + 1;
    // Reopen the on-disk ledger now and then: same state, same digest.
    if (gen.Pick(5) == 0) {
      b->reset();
      b = Ledger::Open(f.cluster(), dir.file("b"), disk);
      ASSERT_TRUE(b.ok());
      ASSERT_EQ((*b)->state_digest(), ra->state_digest);
    }
  }
  // Per-account invariants: balance == credits_posted - debits_posted, and
  // the history (walked in pages of random sizes, the same on both ledgers)
  // lists exactly the OK transfers and mints that make up the posted
  // amounts beyond genesis, newest first.
  std::vector<uint64_t> ids = {1, 2, 3, 4, 5};
  for (uint64_t id = 100; id < 120; ++id) ids.push_back(id);
  for (uint64_t id : ids) {
    SCOPED_TRACE(::testing::Message() << "account " << id);
    absl::StatusOr<v1::Account> acct = a.ledger().GetAccount(Id(id));
    if (!acct.ok()) {
      EXPECT_TRUE(absl::IsNotFound(a.ledger().GetHistory(Id(id), 0).status()));
      continue;
    }
    EXPECT_EQ(acct->balance(), acct->credits_posted() - acct->debits_posted());
    uint64_t credits = 0, debits = 0, last_seq = ~uint64_t{0};
    v1::Uint128 cursor;
    for (int page = 0; page < 1000; ++page) {
      const uint32_t limit = 1 + static_cast<uint32_t>(gen.Pick(5));
      absl::StatusOr<v1::HistoryPage> pa =
          a.ledger().GetHistory(Id(id), limit, cursor);
      absl::StatusOr<v1::HistoryPage> pb =
          (*b)->GetHistory(Id(id), limit, cursor);
      ASSERT_TRUE(pa.ok()) << pa.status();
      ASSERT_TRUE(pb.ok()) << pb.status();
      ASSERT_EQ(pa->SerializeAsString(), pb->SerializeAsString());
      ASSERT_LE(pa->entries_size(), static_cast<int>(limit));
      for (const v1::TransferRecord& t : pa->entries()) {
        ASSERT_EQ(t.result(), v1::RESULT_CODE_OK);
        ASSERT_LE(t.seq(), last_seq);  // Newest first.
        last_seq = t.seq();
        const bool debit =
            !t.is_mint() && t.debit_account_id().SerializeAsString() ==
                                Id(id).SerializeAsString();
        const bool credit = t.credit_account_id().SerializeAsString() ==
                            Id(id).SerializeAsString();
        ASSERT_NE(debit, credit);
        (debit ? debits : credits) += t.amount();
      }
      if (!pa->has_next_cursor()) break;
      ASSERT_EQ(pa->entries_size(), static_cast<int>(limit));
      cursor = pa->next_cursor();
    }
    const uint64_t genesis = id <= kClients ? kGenesis : 0;
    EXPECT_EQ(credits, acct->credits_posted() - genesis);
    EXPECT_EQ(debits, acct->debits_posted());
  }
}

// Random blocks into one in-memory ledger; the last block hash, which
// chains every block's header and so every state digest along the way.
std::string ChainFingerprint(uint64_t seed, uint32_t blocks) {
  test::FactoryOptions fo;
  fo.clients = kClients;
  test::MemLedger a(fo);
  test::BlockFactory& f = a.factory();
  RandomOps gen(seed);
  std::map<uint64_t, uint64_t> request_number;
  Digest last;
  for (uint32_t block = 0; block < blocks; ++block) {
    std::vector<pbft::v1::Envelope> requests;
    for (uint64_t r = 0, n = gen.Pick(4); r < n; ++r) {
      const uint64_t client = 1 + gen.Pick(kClients);
      std::vector<v1::Operation> ops;
      for (uint64_t i = 0, m = gen.Pick(8); i < m; ++i) {
        uint64_t ml = 0, ma = 0;
        ops.push_back(gen.Op(&ml, &ma));
      }
      uint64_t& number = request_number[client];
      if (number == 0 || gen.Pick(8) != 0) ++number;
      requests.push_back(f.SignRequest(client, number, test::Ops(ops)));
    }
    absl::StatusOr<BlockResult> r =
        a.ledger().ApplyBlock(f.MakeBlock(block + 1, requests));
    CHECK_OK(r.status());
    last = r->block_hash;
  }
  return last.ToHex();
}

// Fixed answers for the whole chain (state digest definition, record
// encodings, block hash): a faster execution path must give the same bytes
// as the one every existing ledger was built with. Ledger format 3 (history
// links in account and transfer records; block hash v2: no view, results
// root); a change here is a new format version (internal::kFormatVersion).
TEST(LedgerProperty, ChainKnownAnswer) {
  EXPECT_EQ(ChainFingerprint(1, 40),
            "6f4da32fcaf3a7bc7f56c1cb1b9963fc68c66d85c9c168355adf25c8f3f7a3b8");
  EXPECT_EQ(ChainFingerprint(2, 40),
            "b50fb5db1911abcbdad69e7ecffd741adb820ff099e93f460127c2d7e6dc1465");
}

TEST(LedgerProperty, TwoLedgersAgreeAndMoneyIsConserved) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    RunSeed(seed);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace pbft::ledger
