#include "common/check.h"

#include <cstdio>
#include <cstdlib>

namespace pbft::internal {

void CheckFailed(const char* file, int line, const char* expr,
                 const std::string& detail) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s %s\n", file, line, expr,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace pbft::internal
