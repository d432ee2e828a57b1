#include "common/codec.h"

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace pbft::codec {
namespace {

TEST(CodecTest, RoundTrip) {
  Writer w;
  w.PutU8(7);
  w.PutU32(0xdeadbeef);
  w.PutU64(0x0102030405060708ull);
  w.PutBytes("hello");
  w.PutRaw("xy");
  std::string bytes = w.Release();
  EXPECT_EQ(bytes.size(), 1u + 4 + 8 + 4 + 5 + 2);
  // Big-endian: the most significant byte first.
  EXPECT_EQ(static_cast<uint8_t>(bytes[1]), 0xde);

  Reader r(bytes);
  EXPECT_EQ(*r.GetU8(), 7);
  EXPECT_EQ(*r.GetU32(), 0xdeadbeefu);
  EXPECT_EQ(*r.GetU64(), 0x0102030405060708ull);
  EXPECT_EQ(*r.GetBytes(), "hello");
  EXPECT_EQ(*r.GetRaw(2), "xy");
  EXPECT_TRUE(r.done());
}

TEST(CodecTest, TruncatedInputFailsWithoutReadingPastEnd) {
  Writer w;
  w.PutBytes("hello");
  std::string bytes = w.Release();
  for (size_t len = 0; len < bytes.size(); ++len) {
    Reader r(absl::string_view(bytes).substr(0, len));
    absl::StatusOr<absl::string_view> b = r.GetBytes();
    EXPECT_FALSE(b.ok()) << "length " << len;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kOutOfRange);
  }
  Reader r("");
  EXPECT_FALSE(r.GetU64().ok());
}

}  // namespace
}  // namespace pbft::codec
