// The ledger's operations, every result code, idempotency, exactly-once,
// blocks and queries (docs/api.md is the specification).
#include "replica/ledger/ledger.h"

#include "common/envelope.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger_internal.h"
#include "tests/ledger/ledger_test_util.h"

namespace pbft::ledger {
namespace {

using test::CreateAccountOp;
using test::Id;
using test::MemLedger;
using test::MintOp;
using test::Ops;
using test::TransferOp;

constexpr uint64_t kGenesis = 1'000'000;

// Replicas' memtables differ in size, so that they are not written out at
// the same height: 16, 18, 20, 22 MB for four replicas, repeating after 8.
TEST(LedgerOptionsTest, WriteBufferDiffersByReplica) {
  const size_t mb = size_t{1} << 20;
  EXPECT_EQ(WriteBufferForReplica(16 * mb, 0), 16 * mb);
  EXPECT_EQ(WriteBufferForReplica(16 * mb, 1), 18 * mb);
  EXPECT_EQ(WriteBufferForReplica(16 * mb, 3), 22 * mb);
  EXPECT_EQ(WriteBufferForReplica(16 * mb, 7), 30 * mb);
  EXPECT_EQ(WriteBufferForReplica(16 * mb, 8), 16 * mb);
}

TEST(LedgerGenesis, AccountsAndSupplyFromConfig) {
  MemLedger m;
  EXPECT_EQ(m.ledger().last_executed(), 0u);
  for (uint64_t c = 1; c <= 3; ++c) {
    absl::StatusOr<v1::Account> a = m.ledger().GetAccount(Id(c));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->balance(), kGenesis);
    EXPECT_EQ(a->owner_client_id(), c);
    EXPECT_EQ(a->ledger(), 1u);
    EXPECT_EQ(a->created_seq(), 0u);
  }
  EXPECT_EQ(m.ledger().Supply(1), 3 * kGenesis);
  EXPECT_EQ(m.ledger().state_digest(), m.ledger().genesis_state_digest());
  EXPECT_EQ(*m.ledger().TEST_RecomputeStateDigest(), m.ledger().state_digest());
}

TEST(LedgerGenesis, RefusesAnotherClusterDataDir) {
  MemLedger m;
  m.Close();
  test::FactoryOptions other;
  other.cluster_id = "another-cluster";
  test::BlockFactory f(other);
  LedgerOptions o;
  o.env = m.env();
  absl::StatusOr<std::unique_ptr<Ledger>> l =
      Ledger::Open(f.cluster(), m.path(), o);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(l.status().message().find("another-cluster"), std::string::npos);
}

TEST(LedgerGenesis, OpenExistingUsesStoredConfig) {
  MemLedger m;
  m.Close();
  LedgerOptions o;
  o.env = m.env();
  absl::StatusOr<std::unique_ptr<Ledger>> l = Ledger::OpenExisting(m.path(), o);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ((*l)->cluster().cluster_id(), "test-cluster");
  EXPECT_FALSE(Ledger::OpenExisting("/nothing-here", o).ok());
}

TEST(LedgerTransfer, OkMovesMoneyAndRecords) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(100), Id(1), Id(2), 250, 1, "rent")),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 250);
  EXPECT_EQ(m.Balance(Id(2)), kGenesis + 250);
  absl::StatusOr<v1::TransferRecord> t = m.ledger().GetTransfer(Id(100));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->result(), v1::RESULT_CODE_OK);
  EXPECT_EQ(t->seq(), 1u);
  EXPECT_EQ(t->memo(), "rent");
  EXPECT_EQ(t->client_id(), 1u);
  EXPECT_FALSE(t->is_mint());
  absl::StatusOr<v1::Account> a = m.ledger().GetAccount(Id(1));
  EXPECT_EQ(a->debits_posted(), 250u);
  EXPECT_EQ(a->credits_posted(), kGenesis);
}

// One test per result code of docs/api.md.
TEST(LedgerResultCodes, IdMustNotBeZero) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(0), Id(1), Id(2), 1)),
            v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO);
  EXPECT_EQ(m.RunOne(1, CreateAccountOp(Id(0))),
            v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(0), Id(1), 5)),
            v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO);
}

