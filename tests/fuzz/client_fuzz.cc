// Fuzzes a replica's client API (ledger.v1.LedgerService Submit and Query)
// up to the core's input, through the functions its gRPC handlers call:
// ClientService::Admit (message type, the client's signature and cluster,
// wire limits, request decoding, client id and number, size and operation
// limits), the shares of waiting calls (CallShares), then for Submit the
// core's OnRequest on the primary of the fuzz cluster (its request queue
// and per-client queue share, then batching on ticks), and for Query
// AnswerClientQuery (query decoding, Ledger::Answer, the answer budget) on
// a ledger holding three blocks.
//
// Input (tests/fuzz/fuzz_harness.h records; the header byte is unused), one
// call per record:
//   kind bit 0: a Query (else a Submit);
//   kind bit 1: the body is the gRPC message as received (SubmitRequest or
//     QueryRequest bytes); otherwise it is a pbft.v1.Request payload the
//     harness signs as client `sender` (1..3 are the cluster's clients, any
//     other id an impostor);
//   kind bit 2: instead, client `sender` gives up its oldest waiting call.
// Checked: what Admit accepts is an authentic, canonical REQUEST of its
// signer within every limit, read_only as the call requires; what it
// refuses is answered with a message and counted; no client ever holds
// more than its share of waiting calls, and a full share refuses only that
// client; the core's invariants hold and every PRE-PREPARE it sends passes
// the backups' checks; an answered query names its request and is within
// the answer budget, and answering it again gives the same bytes.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "common/check.h"
#include "ledger/v1/service.pb.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/client_query.h"
#include "replica/ledger/ledger.h"
#include "replica/net/client_service.h"
#include "tests/fuzz/fuzz_harness.h"

namespace {

using pbft::fuzz::Record;

constexpr size_t kCallsMax = 6;        // Waiting calls, in all.
constexpr size_t kClientCallsMax = 3;  // ... per client.
constexpr uint64_t kAnswerBytesMax = 1024;

struct Setup {
  Setup()
      : service(&tc.pool(), pbft::net::ClientService::Handlers{},
                pbft::net::ClientService::Limits{
                    kCallsMax, kClientCallsMax,
                    pbft::fuzz::FuzzParams().batch_bytes_max,
                    pbft::fuzz::FuzzParams().request_operations_max}),
        env(leveldb::NewMemEnv(leveldb::Env::Default())) {
    pbft::ledger::LedgerOptions options;
    options.env = env.get();
    options.sync = false;
    options.parallel_state_hash = false;
    auto opened =
        pbft::ledger::Ledger::Open(tc.cluster(), "/client_fuzz", options);
    CHECK_OK(opened.status());
    chain = std::move(*opened);
    using pbft::test::Id;
    pbft::test::BlockFactory factory;
    uint64_t id = 1;
    for (uint64_t b = 1; b <= 3; ++b) {
      std::vector<ledger::v1::Operation> ops = {
          pbft::test::TransferOp(Id(id++), Id(1), Id(2), 10 + b),
          pbft::test::MintOp(Id(id++), Id(3), 7)};
      CHECK_OK(chain
                   ->ApplyBlock(factory.MakeBlock(
                       b, {factory.Request(1, pbft::test::Ops(ops))}))
                   .status());
    }
  }

  pbft::fuzz::TestCluster tc;
  pbft::net::ClientService service;
  std::unique_ptr<leveldb::Env> env;
  std::unique_ptr<pbft::ledger::Ledger> chain;
};

// The envelope the call carries; false if gRPC would not decode it.
bool CallEnvelope(const Setup& s, const Record& r, bool query,
                  pbft::v1::Envelope* e) {
  if (r.kind & 2) {
    if (query) {
      ledger::v1::QueryRequest q;
      if (!q.ParseFromString(r.body)) return false;
      *e = q.query();
    } else {
      ledger::v1::SubmitRequest q;
      if (!q.ParseFromString(r.body)) return false;
      *e = q.request();
    }
    return true;
  }
  *e = s.tc.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, r.sender, r.body);
  return true;
}

