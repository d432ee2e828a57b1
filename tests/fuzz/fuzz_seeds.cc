// Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/seed-*) from
// real files and messages: a cluster made by `ledgerctl cluster init`'s
// code, its key files, and signed envelopes of every type peers exchange in
// the normal case, built with that cluster's keys; receipts; and, with the
// fixed keys of tests/ledger/block_factory.h's cluster, the record inputs of
// the structure-aware targets (fuzz_harness.h): what each replica of an
// in-process 4-replica cluster received in the normal case, a view change
// and a state transfer (peer_fuzz, fetch_fuzz), client calls (client_fuzz)
// and operation batches over three blocks (ledger_fuzz). The config, key
// and wire seeds use fresh keys each run; the others are deterministic.
//
//   build-fuzz/fuzz/fuzz-seeds tests/fuzz/corpus
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cluster_init.h"
#include "common/check.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/keyfile.h"
#include "ledger/v1/service.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/ledger.h"
#include "tests/fuzz/fuzz_harness.h"
#include "tests/ledger/block_factory.h"

namespace fs = std::filesystem;

namespace {

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  CHECK(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteSeed(const fs::path& dir, const std::string& name,
               const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
  out << bytes;
  CHECK(out.good());
}

// `ledgerctl cluster init` into `tmp`, with n replicas and one client.
void WriteConfigSeeds(const fs::path& corpus, const fs::path& tmp) {
  for (uint32_t n : {4u, 7u}) {
    pbft::client::ClusterInitOptions options;
    options.replicas = n;
    options.clients = 2;
    options.cluster_id = "fuzz-seed";
    options.out_dir = (tmp / absl::StrCat("cluster", n)).string();
    CHECK(pbft::client::InitCluster(options).ok());
    const fs::path dir(options.out_dir);
    WriteSeed(corpus / "config_fuzz", absl::StrCat("cluster", n, ".json"),
              ReadAll(dir / "cluster.json"));
    WriteSeed(corpus / "keyfile_fuzz", absl::StrCat("replica", n, ".key"),
              ReadAll(dir / "keys" / "replica-0.key"));
  }
}

std::string Serialize(const pbft::v1::Envelope& e) {
  std::string bytes;
  CHECK(e.SerializeToString(&bytes));
  return bytes;
}

// Signed REQUEST, PRE-PREPARE, PREPARE, COMMIT, CHECKPOINT, FETCH_REQUEST.
void WriteWireSeeds(const fs::path& corpus) {
  const fs::path dir = corpus / "wire_fuzz";
  std::vector<pbft::EnvelopeSigner> replicas;
  for (uint64_t i = 0; i < 4; ++i) {
    replicas.emplace_back("fuzz-seed", i, pbft::crypto::SecretKey::Generate());
  }
  pbft::EnvelopeSigner client("fuzz-seed", 1,
                              pbft::crypto::SecretKey::Generate());
  pbft::v1::Request request;
  request.set_client_id(1);
  request.set_request_number(7);
  request.set_operation("operation bytes");
  const auto request_env =
      client.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, request);
  WriteSeed(dir, "request", Serialize(request_env));

  pbft::v1::PrePrepare pre_prepare;
  pre_prepare.set_view(0);
  pre_prepare.set_seq(1);
  pre_prepare.set_timestamp_ms(1'700'000'000'000);
  google::protobuf::RepeatedPtrField<pbft::v1::Envelope> batch;
  *batch.Add() = request_env;
  const pbft::Digest digest = pbft::BatchDigest(batch);
  pre_prepare.set_batch_digest(digest.ToBytes());
  pbft::v1::Envelope pre_prepare_env =
      replicas[0].SignMessage(pbft::v1::MESSAGE_TYPE_PRE_PREPARE, pre_prepare);
  *pre_prepare_env.mutable_batch() = batch;
  WriteSeed(dir, "pre_prepare", Serialize(pre_prepare_env));

  pbft::v1::Prepare prepare;
  prepare.set_seq(1);
  prepare.set_batch_digest(digest.ToBytes());
  prepare.set_replica_id(1);
  WriteSeed(dir, "prepare",
            Serialize(replicas[1].SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE,
                                              prepare)));
  pbft::v1::Commit commit;
  commit.set_seq(1);
  commit.set_batch_digest(digest.ToBytes());
  commit.set_replica_id(2);
  WriteSeed(dir, "commit",
            Serialize(replicas[2].SignMessage(pbft::v1::MESSAGE_TYPE_COMMIT,
                                              commit)));
  pbft::v1::Checkpoint checkpoint;
  checkpoint.set_seq(128);
  checkpoint.set_state_digest(pbft::crypto::Sha256("state").ToBytes());
  checkpoint.set_replica_id(3);
  WriteSeed(dir, "checkpoint",
            Serialize(replicas[3].SignMessage(pbft::v1::MESSAGE_TYPE_CHECKPOINT,
                                              checkpoint)));
  pbft::v1::FetchRequest fetch;
  fetch.set_replica_id(1);
  fetch.set_from_seq(1);
  fetch.set_max_blocks(64);
  WriteSeed(dir, "fetch_request",
            Serialize(replicas[1].SignMessage(
                pbft::v1::MESSAGE_TYPE_FETCH_REQUEST, fetch)));
}