TEST(LedgerResultCodes, AmountMustBePositive) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 0)),
            v1::RESULT_CODE_AMOUNT_MUST_BE_POSITIVE);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(8), Id(1), 0)),
            v1::RESULT_CODE_AMOUNT_MUST_BE_POSITIVE);
  // Static failures do not take the id.
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetTransfer(Id(7)).status()));
}

TEST(LedgerResultCodes, AccountsMustBeDifferent) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(1), 5)),
            v1::RESULT_CODE_ACCOUNTS_MUST_BE_DIFFERENT);
}

TEST(LedgerResultCodes, DebitAccountNotFound) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(999), Id(2), 5)),
            v1::RESULT_CODE_DEBIT_ACCOUNT_NOT_FOUND);
  EXPECT_EQ(m.ledger().GetTransfer(Id(7))->result(),
            v1::RESULT_CODE_DEBIT_ACCOUNT_NOT_FOUND);
}

TEST(LedgerResultCodes, CreditAccountNotFound) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(999), 5)),
            v1::RESULT_CODE_CREDIT_ACCOUNT_NOT_FOUND);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis);
}

TEST(LedgerResultCodes, LedgerMismatch) {
  MemLedger m;
  ASSERT_EQ(m.RunOne(2, CreateAccountOp(Id(50), 2)), v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(50), 5, 1)),
            v1::RESULT_CODE_LEDGER_MISMATCH);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(8), Id(1), Id(2), 5, 2)),
            v1::RESULT_CODE_LEDGER_MISMATCH);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(9), Id(1), 5, 2)),
            v1::RESULT_CODE_LEDGER_MISMATCH);
}

TEST(LedgerResultCodes, NotOwner) {
  MemLedger m;
  // Client 2 tries to move client 1's money.
  EXPECT_EQ(m.RunOne(2, TransferOp(Id(7), Id(1), Id(2), 5)),
            v1::RESULT_CODE_NOT_OWNER);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis);
  // Authorization failures do not take the id: the owner can still use it.
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5)),
            v1::RESULT_CODE_OK);
}

TEST(LedgerResultCodes, InsufficientFunds) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), kGenesis + 1)),
            v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(8), Id(1), Id(2), kGenesis)),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.Balance(Id(1)), 0u);
}

TEST(LedgerResultCodes, Overflow) {
  MemLedger m;
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(m.RunOne(1, MintOp(Id(7), Id(1), max)),
            v1::RESULT_CODE_OVERFLOW);  // Supply would overflow.
  EXPECT_EQ(m.RunOne(1, MintOp(Id(8), Id(1), max - 3 * kGenesis)),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(9), Id(2), 1)), v1::RESULT_CODE_OVERFLOW);
  EXPECT_EQ(m.ledger().Supply(1), max);
  // credits_posted is cumulative and can overflow even when balances fit.
  const uint64_t x = max - 3 * kGenesis;
  ASSERT_EQ(m.RunOne(1, TransferOp(Id(10), Id(1), Id(2), x)),
            v1::RESULT_CODE_OK);
  ASSERT_EQ(m.RunOne(2, TransferOp(Id(11), Id(2), Id(3), x)),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(3, TransferOp(Id(12), Id(3), Id(2), x)),
            v1::RESULT_CODE_OVERFLOW);
  EXPECT_EQ(m.ledger().GetTransfer(Id(12))->result(), v1::RESULT_CODE_OVERFLOW);
  EXPECT_EQ(*m.ledger().TEST_SumBalances(1), max);
}

