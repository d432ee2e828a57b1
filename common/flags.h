// Command-line parsing for the binaries, on Abseil flags.
//
// The documented command lines use dashes (--data-dir, --base-port); Abseil
// flag names are C++ identifiers. ParseFlags rewrites "--a-b" to "--a_b"
// (the name part only, before any '=') and then parses, so both spellings
// work. Returns the positional arguments, argv[0] first.
#ifndef PBFT_LEDGER_COMMON_FLAGS_H_
#define PBFT_LEDGER_COMMON_FLAGS_H_

#include <string>
#include <vector>

namespace pbft {

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_FLAGS_H_
