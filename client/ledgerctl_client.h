// ledgerctl's commands that talk to a running cluster through the SDK:
// create-account, transfer, mint, balance, get-transfer, history, block,
// head, status. Each takes --json.
#ifndef PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_
#define PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ledger {

using LedgerctlCommand = std::function<int(const std::vector<std::string>&)>;

// name -> command, for ledgerctl's dispatch table.
std::map<std::string, LedgerctlCommand> ClientCommands();

// Usage lines for these commands.
extern const char kClientCommandsUsage[];

}  // namespace ledger

#endif  // PBFT_LEDGER_CLIENT_LEDGERCTL_CLIENT_H_