TEST(LedgerResultCodes, ExistsWithOriginalOutcome) {
  MemLedger m;
  ASSERT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5)),
            v1::RESULT_CODE_OK);
  v1::OperationResults r = m.Run(1, {TransferOp(Id(7), Id(1), Id(2), 5)});
  EXPECT_EQ(r.results(0).code(), v1::RESULT_CODE_EXISTS);
  EXPECT_EQ(r.results(0).original_code(), v1::RESULT_CODE_OK);
  EXPECT_EQ(r.results(0).original_seq(), 1u);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 5);  // Applied once.
  // A recorded failure is the original outcome of its retries too.
  ASSERT_EQ(m.RunOne(1, TransferOp(Id(8), Id(1), Id(2), 10 * kGenesis)),
            v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  r = m.Run(1, {TransferOp(Id(8), Id(1), Id(2), 10 * kGenesis)});
  EXPECT_EQ(r.results(0).code(), v1::RESULT_CODE_EXISTS);
  EXPECT_EQ(r.results(0).original_code(), v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  // Accounts too.
  ASSERT_EQ(m.RunOne(2, CreateAccountOp(Id(60), 1, 3, 9)), v1::RESULT_CODE_OK);
  r = m.Run(2, {CreateAccountOp(Id(60), 1, 3, 9)});
  EXPECT_EQ(r.results(0).code(), v1::RESULT_CODE_EXISTS);
  EXPECT_EQ(r.results(0).original_code(), v1::RESULT_CODE_OK);
}

TEST(LedgerResultCodes, ExistsWithDifferentFields) {
  MemLedger m;
  ASSERT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5, 1, "a")),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 6, 1, "a")),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(3), 5, 1, "a")),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5, 1, "b")),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  // Mints share the id space with transfers.
  EXPECT_EQ(m.RunOne(1, MintOp(Id(7), Id(2), 5)),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 5);
  ASSERT_EQ(m.RunOne(2, CreateAccountOp(Id(60), 1, 3)), v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(2, CreateAccountOp(Id(60), 1, 4)),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  // Same fields but another owner is different too.
  EXPECT_EQ(m.RunOne(3, CreateAccountOp(Id(60), 1, 3)),
            v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
}

TEST(LedgerResultCodes, NotIssuer) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(2, MintOp(Id(7), Id(2), 5)), v1::RESULT_CODE_NOT_ISSUER);
  // Client 1 is an issuer on ledgers 1 and 2 only.
  EXPECT_EQ(m.RunOne(1, MintOp(Id(8), Id(1), 5, 3)),
            v1::RESULT_CODE_NOT_ISSUER);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(9), Id(2), 5)), v1::RESULT_CODE_OK);
  EXPECT_EQ(m.Balance(Id(2)), kGenesis + 5);
  EXPECT_EQ(m.ledger().Supply(1), 3 * kGenesis + 5);
  EXPECT_TRUE(m.ledger().GetTransfer(Id(9))->is_mint());
}

TEST(LedgerResultCodes, LedgerMustNotBeZero) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, CreateAccountOp(Id(60), 0)),
            v1::RESULT_CODE_LEDGER_MUST_NOT_BE_ZERO);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5, 0)),
            v1::RESULT_CODE_LEDGER_MUST_NOT_BE_ZERO);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(8), Id(1), 5, 0)),
            v1::RESULT_CODE_LEDGER_MUST_NOT_BE_ZERO);
}

TEST(LedgerResultCodes, MemoTooLong) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(7), Id(1), Id(2), 5, 1,
                                   std::string(kMemoBytesMax + 1, 'x'))),
            v1::RESULT_CODE_MEMO_TOO_LONG);
  EXPECT_EQ(m.RunOne(1, TransferOp(Id(8), Id(1), Id(2), 5, 1,
                                   std::string(kMemoBytesMax, 'x'))),
            v1::RESULT_CODE_OK);
  EXPECT_EQ(m.RunOne(1, MintOp(Id(9), Id(1), 5, 1,
                               std::string(kMemoBytesMax + 1, 'x'))),
            v1::RESULT_CODE_MEMO_TOO_LONG);
}

TEST(LedgerResultCodes, OperationEmpty) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, v1::Operation()), v1::RESULT_CODE_OPERATION_EMPTY);
}

TEST(LedgerResultCodes, AccountNotFoundForMint) {
  MemLedger m;
  EXPECT_EQ(m.RunOne(1, MintOp(Id(7), Id(999), 5)),
            v1::RESULT_CODE_ACCOUNT_NOT_FOUND);
  EXPECT_EQ(m.ledger().Supply(1), 3 * kGenesis);
}

TEST(LedgerResultCodes, MalformedBatch) {
  MemLedger m;
  pbft::v1::Request r;
  r.set_client_id(1);
  r.set_request_number(1);
  r.set_operation("\xff\xff\xff garbage");
  BlockResult b = m.Apply(
      {m.factory().client(1).SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r)});
  v1::OperationResults res;
  ASSERT_TRUE(res.ParseFromString(b.outcomes[0].result));
  ASSERT_EQ(res.results_size(), 1);
  EXPECT_EQ(res.results(0).code(), v1::RESULT_CODE_MALFORMED_BATCH);
  // A request whose client_id is not its signer is malformed too.
  r.set_client_id(2);
  r.set_operation(
      Ops({TransferOp(Id(7), Id(2), Id(1), 5)}).SerializeAsString());
  b = m.Apply(
      {m.factory().client(1).SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r)});
  ASSERT_TRUE(res.ParseFromString(b.outcomes[0].result));
  EXPECT_EQ(res.results(0).code(), v1::RESULT_CODE_MALFORMED_BATCH);
  EXPECT_EQ(m.Balance(Id(2)), kGenesis);
}

