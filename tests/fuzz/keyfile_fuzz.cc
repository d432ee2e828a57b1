// Fuzzes key files: ReadKeyFile on a mode-0600 file holding the input. A
// key that loads must be the key its file names: signing with it verifies
// under the file's public key, and writing it back reads back the same.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/crypto.h"
#include "common/keyfile.h"

namespace {

// In memory where there is a tmpfs: WriteKeyFile syncs the file, and a
// sync to disk per input made this target run at the disk's pace.
const std::string& ScratchPath(const char* suffix) {
  static const std::string base =
      absl::StrCat(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
                   "/keyfile_fuzz.", getpid(), ".");
  static std::string paths[2];
  // Not left behind in memory (or in /tmp) when the fuzzer exits.
  static const int registered = std::atexit([] {
    for (const std::string& p : paths) {
      if (!p.empty()) unlink(p.c_str());
    }
  });
  (void)registered;
  std::string& path = paths[suffix[0] == 'b'];
  if (path.empty()) path = base + suffix;
  return path;
}

void WriteInput(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, data + done, size - done);
    CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  CHECK_EQ(close(fd), 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = ScratchPath("a");
  WriteInput(path, data, size);
  auto key = pbft::ReadKeyFile(path);
  if (!key.ok()) return 0;
  const std::string message = "fuzz";
  const auto signature = key->Sign(message);
  CHECK(pbft::crypto::Verify(key->public_key(), message, signature));
  const std::string& back = ScratchPath("b");
  CHECK(pbft::WriteKeyFile(back, *key, /*overwrite=*/true).ok());
  auto again = pbft::ReadKeyFile(back);
  CHECK(again.ok());
  CHECK(again->public_key() == key->public_key());
  return 0;
}
