#include "replica/ledger/state_hash.h"

#include <sodium.h>

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/crypto.h"

namespace pbft::ledger {

static_assert(StateHash::kBytes == 2048);
static_assert(crypto_stream_chacha20_ietf_KEYBYTES == 32);

void StateHash::Expand(absl::string_view key, absl::string_view value,
                       Lanes* out) {
  crypto::EnsureInitialized();  // Picks libsodium's SIMD ChaCha20.
  // "pbft-ledger/lthash/v1" || u32 len(key), big-endian (codec.h).
  static constexpr absl::string_view kDomain = "pbft-ledger/lthash/v1";
  char head[kDomain.size() + 4];
  std::memcpy(head, kDomain.data(), kDomain.size());
  const uint32_t key_size = static_cast<uint32_t>(key.size());
  for (int i = 0; i < 4; ++i) {
    head[kDomain.size() + i] = static_cast<char>(key_size >> (24 - 8 * i));
  }
  crypto_generichash_state state;
  unsigned char seed[crypto_stream_chacha20_ietf_KEYBYTES];
  CHECK_EQ(crypto_generichash_init(&state, nullptr, 0, sizeof seed), 0);
  auto update = [&](absl::string_view d) {
    crypto_generichash_update(
        &state, reinterpret_cast<const unsigned char*>(d.data()), d.size());
  };
  update(absl::string_view(head, sizeof head));
  update(key);
  update(value);
  CHECK_EQ(crypto_generichash_final(&state, seed, sizeof seed), 0);
  const unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  if constexpr (std::endian::native == std::endian::little) {
    // The lanes are little-endian u16: the keystream goes straight in.
    static_assert(sizeof(Lanes) == kBytes);
    CHECK_EQ(
        crypto_stream_chacha20_ietf(
            reinterpret_cast<unsigned char*>(out->data()), kBytes, nonce, seed),
        0);
  } else {
    alignas(64) unsigned char bytes[kBytes];
    CHECK_EQ(crypto_stream_chacha20_ietf(bytes, sizeof bytes, nonce, seed), 0);
    for (size_t i = 0; i < kLanes; ++i) {
      (*out)[i] = static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    }
  }
}

namespace {

// Eight 16-bit lanes at once: SSE2 on x86-64, NEON on ARM (GCC and Clang
// vector extensions; GCC 12 at -O2 leaves the plain loop scalar, no paddw).
// Lane-wise arithmetic wraps modulo 2^16, exactly like the scalar loop. In
// exec-bench the wall time did not move measurably with it alone: most of
// the cost of these sums is reading cold cached expansions, which the
// expander now spreads over two threads and prefetches.
using Vec = uint16_t __attribute__((vector_size(16)));
constexpr size_t kVecLanes = sizeof(Vec) / sizeof(uint16_t);
static_assert(StateHash::kLanes % (4 * kVecLanes) == 0);

template <bool kAdd>
void Combine(uint16_t* acc, const uint16_t* e) {
  for (size_t i = 0; i < StateHash::kLanes; i += 4 * kVecLanes) {
    Vec a[4];
    Vec b[4];
    std::memcpy(a, acc + i, sizeof a);
    std::memcpy(b, e + i, sizeof b);
    for (int j = 0; j < 4; ++j) a[j] = kAdd ? a[j] + b[j] : a[j] - b[j];
    std::memcpy(acc + i, a, sizeof a);
  }
}

}  // namespace

void StateHash::AddLanes(const Lanes& e) {
  Combine<true>(lanes_.data(), e.data());
}

void StateHash::RemoveLanes(const Lanes& e) {
  Combine<false>(lanes_.data(), e.data());
}

void StateHash::Add(absl::string_view key, absl::string_view value) {
  Lanes e;
  Expand(key, value, &e);
  AddLanes(e);
}

void StateHash::Remove(absl::string_view key, absl::string_view value) {
  Lanes e;
  Expand(key, value, &e);
  RemoveLanes(e);
}

std::string StateHash::Serialize() const {
  std::string out(kBytes, '\0');
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out.data(), lanes_.data(), kBytes);  // Lanes are little-endian.
  } else {
    for (size_t i = 0; i < kLanes; ++i) {
      out[2 * i] = static_cast<char>(lanes_[i] & 0xff);
      out[2 * i + 1] = static_cast<char>(lanes_[i] >> 8);
    }
  }
  return out;
}

absl::StatusOr<StateHash> StateHash::Parse(absl::string_view bytes) {
  if (bytes.size() != kBytes) {
    return absl::DataLossError(absl::StrCat("state hash must be ", kBytes,
                                            " bytes, got ", bytes.size()));
  }
  StateHash s;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(s.lanes_.data(), bytes.data(), kBytes);
  } else {
    for (size_t i = 0; i < kLanes; ++i) {
      s.lanes_[i] =
          static_cast<uint16_t>(static_cast<uint8_t>(bytes[2 * i]) |
                                (static_cast<uint8_t>(bytes[2 * i + 1]) << 8));
    }
  }
  return s;
}

Digest StateHash::ToDigest() const {
  return crypto::Sha256Of({"pbft-ledger/state/v1", Serialize()});
}

}  // namespace pbft::ledger
