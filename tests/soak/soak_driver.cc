// soak-driver: the load and the closing ledger checks of the crash soak
// (tests/soak/crash_soak.sh).
//
//   soak-driver load  --config F --writers W --duration S --out DIR
//   soak-driver check --config F --writers W --out DIR [--sample N]
//
// load: W writers (clients 1..W, each its own pbft::client::Client) each submit
// requests of 1..20 transfers between the writers' genesis accounts for S
// seconds. A request whose outcome is unknown (deadline, cluster busy with
// a view change) is submitted again with the same transfer ids until it is
// acknowledged (transfer ids make this idempotent), so at the end every
// transfer the driver created has an acknowledged outcome. Each writer
// appends one line per acknowledged transfer to DIR/acked-<w>.txt:
// "ID_HIGH ID_LOW FROM TO AMOUNT RESULT". Last line: JSON with requests,
// transfers, retries and the longest gap without a completed request.
//
// check: from those files, the expected balance of every writer account
// (genesis + credits - debits of the acknowledged OK transfers) must equal
// the cluster's (a lost transfer or one applied twice changes it); the sum
// equals the genesis total (no mints); a random sample of acknowledged
// transfers, plus every one that needed a retry, is found by GetTransfer
// with the acknowledged result. Exit 0 only if all hold; last line JSON.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/check.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "common/proto_names.h"

ABSL_FLAG(std::string, config, "", "Cluster config (cluster.json).");
ABSL_FLAG(uint32_t, writers, 4, "Writers (clients 1..W).");
ABSL_FLAG(double, duration, 60, "Seconds of load.");
ABSL_FLAG(std::string, out, "", "Directory of the acknowledged-transfer logs.");
ABSL_FLAG(uint32_t, sample, 2000, "check: transfers looked up by id.");
ABSL_FLAG(double, deadline, 10, "Per-request deadline in seconds.");
ABSL_FLAG(double, give_up, 180,
          "load: seconds after the end to keep retrying unknown outcomes.");

namespace pbft::test {
namespace {

constexpr uint32_t kBatchTransfersMax = 20;
constexpr uint64_t kAmountMax = 5;
constexpr int kLookupFailuresMax = 20;

struct Acked {
  uint64_t high = 0, low = 0, from = 0, to = 0, amount = 0;
  int result = 0;
  bool retried = false;
};

struct LoadStats {
  std::mutex mu;
  uint64_t requests = 0, transfers = 0, retries = 0, unresolved = 0;
  absl::Time last_done;
  double max_gap_ms = 0;
  void Done(uint64_t n) {
    std::lock_guard<std::mutex> l(mu);
    const absl::Time now = absl::Now();
    max_gap_ms =
        std::max(max_gap_ms, absl::ToDoubleMilliseconds(now - last_done));
    last_done = now;
    ++requests;
    transfers += n;
  }
};

absl::StatusOr<std::unique_ptr<client::Client>> MakeClient(uint32_t id) {
  const std::string config = absl::GetFlag(FLAGS_config);
  client::ClientOptions o;
  o.config_path = config;
  o.key_path = (std::filesystem::path(config).parent_path() / "keys" /
                absl::StrCat("client-", id, ".key"))
                   .string();
  o.default_deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline));
  return client::Client::Create(o);
}

std::vector<ledger::v1::Transfer> NextBatch(uint64_t me, uint32_t writers,
                                            uint64_t* counter,
                                            std::mt19937_64* rng) {
  const uint32_t n = 1 + (*rng)() % kBatchTransfersMax;
  std::vector<ledger::v1::Transfer> ts(n);
  for (ledger::v1::Transfer& t : ts) {
    uint64_t to = 1 + (*rng)() % (writers - 1);
    if (to >= me) ++to;  // Any other writer's account.
    *t.mutable_id() = client::MakeId(me, ++*counter);
    *t.mutable_debit_account_id() = client::MakeId(0, me);
    *t.mutable_credit_account_id() = client::MakeId(0, to);
    t.set_amount(1 + (*rng)() % kAmountMax);
    t.set_ledger(1);
  }
  return ts;
}

