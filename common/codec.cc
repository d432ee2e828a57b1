#include "common/codec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pbft::codec {

void Writer::PutU8(uint8_t v) { out_->push_back(static_cast<char>(v)); }

void Writer::PutU32(uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out_->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

void Writer::PutU64(uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out_->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

void Writer::PutBytes(absl::string_view b) {
  PutU32(static_cast<uint32_t>(b.size()));
  out_->append(b.data(), b.size());
}

void Writer::PutRaw(absl::string_view b) { out_->append(b.data(), b.size()); }

namespace {
absl::Status Truncated(size_t want, size_t have) {
  return absl::OutOfRangeError(
      absl::StrCat("truncated input: need ", want, " bytes, have ", have));
}
}  // namespace

absl::StatusOr<uint8_t> Reader::GetU8() {
  if (in_.empty()) return Truncated(1, 0);
  uint8_t v = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return v;
}

absl::StatusOr<uint32_t> Reader::GetU32() {
  if (in_.size() < 4) return Truncated(4, in_.size());
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in_[i]);
  in_.remove_prefix(4);
  return v;
}

absl::StatusOr<uint64_t> Reader::GetU64() {
  if (in_.size() < 8) return Truncated(8, in_.size());
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in_[i]);
  in_.remove_prefix(8);
  return v;
}

absl::StatusOr<absl::string_view> Reader::GetBytes() {
  absl::StatusOr<uint32_t> n = GetU32();
  if (!n.ok()) return n.status();
  return GetRaw(*n);
}

absl::StatusOr<absl::string_view> Reader::GetRaw(size_t n) {
  if (in_.size() < n) return Truncated(n, in_.size());
  absl::string_view v = in_.substr(0, n);
  in_.remove_prefix(n);
  return v;
}

}  // namespace pbft::codec