// Receipts that `Ledger::BuildReceipt` makes for a 3-block chain executed
// with tests/ledger/block_factory.h's deterministic cluster (receipt_fuzz
// verifies against the same cluster): transfers and a mint, the last block
// committed in view 1.
void WriteReceiptSeeds(const fs::path& corpus, const fs::path& tmp) {
  using pbft::test::Id;
  pbft::test::BlockFactory factory;
  auto opened =
      pbft::ledger::Ledger::Open(factory.cluster(), (tmp / "chain").string(),
                                 pbft::ledger::LedgerOptions{});
  CHECK_OK(opened.status());
  std::unique_ptr<pbft::ledger::Ledger> chain = std::move(*opened);
  uint64_t id = 1;
  for (uint64_t b = 1; b <= 3; ++b) {
    std::vector<pbft::v1::Envelope> requests;
    for (uint64_t c = 1; c <= 2; ++c) {
      std::vector<ledger::v1::Operation> ops = {
          pbft::test::TransferOp(Id(id++), Id(c), Id(3 - c), 10 + b)};
      if (c == 1) ops.push_back(pbft::test::MintOp(Id(id++), Id(2), 7));
      requests.push_back(factory.Request(c, pbft::test::Ops(ops)));
    }
    CHECK_OK(chain->ApplyBlock(factory.MakeBlock(b, requests, b == 3 ? 1 : 0))
                 .status());
  }
  for (uint64_t transfer : {1, 2, 5, 7}) {
    auto receipt = chain->BuildReceipt(Id(transfer));
    CHECK_OK(receipt.status());
    WriteSeed(corpus / "receipt_fuzz", absl::StrCat("transfer", transfer),
              receipt->SerializeAsString());
  }
}

// A 4-replica cluster of pbft::Cores in one process (fuzz_harness.h's
// CoreHarness, the fuzz cluster's keys), recording for each replica every
// input it gets as a peer_fuzz/fetch_fuzz record; a replica that is "down"
// gets nothing. FETCH_REQUESTs are answered as the shell's FetchServer
// does, from the batches the peer executed and its stable checkpoint.
class Sim {
 public:
  Sim() {
    for (uint32_t i = 0; i < pbft::fuzz::kReplicas; ++i) {
      cores_.push_back(std::make_unique<pbft::fuzz::CoreHarness>(&tc_, i));
      cores_.back()->set_keep(true);
      inputs_.emplace_back(1, static_cast<char>(i));  // Header: the id.
    }
  }

  void SetDown(uint32_t i, bool down) { down_[i] = down; }

