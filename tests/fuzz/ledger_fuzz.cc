// Fuzzes ledger operation decoding and execution: client requests carrying
// fuzzed ledger.v1.OperationBatch bytes (accounts, transfers, mints,
// ordered queries), signed by the test cluster's clients, ordered into
// certified blocks (as tests/ledger/block_factory.h makes them) and applied
// with Ledger::ApplyBlock to a ledger in an in-memory LevelDB, with ordered
// queries answered by Ledger::FillQueryAnswers as the replica does after
// each block.
//
// Input (tests/fuzz/fuzz_harness.h records; the header byte is unused), one
// request per record, from client `sender` % 3 + 1:
//   body: the request's operation bytes (kind bit 0x80: the whole
//     pbft.v1.Request payload instead);
//   kind bit 0x01: the block ends after this request;
//   kind bit 0x02: request number kind >> 2 (else the client's next one).
// Checked after every block: every request has an outcome, in order; an
// executed one has decodable results, one per operation (or the single
// MALFORMED_BATCH / TOO_MANY_OPERATIONS result) and was never executed
// before (exactly once); ordered queries are answered; on every ledger an
// operation named, the balances sum to the supply (genesis plus minted:
// money is conserved); the state digest equals one recomputed from every
// state record. At the end, the ledger reopened from its files has the same
// head, state digest and last-reply table.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "common/check.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/ledger.h"
#include "tests/fuzz/fuzz_harness.h"

namespace {

using pbft::fuzz::Record;

pbft::ledger::LedgerOptions Options(leveldb::Env* env) {
  pbft::ledger::LedgerOptions o;
  o.env = env;
  o.sync = false;
  o.parallel_state_hash = false;
  o.block_cache_bytes = 1 << 20;
  o.write_buffer_bytes = 1 << 20;
  return o;
}

// What tests/ledger/block_factory.h's MakeBlock(seq, requests) makes (the
// primary's PRE-PREPARE of view 0 and 2f+1 COMMITs), signed through the
// harness (TestCluster::Sign), which remembers signatures: the fuzzer's
// inputs repeat most of their blocks.
pbft::ledger::BlockInput MakeBlock(
    const pbft::fuzz::TestCluster& tc, uint64_t seq,
    const std::vector<pbft::v1::Envelope>& requests) {
  pbft::ledger::BlockInput in;
  in.seq = seq;
  in.timestamp_ms = 1'700'000'000'000 + seq * 10;
  google::protobuf::RepeatedPtrField<pbft::v1::Envelope> batch(requests.begin(),
                                                               requests.end());
  in.batch_digest = pbft::BatchDigest(batch);
  pbft::v1::PrePrepare pp;
  pp.set_view(0);
  pp.set_seq(seq);
  pp.set_timestamp_ms(in.timestamp_ms);
  pp.set_batch_digest(in.batch_digest.ToBytes());
  in.pre_prepare =
      tc.Sign(pbft::v1::MESSAGE_TYPE_PRE_PREPARE, 0, pp.SerializeAsString());
  in.pre_prepare.mutable_batch()->Swap(&batch);
  for (uint32_t i = 0; i < tc.cluster().quorum(); ++i) {
    const uint32_t id =
        static_cast<uint32_t>((seq + i) % pbft::fuzz::kReplicas);
    pbft::v1::Commit c;
    c.set_view(0);
    c.set_seq(seq);
    c.set_batch_digest(in.batch_digest.ToBytes());
    c.set_replica_id(id);
    *in.certificate.add_commits() =
        tc.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, id, c.SerializeAsString());
  }
  return in;
}

class Run {
 public:
  explicit Run(const pbft::fuzz::TestCluster* tc)
      : tc_(tc), env_(leveldb::NewMemEnv(leveldb::Env::Default())) {
    auto opened = pbft::ledger::Ledger::Open(tc_->cluster(), "/ledger_fuzz",
                                             Options(env_.get()));
    CHECK_OK(opened.status());
    ledger_ = std::move(*opened);
    ledgers_.insert(1);
  }

  void Add(const Record& r) {
    const uint64_t client = r.sender % pbft::fuzz::kClients + 1;
    pbft::v1::Request req;
    if (r.kind & 0x80) {
      if (!req.ParseFromString(r.body)) return;
    } else {
      req.set_client_id(client);
      req.set_request_number((r.kind & 2) ? r.kind >> 2 : ++numbers_[client]);
      req.set_operation(r.body);
    }
    NoteLedgers(req.operation());
    requests_.push_back(tc_->Sign(pbft::v1::MESSAGE_TYPE_REQUEST, client,
                                  req.SerializeAsString()));
  }

  void EndBlock() {
    const uint64_t seq = ledger_->last_executed() + 1;
    auto result = ledger_->ApplyBlock(MakeBlock(*tc_, seq, requests_));
    CHECK_OK(result.status());
    CHECK_EQ(result->outcomes.size(), requests_.size());
    for (size_t i = 0; i < requests_.size(); ++i) {
      CheckOutcome(requests_[i], &result->outcomes[i]);
    }
    requests_.clear();
    CHECK(result->state_digest == ledger_->state_digest());
    auto recomputed = ledger_->TEST_RecomputeStateDigest();
    CHECK_OK(recomputed.status());
    CHECK(*recomputed == ledger_->state_digest());
    for (uint32_t l : ledgers_) {
      auto sum = ledger_->TEST_SumBalances(l);
      CHECK_OK(sum.status());
      CHECK_EQ(*sum, ledger_->Supply(l));
    }
  }

