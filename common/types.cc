#include "common/types.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pbft {

absl::StatusOr<Digest> Digest::FromBytes(absl::string_view bytes) {
  if (bytes.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest must be ", kSize, " bytes, got ", bytes.size()));
  }
  std::array<uint8_t, kSize> a;
  std::copy(bytes.begin(), bytes.end(), a.begin());
  return Digest(a);
}

std::string Digest::ToHex() const { return absl::BytesToHexString(view()); }

bool Digest::IsZero() const {
  return std::all_of(bytes_.begin(), bytes_.end(),
                     [](uint8_t b) { return b == 0; });
}

}  // namespace pbft
