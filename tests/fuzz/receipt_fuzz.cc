// Fuzzes receipts (ledger.v1.Receipt, what `ledgerctl receipt` and the SDK
// check offline): protobuf decoding, then VerifyReceipt against the
// deterministic 4-replica cluster of tests/ledger/block_factory.h, whose
// keys signed the seed receipts (fuzz_seeds.cc). A receipt that verifies
// must describe the transfer it carries, in the view it names.
#include <cstddef>
#include <cstdint>

#include "common/check.h"
#include "ledger/v1/ledger.pb.h"
#include "replica/ledger/block.h"
#include "tests/ledger/block_factory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pbft::test::BlockFactory* const factory =
      new pbft::test::BlockFactory();
  ledger::v1::Receipt receipt;
  if (!receipt.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto summary = pbft::ledger::VerifyReceipt(factory->cluster(), receipt);
  if (!summary.ok()) {
    CHECK(!summary.status().message().empty());
    return 0;
  }
  CHECK_EQ(summary->view, receipt.view());
  CHECK_EQ(summary->transfer.SerializeAsString(),
           receipt.transfer().SerializeAsString());
  return 0;
}
