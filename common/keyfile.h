// Private key files. A key file is text:
//
//   # pbft-ledger private key. Keep secret; mode 0600.
//   algorithm: ed25519
//   seed: <64 hex digits>
//   public_key: <base64>
//
// WriteKeyFile creates it with mode 0600 (atomically: temp file + rename).
// ReadKeyFile refuses a file that group or others can read or write, and one
// whose public_key line does not match its seed.
#ifndef PBFT_LEDGER_COMMON_KEYFILE_H_
#define PBFT_LEDGER_COMMON_KEYFILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/crypto.h"

namespace pbft {

// Fails with ALREADY_EXISTS if `path` exists and !overwrite.
absl::Status WriteKeyFile(const std::string& path, const crypto::SecretKey& key,
                          bool overwrite = false);

absl::StatusOr<crypto::SecretKey> ReadKeyFile(const std::string& path);

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_KEYFILE_H_
