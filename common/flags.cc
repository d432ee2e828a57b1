#include "common/flags.h"

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

namespace pbft {

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage;
  storage.reserve(static_cast<size_t>(argc));
  bool after_terminator = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (!after_terminator && arg == "--") {
      after_terminator = true;
    } else if (!after_terminator && i > 0 && arg.size() > 2 && arg[0] == '-' &&
               arg[1] == '-') {
      size_t end = arg.find('=');
      if (end == std::string::npos) end = arg.size();
      for (size_t j = 2; j < end; ++j) {
        if (arg[j] == '-') arg[j] = '_';
      }
    }
    storage.push_back(std::move(arg));
  }
  std::vector<char*> args;
  for (std::string& s : storage) args.push_back(s.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return {positional.begin(), positional.end()};
}

}  // namespace pbft