  void Request(uint64_t client, uint64_t number,
               const ledger::v1::OperationBatch& ops) {
    pbft::v1::Request r;
    r.set_client_id(client);
    r.set_request_number(number);
    r.set_operation(ops.SerializeAsString());
    const auto e =
        tc_.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, client, r.SerializeAsString());
    for (uint32_t i = 0; i < pbft::fuzz::kReplicas; ++i) Deliver(i, e);
    Route();
  }

  void Tick(uint32_t ticks) {
    for (uint32_t t = 0; t < ticks; ++t) {
      for (uint32_t i = 0; i < pbft::fuzz::kReplicas; ++i) {
        if (down_[i]) continue;
        pbft::fuzz::AppendRecord(&inputs_[i], 0, 1, "");
        cores_[i]->Tick(1);
      }
      Route();
    }
  }

  pbft::fuzz::CoreHarness& core(uint32_t i) { return *cores_[i]; }
  const std::string& input(uint32_t i) const { return inputs_[i]; }

 private:
  void Deliver(uint32_t to, const pbft::v1::Envelope& e) {
    if (down_[to]) return;
    // A PRE-PREPARE's batch travels beside its signed header
    // (Envelope.batch), so it is recorded whole (kind bit 0x20); everything
    // else as its payload. The fuzz target signs both again.
    if (e.batch_size() > 0) {
      pbft::fuzz::AppendRecord(
          &inputs_[to], 0x20 | static_cast<uint8_t>(e.type()),
          static_cast<uint8_t>(e.sender()), e.SerializeAsString());
    } else {
      pbft::fuzz::AppendRecord(&inputs_[to], static_cast<uint8_t>(e.type()),
                               static_cast<uint8_t>(e.sender()), e.payload());
    }
    CHECK(cores_[to]->Deliver(e));
    if (e.type() == pbft::v1::MESSAGE_TYPE_FETCH_REQUEST) Serve(to, e);
  }

  void Serve(uint32_t self, const pbft::v1::Envelope& e) {
    pbft::v1::FetchRequest req;
    CHECK(req.ParseFromString(e.payload()));
    pbft::v1::FetchResponse resp;
    resp.set_replica_id(self);
    const auto& stable = cores_[self]->core().stable_checkpoint();
    if (stable.seq() > 0) *resp.mutable_stable_checkpoint() = stable;
    const uint64_t from = std::max<uint64_t>(req.from_seq(), 1);
    for (const pbft::core::CommittedBatch& b : cores_[self]->batches()) {
      const uint64_t s = b.seq.value();
      if (s < from || s - from >= std::max<uint32_t>(req.max_blocks(), 1))
        continue;
      pbft::v1::CertifiedBatch* cb = resp.add_batches();
      *cb->mutable_pre_prepare() = b.pre_prepare;
      *cb->mutable_certificate() = b.certificate;
    }
    pending_.push_back({static_cast<uint32_t>(e.sender()),
                        tc_.Sign(pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE, self,
                                 resp.SerializeAsString())});
  }

  // Delivers what the cores sent until nothing is left.
  void Route() {
    for (bool more = true; more;) {
      more = false;
      for (uint32_t i = 0; i < pbft::fuzz::kReplicas; ++i) {
        std::vector<pbft::core::Outbound> out = std::move(cores_[i]->sent());
        cores_[i]->sent().clear();
        if (down_[i]) continue;
        for (const pbft::core::Outbound& m : out) {
          more = true;
          for (uint32_t j = 0; j < pbft::fuzz::kReplicas; ++j) {
            if (j != i && (m.broadcast || m.to.value() == j))
              Deliver(j, m.envelope);
          }
        }
      }
      std::vector<std::pair<uint32_t, pbft::v1::Envelope>> pending;
      pending.swap(pending_);
      for (const auto& [to, e] : pending) {
        more = true;
        Deliver(to, e);
      }
    }
  }

  pbft::fuzz::TestCluster tc_;
  std::vector<std::unique_ptr<pbft::fuzz::CoreHarness>> cores_;
  std::vector<std::string> inputs_;
  bool down_[pbft::fuzz::kReplicas] = {};
  std::vector<std::pair<uint32_t, pbft::v1::Envelope>> pending_;
};

ledger::v1::OperationBatch Transfer(uint64_t id, uint64_t from, uint64_t to) {
  using pbft::test::Id;
  return pbft::test::Ops({pbft::test::TransferOp(Id(id), Id(from), Id(to), 5)});
}

