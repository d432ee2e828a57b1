// ledgerctl's commands that talk to a running cluster through the SDK:
// create-account, transfer, mint, balance, get-transfer, history, block,
// head, status. Each takes --json.
#ifndef PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_
#define PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/proto_names.h"
#include "ledger/v1/ledger.pb.h"

namespace pbft::client {

using LedgerctlCommand = std::function<int(const std::vector<std::string>&)>;

// name -> command, for ledgerctl's dispatch table.
std::map<std::string, LedgerctlCommand> ClientCommands();

// Usage lines for these commands.
extern const char kClientCommandsUsage[];

// `ledgerctl receipt --transfer ID` without --data-dir: the receipt from the
// running cluster (Client::GetReceipt, with --config and --key).
absl::StatusOr<ledger::v1::Receipt> FetchReceipt(
    const ledger::v1::Uint128& transfer_id);

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_
