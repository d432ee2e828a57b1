// exec-bench: ledger execution throughput, and offline verify time.
//
//   exec-bench [--blocks 1000] [--transfers-per-block 1000]
//              [--requests-per-block 10] [--accounts 10000]
//              [--verify-blocks 10000] [--verify-transfers-per-block 10]
//              [--data-dir DIR]
//
// Part 1 applies blocks of transfers (random pairs among --accounts accounts,
// spread over 8 clients) into LevelDB on disk with sync=true, one executing
// thread (plus the state-hash helper unless --parallel-state-hash=false),
// state digest on; blocks are built and signed beforehand, so the timing is
// execution + storage only. Part 2 builds a chain of --verify-blocks
// certified blocks and times VerifyDataDir over it (certificates, client and
// primary signatures, Merkle roots, re-execution, full state comparison).
// Prints progress, then one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/flags.h"
#include "common/proto_names.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/verify.h"
#include "tests/ledger/block_factory.h"
#include "tools/bench/thread_cpu.h"

ABSL_FLAG(uint32_t, blocks, 1000,
          "Timed blocks (enough for LevelDB to reach steady compaction).");
ABSL_FLAG(uint32_t, transfers_per_block, 1000, "Transfers per block.");
ABSL_FLAG(uint32_t, requests_per_block, 10, "Requests per block.");
ABSL_FLAG(uint32_t, accounts, 10000, "Accounts transfers move between.");
ABSL_FLAG(uint32_t, verify_blocks, 10000, "Blocks in the verify chain.");
ABSL_FLAG(uint32_t, verify_transfers_per_block, 10,
          "Transfers per block in the verify chain (one request).");
ABSL_FLAG(std::string, data_dir, "", "Scratch directory (default: /tmp).");
ABSL_FLAG(bool, parallel_state_hash, true,
          "Expand state-hash elements on a helper thread as well "
          "(LedgerOptions::parallel_state_hash).");
ABSL_FLAG(uint32_t, write_buffer_mb, 0,
          "LevelDB write buffer (memtable) size; 0: the ledger's default.");