TEST(LedgerResultCodes, TooManyOperations) {
  test::FactoryOptions o;
  o.request_operations_max = 4;
  MemLedger m(o);
  std::vector<v1::Operation> ops;
  for (int i = 0; i < 5; ++i) {
    ops.push_back(TransferOp(Id(100 + i), Id(1), Id(2), 1));
  }
  v1::OperationResults r = m.Run(1, ops);
  ASSERT_EQ(r.results_size(), 1);
  EXPECT_EQ(r.results(0).code(), v1::RESULT_CODE_TOO_MANY_OPERATIONS);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis);  // Nothing executed.
  ops.pop_back();
  EXPECT_EQ(m.Run(1, ops).results_size(), 4);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 4);
}

TEST(LedgerBatch, OperationsExecuteInOrderEachWithItsCode) {
  MemLedger m;
  v1::OperationResults r = m.Run(
      2, {CreateAccountOp(Id(70)), TransferOp(Id(1001), Id(2), Id(70), 40),
          TransferOp(Id(1002), Id(70), Id(3), 30),
          TransferOp(Id(1003), Id(70), Id(3), 30),  // Only 10 left.
          TransferOp(Id(1004), Id(1), Id(3), 1)});  // Not the owner.
  ASSERT_EQ(r.results_size(), 5);
  EXPECT_EQ(r.seq(), 1u);
  EXPECT_EQ(r.results(0).code(), v1::RESULT_CODE_OK);
  EXPECT_EQ(r.results(1).code(), v1::RESULT_CODE_OK);
  EXPECT_EQ(r.results(2).code(), v1::RESULT_CODE_OK);
  EXPECT_EQ(r.results(3).code(), v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  EXPECT_EQ(r.results(4).code(), v1::RESULT_CODE_NOT_OWNER);
  EXPECT_EQ(m.Balance(Id(70)), 10u);
  EXPECT_EQ(m.Balance(Id(3)), kGenesis + 30);
  absl::StatusOr<v1::Account> a = m.ledger().GetAccount(Id(70));
  EXPECT_EQ(a->owner_client_id(), 2u);
  EXPECT_EQ(a->created_seq(), 1u);
}

TEST(LedgerBatch, SameIdTwiceInOneBlockAppliesOnce) {
  MemLedger m;
  auto& f = m.factory();
  BlockResult b =
      m.Apply({f.Request(1, Ops({TransferOp(Id(7), Id(1), Id(2), 5)})),
               f.Request(1, Ops({TransferOp(Id(7), Id(1), Id(2), 5)}))});
  v1::OperationResults second;
  ASSERT_TRUE(second.ParseFromString(b.outcomes[1].result));
  EXPECT_EQ(second.results(0).code(), v1::RESULT_CODE_EXISTS);
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 5);
  EXPECT_EQ(*m.ledger().TEST_RecomputeStateDigest(), b.state_digest);
}

// Castro–Liskov §4.1: a replica keeps the last reply per client and never
// executes a request number twice.
TEST(LedgerExactlyOnce, DuplicateAndOldRequestsAreNotExecuted) {
  MemLedger m;
  auto& f = m.factory();
  const auto ops = Ops({TransferOp(Id(7), Id(1), Id(2), 5)});
  BlockResult first = m.Apply({f.SignRequest(1, 5, ops)});
  EXPECT_FALSE(first.outcomes[0].duplicate);
  BlockResult again = m.Apply({f.SignRequest(1, 5, ops)});
  EXPECT_TRUE(again.outcomes[0].duplicate);
  EXPECT_EQ(again.outcomes[0].result, first.outcomes[0].result);
  BlockResult older =
      m.Apply({f.SignRequest(1, 4, Ops({TransferOp(Id(8), Id(1), Id(2), 5)}))});
  EXPECT_TRUE(older.outcomes[0].duplicate);
  EXPECT_TRUE(older.outcomes[0].result.empty());
  EXPECT_EQ(m.Balance(Id(1)), kGenesis - 5);
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetTransfer(Id(8)).status()));

  // The table survives a restart.
  m.Reopen();
  absl::StatusOr<std::vector<ClientReply>> table = m.ledger().ClientTable();
  ASSERT_TRUE(table.ok());
  ASSERT_EQ(table->size(), 1u);
  EXPECT_EQ((*table)[0].client_id, 1u);
  EXPECT_EQ((*table)[0].request_number, 5u);
  EXPECT_EQ((*table)[0].result, first.outcomes[0].result);
  BlockResult after = m.Apply({f.SignRequest(1, 5, ops)});
  EXPECT_TRUE(after.outcomes[0].duplicate);
  EXPECT_EQ(after.outcomes[0].result, first.outcomes[0].result);
}