  // Closes the ledger and opens it again from the same files.
  void Reopen() {
    const auto head = ledger_->head().SerializeAsString();
    const pbft::Digest digest = ledger_->state_digest();
    auto table = ledger_->ClientTable();
    CHECK_OK(table.status());
    ledger_.reset();
    auto opened = pbft::ledger::Ledger::Open(tc_->cluster(), "/ledger_fuzz",
                                             Options(env_.get()));
    CHECK_OK(opened.status());
    ledger_ = std::move(*opened);
    CHECK_EQ(ledger_->head().SerializeAsString(), head);
    CHECK(ledger_->state_digest() == digest);
    auto again = ledger_->ClientTable();
    CHECK_OK(again.status());
    CHECK_EQ(again->size(), table->size());
    for (size_t i = 0; i < table->size(); ++i) {
      CHECK_EQ((*again)[i].client_id, (*table)[i].client_id);
      CHECK_EQ((*again)[i].request_number, (*table)[i].request_number);
      CHECK_EQ((*again)[i].result, (*table)[i].result);
    }
  }

  size_t pending() const { return requests_.size(); }

 private:
  // Every ledger an operation names is checked for conservation.
  void NoteLedgers(const std::string& operation) {
    ledger::v1::OperationBatch batch;
    if (!batch.ParseFromString(operation)) return;
    for (const ledger::v1::Operation& op : batch.operations()) {
      if (op.has_create_account())
        ledgers_.insert(op.create_account().ledger());
      if (op.has_transfer()) ledgers_.insert(op.transfer().ledger());
      if (op.has_mint()) ledgers_.insert(op.mint().ledger());
    }
  }

  void CheckOutcome(const pbft::v1::Envelope& e,
                    pbft::ledger::RequestOutcome* o) {
    pbft::v1::Request req;
    CHECK(req.ParseFromString(e.payload()));
    // Attributable: the last-reply table applies (docs/api.md).
    const bool attributable = req.client_id() == e.sender() && !req.read_only();
    if (attributable) {
      CHECK_EQ(o->client_id, req.client_id());
      CHECK_EQ(o->request_number, req.request_number());
    }
    if (o->duplicate) return;
    // Exactly once: never executed before.
    if (attributable) {
      CHECK(executed_.insert({o->client_id, o->request_number}).second);
    }
    if (o->has_query) CHECK_OK(ledger_->FillQueryAnswers(e, &o->result));
    ledger::v1::OperationResults results;
    CHECK(results.ParseFromString(o->result));
    ledger::v1::OperationBatch batch;
    const bool whole = batch.ParseFromString(req.operation()) &&
                       results.results_size() == batch.operations_size();
    if (whole) return;
    CHECK_EQ(results.results_size(), 1);
    const ledger::v1::ResultCode code = results.results(0).code();
    CHECK(code == ledger::v1::RESULT_CODE_MALFORMED_BATCH ||
          code == ledger::v1::RESULT_CODE_TOO_MANY_OPERATIONS);
  }

  const pbft::fuzz::TestCluster* tc_;
  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<pbft::ledger::Ledger> ledger_;
  std::vector<pbft::v1::Envelope> requests_;
  std::map<uint64_t, uint64_t> numbers_;
  std::set<std::pair<uint64_t, uint64_t>> executed_;
  std::set<uint32_t> ledgers_;
};

// The cluster, once per process; first, that MakeBlock above makes what
// the block factory makes.
const pbft::fuzz::TestCluster* Cluster() {
  auto* tc = new pbft::fuzz::TestCluster();
  const std::vector<pbft::v1::Envelope> requests = {tc->factory().SignRequest(
      1, 1,
      pbft::test::Ops(
          {pbft::test::MintOp(pbft::test::Id(9), pbft::test::Id(1), 5)}))};
  const pbft::ledger::BlockInput ours = MakeBlock(*tc, 7, requests);
  const pbft::ledger::BlockInput theirs = tc->factory().MakeBlock(7, requests);
  CHECK_EQ(ours.pre_prepare.SerializeAsString(),
           theirs.pre_prepare.SerializeAsString());
  CHECK_EQ(ours.certificate.SerializeAsString(),
           theirs.certificate.SerializeAsString());
  CHECK(ours.batch_digest == theirs.batch_digest);
  CHECK_EQ(ours.timestamp_ms, theirs.timestamp_ms);
  return tc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pbft::fuzz::TestCluster* const tc = Cluster();
  uint8_t header;
  const std::vector<Record> records =
      pbft::fuzz::ParseRecords(data, size, pbft::fuzz::kRecordsMax, &header);
  Run run(tc);
  for (const Record& r : records) {
    run.Add(r);
    if (r.kind & 1) run.EndBlock();
  }
  if (run.pending() > 0) run.EndBlock();
  run.Reopen();
  return 0;
}