namespace pbft::bench {
namespace {

using Clock = std::chrono::steady_clock;
using test::BlockFactory;
using test::Id;

constexpr uint64_t kClients = 8;
constexpr uint64_t kAccountIdBase = 1'000'000;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Account a (0-based) belongs to client 1 + a % kClients.
uint64_t Owner(uint32_t a) { return 1 + a % kClients; }

// Setup blocks: every client creates its accounts; the issuer funds them.
std::vector<ledger::BlockInput> SetupBlocks(BlockFactory* f,
                                            uint32_t accounts) {
  std::vector<ledger::BlockInput> blocks;
  for (uint32_t start = 0; start < accounts; start += 1000) {
    const uint32_t end = std::min(accounts, start + 1000);
    std::map<uint64_t, std::vector<ledger::v1::Operation>> creates;
    std::vector<ledger::v1::Operation> mints;
    for (uint32_t a = start; a < end; ++a) {
      creates[Owner(a)].push_back(
          test::CreateAccountOp(Id(kAccountIdBase + a)));
      mints.push_back(
          test::MintOp(Id(a + 1, 1), Id(kAccountIdBase + a), 1'000'000'000));
    }
    std::vector<pbft::v1::Envelope> requests;
    for (auto& [client, ops] : creates) {
      requests.push_back(f->Request(client, test::Ops(std::move(ops))));
    }
    blocks.push_back(f->NextBlock(std::move(requests)));
    blocks.push_back(
        f->NextBlock({f->Request(1, test::Ops(std::move(mints)))}));
  }
  return blocks;
}

std::vector<ledger::BlockInput> TransferBlocks(
    BlockFactory* f, std::mt19937_64* rng, uint32_t blocks, uint32_t transfers,
    uint32_t requests, uint32_t accounts, uint64_t* next_id) {
  std::vector<ledger::BlockInput> out;
  const uint32_t per_request = std::max(1u, transfers / requests);
  for (uint32_t b = 0; b < blocks; ++b) {
    std::vector<pbft::v1::Envelope> envs;
    for (uint32_t r = 0; r < requests; ++r) {
      const uint64_t client = 1 + (b * requests + r) % kClients;
      std::vector<ledger::v1::Operation> ops;
      for (uint32_t i = 0; i < per_request; ++i) {
        // A debit account owned by `client`, any other credit account.
        uint32_t debit = static_cast<uint32_t>((*rng)() % accounts);
        debit = debit - debit % kClients + static_cast<uint32_t>(client - 1);
        if (debit >= accounts) debit = static_cast<uint32_t>(client - 1);
        uint32_t credit = static_cast<uint32_t>((*rng)() % accounts);
        if (credit == debit) credit = (credit + 1) % accounts;
        ops.push_back(test::TransferOp(
            Id((*next_id)++, 2), Id(kAccountIdBase + debit),
            Id(kAccountIdBase + credit), 1 + (*rng)() % 100, 1, "bench"));
      }
      envs.push_back(f->Request(client, test::Ops(std::move(ops))));
    }
    out.push_back(f->NextBlock(std::move(envs)));
  }
  return out;
}

struct ExecFigures {
  uint64_t transfers = 0;
  double tps = 0, cpu_tps = 0, process_cpu_tps = 0;
  size_t helper_expansions = 0;
  double block_p50_ms = 0, block_p99_ms = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Part 1: execution throughput of `blocks` transfer blocks, synced, after
// the accounts are created.
ExecFigures MeasureExecution(BlockFactory* factory, std::mt19937_64* rng,
                             uint64_t* next_id, uint32_t accounts,
                             const std::string& dir) {
  const uint32_t blocks = absl::GetFlag(FLAGS_blocks);
  const uint32_t transfers = absl::GetFlag(FLAGS_transfers_per_block);
  const uint32_t requests = absl::GetFlag(FLAGS_requests_per_block);
  std::printf(
      "exec-bench: building %u accounts and %u blocks of %u transfers "
      "(%u requests each)\n",
      accounts, blocks, transfers, requests);
  std::vector<ledger::BlockInput> setup = SetupBlocks(factory, accounts);
  std::vector<ledger::BlockInput> timed = TransferBlocks(
      factory, rng, blocks, transfers, requests, accounts, next_id);
  ledger::LedgerOptions lo;
  lo.sync = true;
  lo.parallel_state_hash = absl::GetFlag(FLAGS_parallel_state_hash);
  if (absl::GetFlag(FLAGS_write_buffer_mb) > 0) {
    lo.write_buffer_bytes = absl::GetFlag(FLAGS_write_buffer_mb) << 20;
  }
  absl::StatusOr<std::unique_ptr<ledger::Ledger>> ledger =
      ledger::Ledger::Open(factory->cluster(), dir, lo);
  CHECK_OK(ledger.status());
  for (const ledger::BlockInput& b : setup)
    CHECK_OK((*ledger)->ApplyBlock(b).status());
  std::vector<double> block_ms;
  uint64_t ok_transfers = 0;
  const Clock::time_point start = Clock::now();
  // CPU of this thread, and of the whole process (the ledger's helper
  // thread and LevelDB's background compaction too).
  const double cpu_start = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  const double process_cpu_start = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  const size_t helper_start = (*ledger)->TEST_helper_expansions();
  for (const ledger::BlockInput& b : timed) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<ledger::BlockResult> r = (*ledger)->ApplyBlock(b);
    CHECK_OK(r.status());
    block_ms.push_back(Seconds(Clock::now() - t0) * 1000);
    for (const ledger::RequestOutcome& o : r->outcomes) {
      ledger::v1::OperationResults res;
      CHECK(res.ParseFromString(o.result));
      for (const ledger::v1::OperationResult& x : res.results()) {
        ok_transfers += x.code() == ledger::v1::RESULT_CODE_OK;
      }
    }
  }
  ExecFigures e;
  const double exec_s = Seconds(Clock::now() - start);
  e.transfers = static_cast<uint64_t>(blocks) * requests *
                std::max(1u, transfers / requests);
  e.tps = e.transfers / exec_s;
  e.cpu_tps = e.transfers / (CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start);
  e.process_cpu_tps =
      e.transfers / (CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - process_cpu_start);
  e.helper_expansions = (*ledger)->TEST_helper_expansions() - helper_start;
  e.block_p50_ms = Percentile(block_ms, 0.5);
  e.block_p99_ms = Percentile(block_ms, 0.99);
  std::printf(
      "  %llu transfers (%llu ok) in %.3f s: %.0f transfers/s (%.0f per "
      "CPU-second of the executing thread, %.0f per CPU-second of the "
      "process), block p50 %.2f ms p99 %.2f ms; %zu state-hash expansions "
      "on the helper thread\n",
      static_cast<unsigned long long>(e.transfers),
      static_cast<unsigned long long>(ok_transfers), exec_s, e.tps, e.cpu_tps,
      e.process_cpu_tps, e.block_p50_ms, e.block_p99_ms, e.helper_expansions);
  return e;
}

// Part 2: `ledgerctl verify` of a chain of verify_blocks blocks.
ledger::ChainVerifyReport MeasureVerify(const test::FactoryOptions& fo,
                                        std::mt19937_64* rng, uint64_t* next_id,
                                        uint32_t accounts,
                                        const std::string& dir,
                                        double* verify_s) {
  const uint32_t vblocks = absl::GetFlag(FLAGS_verify_blocks);
  const uint32_t vtransfers = absl::GetFlag(FLAGS_verify_transfers_per_block);
  std::printf(
      "exec-bench: building a %u-block chain (%u transfers per "
      "block)\n",
      vblocks, vtransfers);
  BlockFactory vfactory(fo);
  ledger::LedgerOptions vo;
  vo.sync = false;  // Building the chain is not what is measured.
  absl::StatusOr<std::unique_ptr<ledger::Ledger>> chain =
      ledger::Ledger::Open(vfactory.cluster(), dir, vo);
  CHECK_OK(chain.status());
  const uint32_t vaccounts = std::min<uint32_t>(accounts, 1000);
  for (const ledger::BlockInput& b : SetupBlocks(&vfactory, vaccounts)) {
    CHECK_OK((*chain)->ApplyBlock(b).status());
  }
  while (vfactory.last_seq() < vblocks) {
    for (const ledger::BlockInput& b :
         TransferBlocks(&vfactory, rng,
                        std::min<uint32_t>(100, vblocks - vfactory.last_seq()),
                        vtransfers, 1, vaccounts, next_id)) {
      CHECK_OK((*chain)->ApplyBlock(b).status());
    }
  }
  chain->reset();
  const Clock::time_point v0 = Clock::now();
  ledger::ChainVerifyReport report = ledger::VerifyDataDir(dir, nullptr, {});
  *verify_s = Seconds(Clock::now() - v0);
  std::printf("  verify: %s, %llu blocks in %.3f s (%.0f blocks/s)\n",
              report.ok ? "ok" : report.error.c_str(),
              static_cast<unsigned long long>(report.blocks_verified),
              *verify_s, report.blocks_verified / *verify_s);
  return report;
}

int Run() {
  const uint32_t accounts =
      std::max<uint32_t>(absl::GetFlag(FLAGS_accounts), 2 * kClients);
  std::string base = absl::GetFlag(FLAGS_data_dir);
  if (base.empty()) {
    base = (std::filesystem::temp_directory_path() /
            absl::StrCat("exec-bench-", ::getpid()))
               .string();
  }
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);

  test::FactoryOptions fo;
  fo.clients = kClients;
  BlockFactory factory(fo);
  std::mt19937_64 rng(42);
  uint64_t next_id = 1;
  const ExecFigures e =
      MeasureExecution(&factory, &rng, &next_id, accounts, base + "/exec");
  double verify_s = 0;
  const ledger::ChainVerifyReport report =
      MeasureVerify(fo, &rng, &next_id, accounts, base + "/chain", &verify_s);
  std::filesystem::remove_all(base);

  std::printf(
      "{\"transfers_per_s\":%.0f,\"transfers_per_cpu_s\":%.0f,"
      "\"transfers_per_process_cpu_s\":%.0f,\"helper_expansions\":%zu,"
      "\"transfers\":%llu,\"blocks\":%u,"
      "\"transfers_per_block\":%u,\"requests_per_block\":%u,\"accounts\":%u,"
      "\"sync\":true,\"block_p50_ms\":%.3f,\"block_p99_ms\":%.3f,"
      "\"verify_blocks\":%llu,\"verify_transfers_per_block\":%u,"
      "\"verify_s\":%.3f,\"verify_ok\":%s}\n",
      e.tps, e.cpu_tps, e.process_cpu_tps, e.helper_expansions,
      static_cast<unsigned long long>(e.transfers), absl::GetFlag(FLAGS_blocks),
      absl::GetFlag(FLAGS_transfers_per_block),
      absl::GetFlag(FLAGS_requests_per_block), accounts, e.block_p50_ms,
      e.block_p99_ms, static_cast<unsigned long long>(report.blocks_verified),
      absl::GetFlag(FLAGS_verify_transfers_per_block), verify_s,
      report.ok ? "true" : "false");
  return report.ok ? 0 : 1;
}

}  // namespace
}  // namespace pbft::bench

int main(int argc, char** argv) {
  pbft::ParseFlags(argc, argv, "exec-bench [flags]");
  return pbft::bench::Run();
}