TEST(LedgerBlocks, SeqMustBeNext) {
  MemLedger m;
  auto& f = m.factory();
  absl::StatusOr<BlockResult> r = m.ledger().ApplyBlock(f.MakeBlock(2, {}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  m.Apply({});
  r = m.ledger().ApplyBlock(f.MakeBlock(1, {}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

// The figure behind ledger_store_memory_bytes: the memtable grows with the
// blocks written, within the configured memtables and block cache.
TEST(LedgerBlocks, MemoryBytesFollowsTheMemtableWithinItsBounds) {
  MemLedger m;
  const uint64_t empty = m.ledger().MemoryBytes();
  EXPECT_GT(empty, 0u);  // The memtable's first arena block.
  for (int i = 0; i < 20; ++i) m.Apply({});  // Each writes ~2 KB of head.
  EXPECT_GT(m.ledger().MemoryBytes(), empty + 16 * 1024);
  const LedgerOptions o;
  EXPECT_LE(m.ledger().MemoryBytes(),
            2 * o.write_buffer_bytes + o.block_cache_bytes);
}

TEST(LedgerBlocks, InconsistentInputRefused) {
  MemLedger m;
  auto& f = m.factory();
  BlockInput in = f.MakeBlock(1, {f.Request(1, Ops({}))});
  in.batch_digest = NullBatchDigest();
  EXPECT_EQ(m.ledger().ApplyBlock(in).status().code(),
            absl::StatusCode::kInvalidArgument);
  in = f.MakeBlock(1, {});
  in.timestamp_ms += 1;
  EXPECT_EQ(m.ledger().ApplyBlock(in).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.ledger().last_executed(), 0u);
}

TEST(LedgerBlocks, NullBatchIsAnEmptyLinkedBlock) {
  MemLedger m;
  BlockResult b1 = m.Apply({});
  BlockResult b2 = m.Apply({});
  EXPECT_EQ(b1.state_digest, m.ledger().genesis_state_digest());
  EXPECT_NE(b1.block_hash, b2.block_hash);
  absl::StatusOr<v1::Block> block = m.ledger().GetBlock(2);
  ASSERT_TRUE(block.ok());
  EXPECT_EQ(block->header().height(), 2u);
  EXPECT_EQ(block->header().previous_hash(), b1.block_hash.ToBytes());
  EXPECT_EQ(block->header().batch_digest(), NullBatchDigest().ToBytes());
  EXPECT_EQ(block->requests_size(), 0);
  EXPECT_EQ(BlockHash(block->header()), b2.block_hash);
  absl::StatusOr<v1::Block> first = m.ledger().GetBlock(1);
  EXPECT_EQ(first->header().previous_hash(), std::string(32, '\0'));
}

// Replicas may commit one batch in different views with different commit
// certificates (a batch committed at one replica in view v is re-proposed
// to the others in view v+1 by the next primary's NEW-VIEW): the block
// hashes must not depend on either, or correct replicas' chains fork.
TEST(LedgerBlocks, SameBatchInOtherViewsGivesTheSameHashes) {
  MemLedger a;
  MemLedger b;  // Same options: the same cluster, keys and genesis.
  auto& f = a.factory();
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    std::vector<pbft::v1::Envelope> requests = {
        f.Request(1, Ops({TransferOp(Id(10 + seq), Id(1), Id(2), seq)})),
        f.Request(2, Ops({TransferOp(Id(20 + seq), Id(2), Id(9), 1)}))};
    const uint64_t timestamp_ms = 5000 + seq;
    BlockInput at_a = f.MakeBlock(seq, requests, /*view=*/0, timestamp_ms);
    BlockInput at_b =
        f.MakeBlock(seq, requests, /*view=*/seq, timestamp_ms, /*commits=*/4);
    ASSERT_NE(at_a.pre_prepare.SerializeAsString(),
              at_b.pre_prepare.SerializeAsString());
    absl::StatusOr<BlockResult> ra = a.ledger().ApplyBlock(at_a);
    absl::StatusOr<BlockResult> rb = b.ledger().ApplyBlock(at_b);
    ASSERT_TRUE(ra.ok()) << ra.status();
    ASSERT_TRUE(rb.ok()) << rb.status();
    EXPECT_EQ(ra->block_hash, rb->block_hash) << "height " << seq;
    EXPECT_EQ(ra->state_digest, rb->state_digest);
    absl::StatusOr<v1::Block> ba = a.ledger().GetBlock(seq);
    absl::StatusOr<v1::Block> bb = b.ledger().GetBlock(seq);
    ASSERT_TRUE(ba.ok() && bb.ok());
    // Byte-identical headers; the view and certificate are kept beside.
    EXPECT_EQ(ba->header().SerializeAsString(),
              bb->header().SerializeAsString());
    EXPECT_EQ(ba->view(), 0u);
    EXPECT_EQ(bb->view(), seq);
    EXPECT_EQ(ba->certificate().commits_size(), 3);
    EXPECT_EQ(bb->certificate().commits_size(), 4);
  }
  EXPECT_EQ(a.ledger().head().SerializeAsString(),
            b.ledger().head().SerializeAsString());

  // Read-only GetBlock answers are byte-identical but for block_commit, the
  // per-replica part that clients verify instead of matching.
  v1::Query q;
  q.mutable_get_block()->set_height(2);
  v1::QueryReply qa, qb;
  ASSERT_TRUE(a.ledger().Answer(q, &qa).ok());
  ASSERT_TRUE(b.ledger().Answer(q, &qb).ok());
  EXPECT_EQ(qa.block_commit().view(), 0u);
  EXPECT_EQ(qb.block_commit().view(), 2u);
  EXPECT_EQ(qb.block_commit().certificate().commits_size(), 4);
  EXPECT_FALSE(qa.block().has_certificate());
  EXPECT_FALSE(qa.block().has_pre_prepare());
  EXPECT_EQ(qa.block().requests_size(), 2);
  qa.clear_block_commit();
  qb.clear_block_commit();
  EXPECT_EQ(qa.SerializeAsString(), qb.SerializeAsString());

  // An ordered GetBlock: the reply's result bytes are identical.
  v1::Operation op;
  op.mutable_query()->mutable_get_block()->set_height(1);
  std::vector<pbft::v1::Envelope> requests = {f.Request(3, Ops({op}))};
  absl::StatusOr<BlockResult> ra =
      a.ledger().ApplyBlock(f.MakeBlock(4, requests, 0));
  absl::StatusOr<BlockResult> rb =
      b.ledger().ApplyBlock(f.MakeBlock(4, requests, 3, 0, 4));
  ASSERT_TRUE(ra.ok() && rb.ok());
  std::string result_a = ra->outcomes[0].result;
  std::string result_b = rb->outcomes[0].result;
  ASSERT_TRUE(a.ledger().FillQueryAnswers(requests[0], &result_a).ok());
  ASSERT_TRUE(b.ledger().FillQueryAnswers(requests[0], &result_b).ok());
  EXPECT_EQ(result_a, result_b);
  v1::OperationResults parsed;
  ASSERT_TRUE(parsed.ParseFromString(result_a));
  EXPECT_EQ(parsed.results(0).answer().block().header().height(), 1u);
}

// The results root commits the header to each request's outcome.
TEST(LedgerBlocks, HeaderCommitsToResults) {
  MemLedger m;
  auto& f = m.factory();
  BlockResult r = m.Apply(
      {f.Request(1, Ops({TransferOp(Id(7), Id(1), Id(2), 5)})),
       f.Request(2, Ops({TransferOp(Id(8), Id(2), Id(3), 2'000'000)}))});
  absl::StatusOr<v1::Block> b = m.ledger().GetBlock(1);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->results_size(), 2);
  EXPECT_EQ(b->results(0), r.outcomes[0].result);
  EXPECT_EQ(b->header().results_root(), ResultsRoot(b->results()).ToBytes());
  v1::Block other = *b;
  other.mutable_results(1)->back() ^= 1;
  EXPECT_NE(ResultsRoot(other.results()).ToBytes(), b->header().results_root());
  EXPECT_EQ(BlockHash(b->header()), r.block_hash);
}

TEST(LedgerBlocks, HeaderCertificateAndQueries) {
  MemLedger m;
  auto& f = m.factory();
  BlockInput in =
      f.MakeBlock(1,
                  {f.Request(1, Ops({TransferOp(Id(7), Id(1), Id(2), 5)})),
                   f.Request(2, Ops({TransferOp(Id(8), Id(2), Id(3), 6)}))},
                  /*view=*/5, /*timestamp_ms=*/1234);
  absl::StatusOr<BlockResult> r = m.ledger().ApplyBlock(in);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<v1::Block> b = m.ledger().GetBlock(1);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->view(), 5u);
  EXPECT_EQ(b->header().timestamp_ms(), 1234u);
  EXPECT_EQ(b->header().batch_digest(), in.batch_digest.ToBytes());
  EXPECT_EQ(b->header().state_digest(), r->state_digest.ToBytes());
  EXPECT_EQ(b->requests_size(), 2);
  EXPECT_EQ(b->results_size(), 2);
  EXPECT_EQ(b->certificate().commits_size(), 3);
  EXPECT_EQ(b->header().requests_root(), RequestsRoot(b->requests()).ToBytes());
  v1::ChainHead head = m.ledger().head();
  EXPECT_EQ(head.height(), 1u);
  EXPECT_EQ(head.block_hash(), r->block_hash.ToBytes());
  absl::StatusOr<pbft::v1::CertifiedBatch> cb = m.ledger().GetCertifiedBatch(1);
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(cb->pre_prepare().payload(), in.pre_prepare.payload());

  v1::Query q;
  v1::QueryReply reply;
  q.mutable_get_transfer()->mutable_id()->set_low(8);
  ASSERT_TRUE(m.ledger().Answer(q, &reply).ok());
  EXPECT_EQ(reply.transfer().seq(), 1u);
  q.mutable_get_block()->set_height(9);
  ASSERT_TRUE(m.ledger().Answer(q, &reply).ok());
  EXPECT_EQ(reply.answer_case(), v1::QueryReply::kNotFound);
  q.mutable_get_head();
  ASSERT_TRUE(m.ledger().Answer(q, &reply).ok());
  EXPECT_EQ(reply.head().height(), 1u);
  EXPECT_FALSE(m.ledger().Answer(v1::Query(), &reply).ok());
}

TEST(LedgerQueries, HistoryNewestFirstPaginated) {
  MemLedger m;
  for (uint64_t i = 1; i <= 7; ++i) {
    ASSERT_EQ(m.RunOne(1, TransferOp(Id(100 + i), Id(1), Id(1 + i % 2 + 1), i)),
              v1::RESULT_CODE_OK);
  }
  // A failed transfer is recorded but is not history.
  ASSERT_EQ(m.RunOne(1, TransferOp(Id(200), Id(1), Id(2), 10 * kGenesis)),
            v1::RESULT_CODE_INSUFFICIENT_FUNDS);
  std::vector<uint64_t> seen;
  v1::Uint128 cursor;
  std::vector<int> page_sizes;
  for (int page = 0; page < 10; ++page) {
    absl::StatusOr<v1::HistoryPage> p = m.ledger().GetHistory(Id(1), 3, cursor);
    ASSERT_TRUE(p.ok()) << p.status();
    page_sizes.push_back(p->entries_size());
    for (const v1::TransferRecord& t : p->entries())
      seen.push_back(t.id().low());
    if (!p->has_next_cursor()) break;
    EXPECT_EQ(p->next_cursor().low(), seen.back());  // The page's last entry.
    cursor = p->next_cursor();
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{107, 106, 105, 104, 103, 102, 101}));
  EXPECT_EQ(page_sizes, (std::vector<int>{3, 3, 1}));
  // An exact last page says there is nothing older.
  absl::StatusOr<v1::HistoryPage> exact = m.ledger().GetHistory(Id(1), 7);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->entries_size(), 7);
  EXPECT_FALSE(exact->has_next_cursor());
  absl::StatusOr<v1::HistoryPage> p2 = m.ledger().GetHistory(Id(2), 0);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->entries_size(), 3);  // i = 2, 4, 6 credited account 2.
  EXPECT_EQ(p2->entries(0).id().low(), 106u);
  EXPECT_FALSE(p2->has_next_cursor());
  // A cursor from the other account's history continues the right list.
  absl::StatusOr<v1::HistoryPage> p3 = m.ledger().GetHistory(Id(2), 0, Id(106));
  ASSERT_TRUE(p3.ok()) << p3.status();
  ASSERT_EQ(p3->entries_size(), 2);
  EXPECT_EQ(p3->entries(0).id().low(), 104u);
  EXPECT_EQ(p3->entries(1).id().low(), 102u);
  EXPECT_EQ(m.ledger().GetHistory(Id(1), kHistoryLimitMax + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Cursors that are not entries of this history: a transfer of another
  // account, a failed transfer, an unknown id.
  for (uint64_t bad : {107u, 200u, 999u}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(m.ledger().GetHistory(Id(2), 10, Id(bad)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetHistory(Id(999), 10).status()));
}

TEST(LedgerQueries, NotFound) {
  MemLedger m;
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetAccount(Id(999)).status()));
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetTransfer(Id(999)).status()));
  EXPECT_TRUE(absl::IsNotFound(m.ledger().GetBlock(1).status()));
}

}  // namespace
}  // namespace pbft::ledger

