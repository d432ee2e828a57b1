// Strong types for the protocol's numbers and for digests, so that a view
// can never be passed where a sequence number is expected.
//
// Value types; thread-compatible.
#ifndef PBFT_LEDGER_COMMON_TYPES_H_
#define PBFT_LEDGER_COMMON_TYPES_H_

#include <array>
#include <compare>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pbft {

template <typename Tag, typename Rep>
class StrongInt {
 public:
  using rep_type = Rep;

  constexpr StrongInt() = default;
  constexpr explicit StrongInt(Rep v) : value_(v) {}

  constexpr Rep value() const { return value_; }
  constexpr StrongInt next() const { return StrongInt(value_ + 1); }

  friend constexpr auto operator<=>(StrongInt, StrongInt) = default;
  friend constexpr StrongInt operator+(StrongInt a, Rep b) {
    return StrongInt(a.value_ + b);
  }
  template <typename H>
  friend H AbslHashValue(H h, StrongInt s) {
    return H::combine(std::move(h), s.value_);
  }
  friend std::ostream& operator<<(std::ostream& os, StrongInt s) {
    return os << s.value_;
  }

 private:
  Rep value_ = 0;
};

using ReplicaId = StrongInt<struct ReplicaIdTag, uint32_t>;
using ClientId = StrongInt<struct ClientIdTag, uint64_t>;
using View = StrongInt<struct ViewTag, uint64_t>;
using Seq = StrongInt<struct SeqTag, uint64_t>;
using RequestNumber = StrongInt<struct RequestNumberTag, uint64_t>;

// A SHA-256 digest. The all-zero digest is valid as a value (e.g. the
// previous-block hash of the first block).
class Digest {
 public:
  static constexpr size_t kSize = 32;

  constexpr Digest() : bytes_{} {}
  explicit Digest(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Fails unless `bytes` is exactly kSize bytes.
  static absl::StatusOr<Digest> FromBytes(absl::string_view bytes);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  absl::string_view view() const {
    return {reinterpret_cast<const char*>(bytes_.data()), kSize};
  }
  std::string ToBytes() const { return std::string(view()); }
  std::string ToHex() const;
  bool IsZero() const;

  friend auto operator<=>(const Digest&, const Digest&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine_contiguous(std::move(h), d.bytes_.data(), kSize);
  }
  friend std::ostream& operator<<(std::ostream& os, const Digest& d) {
    return os << d.ToHex().substr(0, 16);
  }

 private:
  std::array<uint8_t, kSize> bytes_;
};

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_TYPES_H_