// A recorded input as a seed: runs of ticks merged (up to 64 a record),
// with `fetch_only`, only what fetch_fuzz reads (ticks, CHECKPOINTs,
// FETCH_RESPONSEs). Checked: it fits kRecordsMax and, replayed on a fresh
// core as peer_fuzz does, executes `executed` batches.
std::string Seed(const std::string& input, bool fetch_only, uint64_t executed) {
  uint8_t header;
  const auto records =
      pbft::fuzz::ParseRecords(reinterpret_cast<const uint8_t*>(input.data()),
                               input.size(), SIZE_MAX, &header);
  std::vector<pbft::fuzz::Record> kept;
  for (const pbft::fuzz::Record& r : records) {
    if (fetch_only && r.kind != 0 &&
        r.kind != pbft::v1::MESSAGE_TYPE_CHECKPOINT &&
        r.kind != pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE) {
      continue;
    }
    if (r.kind == 0 && !kept.empty() && kept.back().kind == 0 &&
        kept.back().sender < 64) {
      ++kept.back().sender;
      continue;
    }
    kept.push_back(r);
  }
  CHECK_LE(kept.size(), pbft::fuzz::kRecordsMax);
  std::string out(1, static_cast<char>(header));
  pbft::fuzz::TestCluster tc;
  pbft::fuzz::CoreHarness replay(&tc, header % pbft::fuzz::kReplicas);
  for (const pbft::fuzz::Record& r : kept) {
    pbft::fuzz::AppendRecord(&out, r.kind, r.sender, r.body);
    replay.Apply(r);
  }
  CHECK_EQ(replay.executed(), executed);
  return out;
}

// The normal case past a stable checkpoint; a view change with replica 0
// (the primary of view 0) down; and replica 3 catching up by state
// transfer after missing ten batches.
void WriteCoreSeeds(const fs::path& corpus) {
  {
    Sim sim;
    for (uint64_t n = 1; n <= 6; ++n) {
      sim.Request(n % 3 + 1, n, Transfer(n, n % 3 + 1, 1));
      sim.Tick(3);
    }
    CHECK_GE(sim.core(1).executed(), 5u);
    WriteSeed(corpus / "peer_fuzz", "normal_backup",
              Seed(sim.input(1), false, sim.core(1).executed()));
    WriteSeed(corpus / "peer_fuzz", "normal_primary",
              Seed(sim.input(0), false, sim.core(0).executed()));
  }
  {
    Sim sim;
    sim.SetDown(0, true);
    sim.Request(1, 1, Transfer(1, 1, 2));
    sim.Tick(60);
    sim.Request(2, 1, Transfer(2, 2, 3));
    sim.Tick(5);
    CHECK_GE(sim.core(2).core().view().value(), 1u);
    CHECK_GE(sim.core(2).executed(), 1u);
    WriteSeed(corpus / "peer_fuzz", "view_change_backup",
              Seed(sim.input(2), false, sim.core(2).executed()));
    WriteSeed(corpus / "peer_fuzz", "view_change_primary",
              Seed(sim.input(1), false, sim.core(1).executed()));
  }
  {
    Sim sim;
    sim.SetDown(3, true);
    for (uint64_t n = 1; n <= 10; ++n) {
      sim.Request(1, n, Transfer(n, 1, 2));
      sim.Tick(2);
    }
    sim.SetDown(3, false);
    sim.Tick(60);
    CHECK_GE(sim.core(3).executed(), 10u);
    WriteSeed(corpus / "peer_fuzz", "state_transfer",
              Seed(sim.input(3), false, sim.core(3).executed()));
    WriteSeed(corpus / "fetch_fuzz", "state_transfer",
              Seed(sim.input(3), true, sim.core(3).executed()));
  }
}

