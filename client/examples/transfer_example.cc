// A minimal application on the pbft-ledger C++ SDK: open an account, move
// money into it, read both balances back.
//
//   transfer_example CLUSTER_JSON CLIENT_KEY_FILE
//
// Build it against an installed SDK:
//   find_package(PbftLedger REQUIRED)
//   target_link_libraries(app PRIVATE PbftLedger::client)
#include <iostream>

#include "client/client.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: transfer_example CLUSTER_JSON CLIENT_KEY_FILE\n";
    return 2;
  }
  pbft::client::ClientOptions options;
  options.config_path = argv[1];
  options.key_path = argv[2];
  options.default_deadline = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<pbft::client::Client>> client =
      pbft::client::Client::Create(options);
  if (!client.ok()) {
    std::cerr << "cannot create client: " << client.status() << "\n";
    return 1;
  }
  pbft::client::Client& c = **client;
  const uint64_t me = c.client_id();  // Genesis gives client N account N.

  // Ids are chosen by the application; NewId's are ordered by time (what
  // the ledger stores best) and never collide between runs. Keep the id to
  // retry safely after an "outcome unknown".
  const ledger::v1::Uint128 savings = pbft::client::NewId();
  ledger::v1::CreateAccount account;
  *account.mutable_id() = savings;
  account.set_ledger(1);
  absl::StatusOr<ledger::v1::OperationResults> created =
      c.CreateAccounts({account});
  if (!created.ok()) {
    std::cerr << "create account: " << created.status() << "\n";
    return 1;
  }

  ledger::v1::Transfer t;
  *t.mutable_id() = pbft::client::NewId();
  *t.mutable_debit_account_id() = pbft::client::MakeId(0, me);
  *t.mutable_credit_account_id() = savings;
  t.set_amount(42);
  t.set_ledger(1);
  t.set_memo("example");
  absl::StatusOr<ledger::v1::OperationResults> moved = c.Transfers({t});
  if (!moved.ok()) {
    std::cerr << "transfer: " << moved.status()
              << (pbft::client::IsOutcomeUnknown(moved.status())
                      ? " (safe to retry)"
                      : "")
              << "\n";
    return 1;
  }
  std::cout << "transfer: "
            << ledger::v1::ResultCode_Name(moved->results(0).code())
            << " in block " << moved->seq() << "\n";

  for (const ledger::v1::Uint128& id : {pbft::client::MakeId(0, me), savings}) {
    absl::StatusOr<ledger::v1::Account> a = c.GetAccount(id);
    if (!a.ok()) {
      std::cerr << "balance: " << a.status() << "\n";
      return 1;
    }
    std::cout << "account " << pbft::client::IdToString(id) << ": "
              << a->balance() << "\n";
  }
  return moved->results(0).code() == ledger::v1::RESULT_CODE_OK ? 0 : 3;
}