// Submits `ts` until acknowledged or `give_up`; appends the outcome.
bool SubmitUntilAcked(client::Client& c,
                      const std::vector<ledger::v1::Transfer>& ts,
                      absl::Time give_up, LoadStats* stats,
                      std::ofstream* log) {
  bool retried = false;
  while (true) {
    absl::StatusOr<ledger::v1::OperationResults> r = c.Transfers(ts);
    if (r.ok()) {
      CHECK_EQ(static_cast<size_t>(r->results_size()), ts.size());
      stats->Done(ts.size());
      for (size_t i = 0; i < ts.size(); ++i) {
        const ledger::v1::Transfer& t = ts[i];
        *log << t.id().high() << ' ' << t.id().low() << ' '
             << t.debit_account_id().low() << ' ' << t.credit_account_id().low()
             << ' ' << t.amount() << ' '
             << static_cast<int>(r->results(i).code()) << ' ' << retried
             << '\n';
      }
      return true;
    }
    if (absl::Now() > give_up) return false;
    retried = true;
    std::lock_guard<std::mutex> l(stats->mu);
    ++stats->retries;
  }
}

void Writer(client::Client& c, uint32_t writers, absl::Time end,
            absl::Time give_up, LoadStats* stats) {
  const uint64_t me = c.client_id();
  std::ofstream log(
      absl::StrCat(absl::GetFlag(FLAGS_out), "/acked-", me, ".txt"));
  std::mt19937_64 rng(me * 7919 + absl::ToUnixNanos(absl::Now()));
  uint64_t counter = rng() & 0x0000ffffffffffffull;  // Fresh per run.
  while (absl::Now() < end) {
    std::vector<ledger::v1::Transfer> ts =
        NextBatch(me, writers, &counter, &rng);
    if (!SubmitUntilAcked(c, ts, give_up, stats, &log)) {
      std::lock_guard<std::mutex> l(stats->mu);
      ++stats->unresolved;
      break;
    }
  }
  log.flush();
}

int Load() {
  const uint32_t writers = absl::GetFlag(FLAGS_writers);
  std::vector<std::unique_ptr<client::Client>> sdk;
  for (uint32_t w = 1; w <= writers; ++w) {
    absl::StatusOr<std::unique_ptr<client::Client>> c = MakeClient(w);
    if (!c.ok()) {
      std::cerr << "soak-driver: client " << w << ": " << c.status() << "\n";
      return 1;
    }
    sdk.push_back(*std::move(c));
  }
  const absl::Time begin = absl::Now();
  const absl::Time end = begin + absl::Seconds(absl::GetFlag(FLAGS_duration));
  const absl::Time give_up = end + absl::Seconds(absl::GetFlag(FLAGS_give_up));
  LoadStats stats;
  stats.last_done = begin;
  std::vector<std::thread> threads;
  for (auto& c : sdk) {
    threads.emplace_back(Writer, std::ref(*c), writers, end, give_up, &stats);
  }
  for (std::thread& t : threads) t.join();
  std::cout << "{\"requests\":" << stats.requests
            << ",\"transfers\":" << stats.transfers
            << ",\"retries\":" << stats.retries
            << ",\"unresolved\":" << stats.unresolved
            << ",\"max_gap_ms\":" << static_cast<uint64_t>(stats.max_gap_ms)
            << ",\"seconds\":" << absl::ToDoubleSeconds(absl::Now() - begin)
            << "}" << std::endl;
  return stats.unresolved == 0 && stats.requests > 0 ? 0 : 1;
}

std::vector<Acked> ReadAcked(uint32_t writers) {
  std::vector<Acked> all;
  for (uint32_t w = 1; w <= writers; ++w) {
    std::ifstream in(
        absl::StrCat(absl::GetFlag(FLAGS_out), "/acked-", w, ".txt"));
    Acked a;
    while (in >> a.high >> a.low >> a.from >> a.to >> a.amount >> a.result >>
           a.retried) {
      all.push_back(a);
    }
  }
  return all;
}

// Every writer account holds genesis + credits - debits; returns failures.
int CheckBalances(client::Client& c, const std::vector<Acked>& acked,
                  uint32_t writers, uint64_t* total) {
  std::map<uint64_t, int64_t> expect;
  for (const ledger::v1::GenesisAccount& g :
       c.cluster().config().genesis_accounts()) {
    if (g.id().high() == 0 && g.id().low() >= 1 && g.id().low() <= writers) {
      expect[g.id().low()] = static_cast<int64_t>(g.balance());
    }
  }
  int64_t genesis_total = 0;
  for (const auto& [id, b] : expect) genesis_total += b;
  for (const Acked& a : acked) {
    if (a.result != ledger::v1::RESULT_CODE_OK) continue;
    expect[a.from] -= static_cast<int64_t>(a.amount);
    expect[a.to] += static_cast<int64_t>(a.amount);
  }
  int failures = 0;
  *total = 0;
  for (const auto& [id, want] : expect) {
    absl::StatusOr<ledger::v1::Account> acc =
        c.GetAccount(client::MakeId(0, id));
    if (!acc.ok()) {
      std::cerr << "check: account " << id << ": " << acc.status() << "\n";
      ++failures;
      continue;
    }
    *total += acc->balance();
    if (static_cast<int64_t>(acc->balance()) != want) {
      std::cerr << "check: account " << id << " balance " << acc->balance()
                << ", acknowledged transfers give " << want << "\n";
      ++failures;
    }
  }
  if (static_cast<int64_t>(*total) != genesis_total) {
    std::cerr << "check: balances sum to " << *total << ", genesis "
              << genesis_total << " (no mints)\n";
    ++failures;
  }
  return failures;
}

