// The stored encodings that reach the state hash: a transfer record's bytes
// and the framing of the transfers' group hash, pinned field by field.
#include <cstdint>
#include <string>

#include "common/crypto.h"
#include "gtest/gtest.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/ledger_internal.h"

namespace pbft::ledger::internal {
namespace {

// Big-endian bytes, written out here rather than with the ledger's helpers.
std::string Be(uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  return out;
}

TransferValue Sample(std::string memo) {
  TransferValue t;
  t.kind = TransferKind::kMint;
  t.debit = {0x0102030405060708, 0x1112131415161718};
  t.credit = {0x2122232425262728, 0x3132333435363738};
  t.amount = 0x4142434445464748;
  t.ledger = 0x51525354;
  t.memo = std::move(memo);
  t.result = v1::RESULT_CODE_INSUFFICIENT_FUNDS;
  t.seq = 0x6162636465666768;
  t.timestamp_ms = 0x7172737475767778;
  t.client_id = 0x8182838485868788;
  t.transfer_number = 0x9192939495969798;
  t.debit_previous = {0xa1a2a3a4a5a6a7a8, 0xb1b2b3b4b5b6b7b8};
  t.credit_previous = {0xc1c2c3c4c5c6c7c8, 0xd1d2d3d4d5d6d7d8};
  return t;
}

std::string Expected(const TransferValue& t) {
  return std::string(1, static_cast<char>(t.kind)) + Be(t.debit.high, 8) +
         Be(t.debit.low, 8) + Be(t.credit.high, 8) + Be(t.credit.low, 8) +
         Be(t.amount, 8) + Be(t.ledger, 4) + Be(t.memo.size(), 4) + t.memo +
         Be(static_cast<uint32_t>(t.result), 4) + Be(t.seq, 8) +
         Be(t.timestamp_ms, 8) + Be(t.client_id, 8) + Be(t.transfer_number, 8) +
         Be(t.debit_previous.high, 8) + Be(t.debit_previous.low, 8) +
         Be(t.credit_previous.high, 8) + Be(t.credit_previous.low, 8);
}

TEST(TransferEncodingTest, FieldsInOrderBigEndian) {
  for (const std::string& memo :
       {std::string(), std::string("invoice 7"),
        std::string(pbft::ledger::kMemoBytesMax, 'm')}) {
    const TransferValue t = Sample(memo);
    const std::string bytes = EncodeTransfer(t);
    EXPECT_EQ(bytes, Expected(t)) << "memo of " << memo.size() << " bytes";
    EXPECT_EQ(bytes.size(), 117 + memo.size());
    absl::StatusOr<TransferValue> back = DecodeTransfer(bytes);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(EncodeTransfer(*back), bytes);
    EXPECT_TRUE(back->SameFields(t));
  }
}

TEST(TransferEncodingTest, GroupHashFramesEachRecordByLength) {
  TransferGroupHasher group;
  group.Add("key-one", "value");
  group.Add("k2", std::string(300, 'v'));
  const std::string framed =
      std::string("pbft-ledger/transfers/v1") + Be(7, 4) + "key-one" +
      Be(5, 4) + "value" + Be(2, 4) + "k2" + Be(300, 4) + std::string(300, 'v');
  EXPECT_FALSE(group.empty());
  EXPECT_EQ(group.Finish(), crypto::Sha256(framed));

  // Moving a byte from a key to its value changes the hash.
  TransferGroupHasher shifted;
  shifted.Add("key-on", "evalue");
  shifted.Add("k2", std::string(300, 'v'));
  EXPECT_NE(shifted.Finish(), crypto::Sha256(framed));
}

}  // namespace
}  // namespace pbft::ledger::internal
