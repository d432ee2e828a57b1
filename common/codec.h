// Canonical byte encodings. Protobuf serialisation is not canonical, so
// anything that is hashed or compared across replicas (batch digests, block
// header hashes, storage keys) is encoded here: big-endian fixed-width
// integers and u32-length-prefixed byte strings, nothing else.
//
// Writer and Reader are value types; thread-compatible.
#ifndef PBFT_LEDGER_COMMON_CODEC_H_
#define PBFT_LEDGER_COMMON_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pbft::codec {

class Writer {
 public:
  Writer() = default;
  explicit Writer(std::string* out) : out_(out) {}

  void PutU8(uint8_t v);
  void PutU32(uint32_t v);
  void PutU64(uint64_t v);
  // u32 length, then the bytes.
  void PutBytes(absl::string_view b);
  // The bytes only; for fixed-size fields (digests, keys).
  void PutRaw(absl::string_view b);

  const std::string& data() const { return *out_; }
  std::string Release() { return std::move(*out_); }

 private:
  std::string own_;
  std::string* out_ = &own_;
};

// Decodes what Writer wrote. Every getter fails with OUT_OF_RANGE on
// truncated input; nothing reads past the end.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  absl::StatusOr<uint8_t> GetU8();
  absl::StatusOr<uint32_t> GetU32();
  absl::StatusOr<uint64_t> GetU64();
  absl::StatusOr<absl::string_view> GetBytes();
  absl::StatusOr<absl::string_view> GetRaw(size_t n);

  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

}  // namespace pbft::codec

#endif  // PBFT_LEDGER_COMMON_CODEC_H_