namespace pbft::ledger {
namespace {

v1::Operation QueryAccountOp(const v1::Uint128& id) {
  v1::Operation op;
  *op.mutable_query()->mutable_get_account()->mutable_id() = id;
  return op;
}

// An ordered query changes nothing, is recorded as OK, and is answered from
// the state after its block: later operations of the same block included
// (the read is linearized at the end of the block).
TEST(LedgerOrderedQuery, AnsweredFromTheStateAfterItsBlock) {
  MemLedger m;
  const Digest before = m.ledger().state_digest();
  pbft::v1::Envelope query_req =
      m.factory().Request(1, Ops({QueryAccountOp(Id(2))}));
  pbft::v1::Envelope transfer_req =
      m.factory().Request(2, Ops({TransferOp(Id(700), Id(2), Id(1), 40)}));
  BlockResult r = m.Apply({query_req, transfer_req});
  ASSERT_EQ(r.outcomes.size(), 2u);
  ASSERT_TRUE(r.outcomes[0].has_query);
  EXPECT_FALSE(r.outcomes[1].has_query);
  EXPECT_NE(m.ledger().state_digest(), before);  // The transfer's doing.

  std::string result = r.outcomes[0].result;
  v1::OperationResults stored;
  ASSERT_TRUE(stored.ParseFromString(result));
  ASSERT_EQ(stored.results_size(), 1);
  EXPECT_EQ(stored.results(0).code(), v1::RESULT_CODE_OK);
  EXPECT_FALSE(stored.results(0).has_answer());

  ASSERT_TRUE(m.ledger().FillQueryAnswers(query_req, &result).ok());
  v1::OperationResults answered;
  ASSERT_TRUE(answered.ParseFromString(result));
  ASSERT_TRUE(answered.results(0).answer().has_account());
  EXPECT_EQ(answered.results(0).answer().account().balance(), kGenesis - 40);

  // Deterministic: a second replica's answer is the same bytes.
  std::string again = r.outcomes[0].result;
  ASSERT_TRUE(m.ledger().FillQueryAnswers(query_req, &again).ok());
  EXPECT_EQ(again, result);

  // A query for something absent answers not_found, still OK.
  pbft::v1::Envelope missing =
      m.factory().Request(1, Ops({QueryAccountOp(Id(999))}));
  BlockResult r2 = m.Apply({missing});
  std::string res2 = r2.outcomes[0].result;
  ASSERT_TRUE(m.ledger().FillQueryAnswers(missing, &res2).ok());
  v1::OperationResults a2;
  ASSERT_TRUE(a2.ParseFromString(res2));
  EXPECT_FALSE(a2.results(0).answer().not_found().empty());
}

}  // namespace
}  // namespace pbft::ledger