void CheckAdmitted(const Setup& s, const pbft::v1::Envelope& e, bool query,
                   const pbft::v1::Request& req) {
  CHECK(e.type() == pbft::v1::MESSAGE_TYPE_REQUEST);
  CHECK(s.tc.verifier().Check(e) == pbft::EnvelopeError::kOk);
  CHECK(pbft::CheckWireMessage(e, s.tc.limits()) == pbft::WireError::kOk);
  CHECK_EQ(req.client_id(), e.sender());
  CHECK_NE(req.request_number(), 0u);
  CHECK_EQ(req.read_only(), query);
  CHECK_LE(pbft::RequestBytes(e), pbft::fuzz::FuzzParams().batch_bytes_max);
  ledger::v1::OperationBatch batch;
  if (!query && batch.ParseFromString(req.operation())) {
    CHECK_LE(static_cast<uint64_t>(batch.operations_size()),
             pbft::fuzz::FuzzParams().request_operations_max);
  }
}

void Query(const Setup& s, const pbft::v1::Request& req) {
  auto reply =
      pbft::ledger::AnswerClientQuery(*s.chain, req, kAnswerBytesMax, 0);
  if (!reply.ok()) {
    CHECK(!reply.status().message().empty());
    const absl::StatusCode c = reply.status().code();
    CHECK(c == absl::StatusCode::kInvalidArgument ||
          c == absl::StatusCode::kNotFound ||
          c == absl::StatusCode::kOutOfRange);
    return;
  }
  CHECK_EQ(reply->client_id(), req.client_id());
  CHECK_EQ(reply->request_number(), req.request_number());
  CHECK_LE(s.chain->AnswerBudgetBytes(*reply), kAnswerBytesMax);
  auto again =
      pbft::ledger::AnswerClientQuery(*s.chain, req, kAnswerBytesMax, 0);
  CHECK_OK(again.status());
  CHECK_EQ(again->SerializeAsString(), reply->SerializeAsString());
}

// Takes a share of waiting calls for the client, as Submit does.
bool TakeShare(pbft::net::CallShares* shares, std::deque<uint64_t>* waiting,
               uint64_t client) {
  using Result = pbft::net::CallShares::Result;
  const Result r = shares->Add(client);
  CHECK_LE(shares->of(client), kClientCallsMax);
  CHECK_LE(shares->total(), kCallsMax);
  if (r == Result::kClientFull) CHECK_EQ(shares->of(client), kClientCallsMax);
  if (r == Result::kFull) {
    CHECK_EQ(shares->total(), kCallsMax);
    CHECK_LT(shares->of(client), kClientCallsMax);
  }
  if (r != Result::kAdded) return false;
  waiting->push_back(client);
  return true;
}

void GiveUp(pbft::net::CallShares* shares, std::deque<uint64_t>* waiting,
            uint64_t client) {
  for (auto it = waiting->begin(); it != waiting->end(); ++it) {
    if (*it != client) continue;
    const size_t before = shares->of(client);
    shares->Remove(client);
    CHECK_EQ(shares->of(client), before - 1);
    waiting->erase(it);
    return;
  }
}

uint64_t RejectedTotal(const pbft::net::ClientService& service) {
  uint64_t total = 0;
  for (int c = 0; c <= 16; ++c) {
    total += service.rejected(static_cast<absl::StatusCode>(c));
  }
  return total;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup* const s = new Setup();
  uint8_t header;
  const std::vector<Record> records =
      pbft::fuzz::ParseRecords(data, size, pbft::fuzz::kRecordsMax, &header);
  pbft::net::CallShares shares(kCallsMax, kClientCallsMax);
  std::deque<uint64_t> waiting;
  pbft::fuzz::CoreHarness primary(&s->tc, 0);
  for (const Record& r : records) {
    if (r.kind & 4) {
      GiveUp(&shares, &waiting, r.sender);
      continue;
    }
    const bool query = r.kind & 1;
    pbft::v1::Envelope e;
    if (!CallEnvelope(*s, r, query, &e)) continue;
    pbft::v1::Request req;
    const uint64_t rejected = RejectedTotal(s->service);
    const absl::Status admitted = s->service.Admit(e, query, &req);
    if (!admitted.ok()) {
      CHECK(!admitted.message().empty());
      CHECK_EQ(RejectedTotal(s->service), rejected + 1);
      continue;
    }
    CheckAdmitted(*s, e, query, req);
    if (query) {
      Query(*s, req);
    } else if (TakeShare(&shares, &waiting, req.client_id())) {
      primary.Request(e);
      primary.Tick(1);
    }
  }
  return 0;
}
