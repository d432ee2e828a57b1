#include "common/keyfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace pbft {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::Status(
      errno == ENOENT ? absl::StatusCode::kNotFound
                      : absl::StatusCode::kFailedPrecondition,
      absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status WriteKeyFile(const std::string& path, const crypto::SecretKey& key,
                          bool overwrite) {
  struct stat st;
  if (!overwrite && ::stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, ": key file exists; refusing to overwrite"));
  }
  std::string body = absl::StrCat(
      "# pbft-ledger private key. Keep secret; mode 0600.\n",
      "algorithm: ed25519\n", "seed: ", absl::BytesToHexString(key.Seed()),
      "\n", "public_key: ", key.public_key().ToBase64(), "\n");
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create key file", tmp);
  // open() honours the umask only to remove bits; force exactly 0600.
  if (::fchmod(fd, 0600) != 0 ||
      ::write(fd, body.data(), body.size()) !=
          static_cast<ssize_t>(body.size()) ||
      ::fsync(fd) != 0) {
    absl::Status s = ErrnoError("cannot write key file", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoError("cannot rename key file into place", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<crypto::SecretKey> ReadKeyFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return ErrnoError("cannot read key file", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": key file is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s: key file mode is %04o: group or others can access it; run "
        "'chmod 600 %s'",
        path, st.st_mode & 07777, path));
  }
  std::ifstream in(path);
  if (!in) return ErrnoError("cannot open key file", path);
  std::stringstream ss;
  ss << in.rdbuf();

  std::string seed_hex, public_key_text, algorithm;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(ss.str(), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    absl::string_view k = absl::StripAsciiWhitespace(kv.first);
    absl::string_view v = absl::StripAsciiWhitespace(kv.second);
    if (k == "algorithm") {
      algorithm = std::string(v);
    } else if (k == "seed") {
      seed_hex = std::string(v);
    } else if (k == "public_key") {
      public_key_text = std::string(v);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": unknown field '", k, "'"));
    }
  }
  if (algorithm != "ed25519") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": algorithm: must be 'ed25519', got '", algorithm, "'"));
  }
  if (seed_hex.size() != 2 * crypto::kSeedSize ||
      !std::all_of(seed_hex.begin(), seed_hex.end(),
                   [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": seed: must be ", 2 * crypto::kSeedSize, " hex digits"));
  }
  absl::StatusOr<crypto::SecretKey> key =
      crypto::SecretKey::FromSeed(absl::HexStringToBytes(seed_hex));
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": seed: ", key.status().message()));
  }
  if (!public_key_text.empty()) {
    absl::StatusOr<crypto::PublicKey> pk =
        crypto::PublicKey::FromText(public_key_text);
    if (!pk.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": public_key: ", pk.status().message()));
    }
    if (!(*pk == key->public_key())) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": public_key: does not match the seed (corrupt key file?)"));
    }
  }
  return key;
}

}  // namespace pbft
