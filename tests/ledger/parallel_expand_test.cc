// The parallel state-hash expansion (replica/ledger/parallel_expand.h): the
// helper thread changes who computes an element, never its value, so the
// state digest is the same bit for bit with and without it
// (docs/storage_format.md "State digest").
#include "replica/ledger/parallel_expand.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "replica/ledger/ledger.h"
#include "tests/ledger/ledger_test_util.h"

namespace pbft::ledger {
namespace {

using internal::ParallelExpander;
using test::Id;

std::string RandomBytes(std::mt19937_64* rng, size_t max_size) {
  std::string s((*rng)() % (max_size + 1), '\0');
  for (char& c : s) c = static_cast<char>((*rng)() & 0xff);
  return s;
}

// Random rounds of every size around the helper threshold, mixing the
// three kinds of job (expand and add, expand and remove, remove an element
// expanded earlier): each kept output equals StateHash::Expand on the
// calling thread, and the hash equals the one summed sequentially.
TEST(ParallelExpanderTest, EqualsSequentialExpansion) {
  std::mt19937_64 rng(7);
  for (bool use_helper : {true, false}) {
    ParallelExpander expander(use_helper);
    StateHash parallel, sequential;
    for (size_t n :
         {size_t{0}, size_t{1}, ParallelExpander::kParallelJobsMin - 1,
          ParallelExpander::kParallelJobsMin, size_t{200}, size_t{1500}}) {
      for (int round = 0; round < 3; ++round) {
        SCOPED_TRACE(::testing::Message() << "helper " << use_helper << " n "
                                          << n << " round " << round);
        std::vector<std::string> keys, values;
        std::vector<StateHash::Lanes> earlier(n);
        for (size_t i = 0; i < n; ++i) {
          keys.push_back(RandomBytes(&rng, 25));
          values.push_back(RandomBytes(&rng, 200));
          StateHash::Expand(RandomBytes(&rng, 25), RandomBytes(&rng, 96),
                            &earlier[i]);
        }
        std::vector<StateHash::Lanes> out(n);
        std::vector<ParallelExpander::Job> jobs;
        for (size_t i = 0; i < n; ++i) {
          ParallelExpander::Job job;
          switch (i % 3) {
            case 0:  // Expand, keep, add.
              job.key = keys[i];
              job.value = values[i];
              job.out = &out[i];
              sequential.Add(keys[i], values[i]);
              break;
            case 1:  // Expand and remove, output not kept.
              job.key = keys[i];
              job.value = values[i];
              job.remove = true;
              sequential.Remove(keys[i], values[i]);
              break;
            case 2:  // Remove an element expanded earlier.
              job.expanded = &earlier[i];
              job.remove = true;
              sequential.RemoveLanes(earlier[i]);
              break;
          }
          jobs.push_back(job);
        }
        expander.Start(&jobs);
        expander.Finish(&parallel);
        ASSERT_EQ(parallel, sequential);
        for (size_t i = 0; i < n; i += 3) {
          StateHash::Lanes expected;
          StateHash::Expand(keys[i], values[i], &expected);
          ASSERT_EQ(out[i], expected) << "job " << i;
        }
      }
    }
    EXPECT_NE(parallel, StateHash());
    // With the helper, how many it took depends on the scheduler.
    if (!use_helper) {
      EXPECT_EQ(expander.helper_jobs(), 0u);
    }
  }
}

// Two ledgers, one expanding on a helper thread and one on the ApplyBlock
// thread only, given the same random blocks that each change hundreds of
// accounts: identical digests and block hashes after every block, equal to
// the digest recomputed from a full scan.
TEST(ParallelExpanderTest, LedgerDigestWithAndWithoutHelper) {
  constexpr uint64_t kClients = 5;
  constexpr uint64_t kAccounts = 400;
  test::FactoryOptions fo;
  fo.clients = kClients;
  test::BlockFactory f(fo);
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  std::unique_ptr<Ledger> ledgers[2];
  for (int i = 0; i < 2; ++i) {
    LedgerOptions o;
    o.env = env.get();
    o.sync = true;
    o.parallel_state_hash = i == 0;
    absl::StatusOr<std::unique_ptr<Ledger>> l =
        Ledger::Open(f.cluster(), i == 0 ? "/parallel" : "/sequential", o);
    ASSERT_TRUE(l.ok()) << l.status();
    ledgers[i] = std::move(*l);
  }
  auto owner = [](uint64_t a) { return 1 + a % kClients; };
  std::vector<BlockInput> blocks;
  {
    std::map<uint64_t, std::vector<v1::Operation>> creates;
    std::vector<v1::Operation> mints;
    for (uint64_t a = 0; a < kAccounts; ++a) {
      creates[owner(a)].push_back(test::CreateAccountOp(Id(1000 + a)));
      mints.push_back(test::MintOp(Id(a + 1, 1), Id(1000 + a), 1'000'000));
    }
    std::vector<pbft::v1::Envelope> requests;
    for (auto& [client, ops] : creates) {
      requests.push_back(f.Request(client, test::Ops(std::move(ops))));
    }
    blocks.push_back(f.NextBlock(std::move(requests)));
    blocks.push_back(f.NextBlock({f.Request(1, test::Ops(std::move(mints)))}));
  }
  std::mt19937_64 rng(11);
  uint64_t next_id = 1;
  for (int b = 0; b < 12; ++b) {
    std::vector<pbft::v1::Envelope> requests;
    for (uint64_t client = 1; client <= kClients; ++client) {
      std::vector<v1::Operation> ops;
      for (int i = 0; i < 60; ++i) {
        const uint64_t debit =
            (rng() % (kAccounts / kClients)) * kClients + client - 1;
        const uint64_t credit = rng() % kAccounts;
        ops.push_back(test::TransferOp(Id(next_id++, 2), Id(1000 + debit),
                                       Id(1000 + credit), 1 + rng() % 5000));
      }
      requests.push_back(f.Request(client, test::Ops(std::move(ops))));
    }
    blocks.push_back(f.NextBlock(std::move(requests)));
  }
  for (const BlockInput& in : blocks) {
    SCOPED_TRACE(::testing::Message() << "block " << in.seq);
    absl::StatusOr<BlockResult> p = ledgers[0]->ApplyBlock(in);
    absl::StatusOr<BlockResult> s = ledgers[1]->ApplyBlock(in);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_EQ(p->state_digest, s->state_digest);
    ASSERT_EQ(p->block_hash, s->block_hash);
    absl::StatusOr<Digest> full = ledgers[0]->TEST_RecomputeStateDigest();
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_EQ(*full, p->state_digest);
  }
  EXPECT_EQ(ledgers[1]->TEST_helper_expansions(), 0u);
}

}  // namespace
}  // namespace pbft::ledger
