#include "tools/bench/load_common.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crypto.h"

namespace pbft::bench {
namespace {

// A random base for transfer ids (48 bits).
uint64_t RandomBase() {
  uint64_t counter = 0;
  for (char ch : crypto::RandomBytes(8)) {
    counter = (counter << 8) | static_cast<uint8_t>(ch);
  }
  return counter & 0x0000ffffffffffffull;
}

// With one client there is no peer account to credit: it creates its own
// (RESULT_CODE_OK or EXISTS).
bool CreateSoloSink(const BenchOptions& o, LoadClient& c) {
  ledger::v1::CreateAccount a;
  *a.mutable_id() = c.credit;
  a.set_ledger(1);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c.sdk->CreateAccounts({a}, o.deadline);
  if (!r.ok()) {
    std::cerr << "ledger-bench: creating the sink account: "
              << r.status().message() << "\n";
    return false;
  }
  return true;
}

}  // namespace

ledger::v1::OperationBatch LoadClient::NextBatch(uint32_t batch) {
  ledger::v1::OperationBatch b;
  const uint64_t me = sdk->client_id();
  for (uint32_t i = 0; i < batch; ++i) {
    ledger::v1::Transfer* t = b.add_operations()->mutable_transfer();
    *t->mutable_id() =
        time_ids ? client::NewId() : client::MakeId(me, ++counter);
    *t->mutable_debit_account_id() = debit;
    *t->mutable_credit_account_id() = credit;
    t->set_amount(1);
    t->set_ledger(1);
  }
  return b;
}

std::optional<std::vector<LoadClient>> OpenLoadClients(const BenchOptions& o) {
  std::vector<LoadClient> out;
  std::shared_ptr<client::LoadThrottle> throttle;
  if (o.throttle_k > 0) {
    absl::StatusOr<std::shared_ptr<client::LoadThrottle>> t =
        client::LoadThrottle::Create({.k = o.throttle_k});
    if (!t.ok()) {
      std::cerr << "ledger-bench: --throttle_k: " << t.status().message()
                << "\n";
      return std::nullopt;
    }
    throttle = *std::move(t);
  }
  for (uint32_t c = 1; c <= o.clients; ++c) {
    client::ClientOptions co;
    co.config_path = o.config;
    co.key_path = absl::StrCat(o.keys_dir, "/client-", c, ".key");
    co.default_deadline = o.deadline;
    co.retry_refused = o.retry_refused;
    co.sessions = o.sessions;
    co.send_to_all = o.send_to_all;
    co.hedge_after_first = o.hedge_after_first;
    co.throttle = throttle;
    absl::StatusOr<std::unique_ptr<client::Client>> sdk =
        client::Client::Create(co);
    if (!sdk.ok()) {
      std::cerr << "ledger-bench: client " << c << ": "
                << sdk.status().message() << "\n";
      return std::nullopt;
    }
    LoadClient lc;
    lc.sdk = *std::move(sdk);
    lc.time_ids = o.time_ids;
    lc.counter = RandomBase();
    const uint64_t me = lc.sdk->client_id();
    lc.debit = client::MakeId(0, me);
    lc.credit = o.clients == 1 ? client::MakeId(me, 0xb3ac)
                               : client::MakeId(0, c % o.clients + 1);
    out.push_back(std::move(lc));
  }
  if (o.clients == 1 && !CreateSoloSink(o, out[0])) return std::nullopt;
  return out;
}

client::ClientStats SumStats(const std::vector<LoadClient>& clients) {
  client::ClientStats sum;
  for (const LoadClient& c : clients) sum += c.sdk->stats();
  return sum;
}

std::string SdkStatsJson(const client::ClientStats& s) {
  return absl::StrFormat(
      "\"sdk_sends\":%u,\"sdk_sent_to_all_first\":%u,"
      "\"sdk_widened_by_timer\":%u,\"sdk_widened_early\":%u,"
      "\"sdk_widened_by_hedge\":%u,\"sdk_replicas_left_out\":%u,"
      "\"sdk_throttled\":%u,\"sdk_words_withdrawn\":%u",
      s.ordered_sends, s.sent_to_all_first, s.widened_by_timer, s.widened_early,
      s.widened_by_hedge, s.replicas_left_out, s.throttled, s.words_withdrawn);
}

}  // namespace pbft::bench