// client_fuzz records: Submits and Queries signed by the harness, the same
// as gRPC messages, and a give-up; one client over its share of calls.
void WriteClientSeeds(const fs::path& corpus) {
  const fs::path dir = corpus / "client_fuzz";
  auto request = [](uint64_t client, uint64_t number, bool read_only,
                    const std::string& operation) {
    pbft::v1::Request r;
    r.set_client_id(client);
    r.set_request_number(number);
    r.set_read_only(read_only);
    r.set_operation(operation);
    return r.SerializeAsString();
  };
  ledger::v1::Query account;
  *account.mutable_get_account()->mutable_id() = pbft::test::Id(2);
  ledger::v1::Query block;
  block.mutable_get_block()->set_height(2);
  std::string submits(1, '\0');
  for (uint64_t n = 1; n <= 4; ++n) {
    pbft::fuzz::AppendRecord(
        &submits, 0, 1,
        request(1, n, false, Transfer(n, 1, 2).SerializeAsString()));
  }
  pbft::fuzz::AppendRecord(&submits, 4, 1, "");
  pbft::fuzz::AppendRecord(
      &submits, 0, 2,
      request(2, 1, false, Transfer(9, 2, 1).SerializeAsString()));
  WriteSeed(dir, "submits", submits);
  std::string queries(1, '\0');
  pbft::fuzz::AppendRecord(&queries, 1, 2,
                           request(2, 1, true, account.SerializeAsString()));
  pbft::fuzz::AppendRecord(&queries, 1, 3,
                           request(3, 1, true, block.SerializeAsString()));
  WriteSeed(dir, "queries", queries);
  pbft::test::BlockFactory factory;
  ledger::v1::SubmitRequest submit;
  *submit.mutable_request() = factory.SignRequest(3, 5, Transfer(5, 3, 1));
  ledger::v1::QueryRequest query;
  pbft::v1::Request q;
  q.set_client_id(1);
  q.set_request_number(2);
  q.set_read_only(true);
  q.set_operation(block.SerializeAsString());
  *query.mutable_query() =
      factory.client(1).SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, q);
  std::string grpc(1, '\0');
  pbft::fuzz::AppendRecord(&grpc, 2, 0, submit.SerializeAsString());
  pbft::fuzz::AppendRecord(&grpc, 3, 0, query.SerializeAsString());
  WriteSeed(dir, "grpc_messages", grpc);
}

// ledger_fuzz records: accounts, transfers, mints, an ordered query, a
// malformed batch and a duplicate, over three blocks.
void WriteLedgerSeeds(const fs::path& corpus) {
  using pbft::test::Id;
  namespace t = pbft::test;
  ledger::v1::Operation query;
  query.mutable_query()->mutable_get_account()->mutable_id()->set_low(2);
  const std::vector<std::pair<uint8_t, ledger::v1::OperationBatch>> requests = {
      {0,
       t::Ops({t::CreateAccountOp(Id(100), 2), t::MintOp(Id(1), Id(100), 50, 2),
               t::TransferOp(Id(2), Id(1), Id(2), 30)})},
      {1, t::Ops({t::TransferOp(Id(3), Id(2), Id(3), 10), query})},
      {2, t::Ops({t::CreateAccountOp(Id(101), 2),
                  t::TransferOp(Id(4), Id(100), Id(101), 20, 2)})},
      {0, t::Ops({t::TransferOp(Id(2), Id(1), Id(2), 30),
                  t::TransferOp(Id(5), Id(1), Id(3), 2'000'000)})},
  };
  std::string input(1, '\0');
  for (size_t i = 0; i < requests.size(); ++i) {
    // Client sender % 3 + 1; the block ends after every second request.
    pbft::fuzz::AppendRecord(&input, i % 2, requests[i].first,
                             requests[i].second.SerializeAsString());
  }
  pbft::fuzz::AppendRecord(&input, 1, 0, "\xff\xff not a batch");
  // Client 1's request number 1 again (kind 0x02 | 1 << 2), then a block end.
  pbft::fuzz::AppendRecord(&input, 0x07, 0,
                           requests[0].second.SerializeAsString());
  WriteSeed(corpus / "ledger_fuzz", "blocks", input);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz-seeds CORPUS_DIR\n");
    return 2;
  }
  const fs::path corpus(argv[1]);
  const fs::path tmp =
      fs::temp_directory_path() / absl::StrCat("fuzz-seeds.", ::getpid());
  WriteConfigSeeds(corpus, tmp);
  WriteWireSeeds(corpus);
  WriteReceiptSeeds(corpus, tmp);
  WriteCoreSeeds(corpus);
  WriteClientSeeds(corpus);
  WriteLedgerSeeds(corpus);
  fs::remove_all(tmp);
  return 0;
}
