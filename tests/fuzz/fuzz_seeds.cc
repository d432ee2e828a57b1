// Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/seed-*) from
// real files and messages: a cluster made by `ledgerctl cluster init`'s
// code, its key files, and signed envelopes of every type peers exchange in
// the normal case, built with that cluster's keys. Deterministic for a given
// cluster id, except for the keys (fresh each run).
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
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/ledger.h"
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
    ledger::ClusterInitOptions options;
    options.replicas = n;
    options.clients = 2;
    options.cluster_id = "fuzz-seed";
    options.out_dir = (tmp / absl::StrCat("cluster", n)).string();
    CHECK(ledger::InitCluster(options).ok());
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
  std::vector<ledger::EnvelopeSigner> replicas;
  for (uint64_t i = 0; i < 4; ++i) {
    replicas.emplace_back("fuzz-seed", i,
                          ledger::crypto::SecretKey::Generate());
  }
  ledger::EnvelopeSigner client("fuzz-seed", 1,
                                ledger::crypto::SecretKey::Generate());
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
  *pre_prepare.add_requests() = request_env;
  const ledger::Digest digest = ledger::BatchDigest(pre_prepare.requests());
  pre_prepare.set_batch_digest(digest.ToBytes());
  WriteSeed(dir, "pre_prepare",
            Serialize(replicas[0].SignMessage(
                pbft::v1::MESSAGE_TYPE_PRE_PREPARE, pre_prepare)));

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
  checkpoint.set_state_digest(ledger::crypto::Sha256("state").ToBytes());
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
  using ledger::testing::Id;
  ledger::testing::BlockFactory factory;
  auto opened = ledger::Ledger::Open(
      factory.cluster(), (tmp / "chain").string(), ledger::LedgerOptions{});
  CHECK_OK(opened.status());
  std::unique_ptr<ledger::Ledger> chain = std::move(*opened);
  uint64_t id = 1;
  for (uint64_t b = 1; b <= 3; ++b) {
    std::vector<pbft::v1::Envelope> requests;
    for (uint64_t c = 1; c <= 2; ++c) {
      std::vector<ledger::v1::Operation> ops = {
          ledger::testing::TransferOp(Id(id++), Id(c), Id(3 - c), 10 + b)};
      if (c == 1) ops.push_back(ledger::testing::MintOp(Id(id++), Id(2), 7));
      requests.push_back(factory.Request(c, ledger::testing::Ops(ops)));
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
  fs::remove_all(tmp);
  return 0;
}