// Looks up every retried transfer and a random sample of the rest.
int CheckTransfers(client::Client& c, const std::vector<Acked>& acked,
                   uint64_t* looked_up) {
  std::mt19937_64 rng(absl::ToUnixNanos(absl::Now()));
  const double p = acked.empty()
                       ? 0
                       : static_cast<double>(absl::GetFlag(FLAGS_sample)) /
                             static_cast<double>(acked.size());
  std::uniform_real_distribution<double> u(0, 1);
  int failures = 0;
  *looked_up = 0;
  for (const Acked& a : acked) {
    if (!a.retried && u(rng) >= p) continue;
    if (failures >= kLookupFailuresMax)
      break;  // Enough evidence; stay bounded.
    ++*looked_up;
    absl::StatusOr<ledger::v1::TransferRecord> t =
        c.GetTransfer(client::MakeId(a.high, a.low));
    const bool ok = t.ok() && static_cast<int>(t->result()) == a.result &&
                    t->amount() == a.amount &&
                    t->debit_account_id().low() == a.from &&
                    t->credit_account_id().low() == a.to;
    if (!ok) {
      std::cerr << "check: transfer " << a.high << ":" << a.low
                << " acknowledged with result " << a.result << ", ledger says "
                << (t.ok() ? t->ShortDebugString() : t.status().ToString())
                << "\n";
      ++failures;
    }
  }
  return failures;
}

// A request submitted again after an unknown outcome answers EXISTS for a
// transfer its first submission applied: the outcome is the stored one.
void ResolveRetriedExists(client::Client& c, std::vector<Acked>* acked) {
  for (Acked& a : *acked) {
    if (!a.retried || a.result != ledger::v1::RESULT_CODE_EXISTS) continue;
    absl::StatusOr<ledger::v1::TransferRecord> t =
        c.GetTransfer(client::MakeId(a.high, a.low));
    if (t.ok() && t->amount() == a.amount &&
        t->debit_account_id().low() == a.from &&
        t->credit_account_id().low() == a.to) {
      a.result = static_cast<int>(t->result());
    }
  }
}

int Check() {
  const uint32_t writers = absl::GetFlag(FLAGS_writers);
  absl::StatusOr<std::unique_ptr<client::Client>> c = MakeClient(1);
  if (!c.ok()) {
    std::cerr << "soak-driver: " << c.status() << "\n";
    return 1;
  }
  std::vector<Acked> acked = ReadAcked(writers);
  ResolveRetriedExists(**c, &acked);
  uint64_t ok = 0, retried = 0;
  for (const Acked& a : acked) {
    ok += a.result == ledger::v1::RESULT_CODE_OK;
    retried += a.retried;
  }
  uint64_t total = 0, looked_up = 0;
  const int failures = CheckBalances(**c, acked, writers, &total) +
                       CheckTransfers(**c, acked, &looked_up);
  std::cout << "{\"acked_transfers\":" << acked.size() << ",\"acked_ok\":" << ok
            << ",\"acked_after_retry\":" << retried
            << ",\"looked_up\":" << looked_up << ",\"balance_total\":" << total
            << ",\"failures\":" << failures << "}" << std::endl;
  return failures == 0 && !acked.empty() ? 0 : 1;
}

}  // namespace
}  // namespace pbft::test

int main(int argc, char** argv) {
  std::vector<std::string> rest = pbft::ParseFlags(
      argc, argv, "soak-driver load|check --config FILE --out DIR ...");
  const std::string mode = rest.size() > 1 ? rest[1] : "";
  if (absl::GetFlag(FLAGS_config).empty() || absl::GetFlag(FLAGS_out).empty() ||
      absl::GetFlag(FLAGS_writers) < 2) {
    std::cerr << "soak-driver: --config, --out and --writers >= 2 required\n";
    return 2;
  }
  if (mode == "load") return pbft::test::Load();
  if (mode == "check") return pbft::test::Check();
  std::cerr << "soak-driver: mode must be load or check\n";
  return 2;
}
