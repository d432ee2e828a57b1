// Fuzzes every peer message type on its way into the core, as a replica
// receives it: the envelope's signature and wire checks (VerifyPool::Check:
// sender, signature, CheckWireMessage, the client requests inside a
// PRE-PREPARE), then pbft::core::Core::Step, on a core of the 4-replica fuzz
// cluster (tests/fuzz/fuzz_harness.h) that starts fresh.
//
// Structure-aware: the fuzzer writes payloads and senders, the harness signs
// them with the cluster's real keys, so it gets past the signatures into
// the protocol logic. Input: header byte = the core's replica id (mod 4);
// then records:
//   kind & 0x0f == 0: `sender` ticks (at most 64);
//   kind & 0x0f == t: a message of type t (pbft.v1.MessageType; 1 is a
//     forwarded client REQUEST) with payload `body`, signed as `sender`;
//     its nested envelopes (requests in a PRE-PREPARE, a FETCH_RESPONSE's
//     batches, certificates and proof) are signed again by their claimed
//     senders, and with kind bit 0x40 their batch digests are made to match;
//   kind bit 0x20: `body` is a whole pbft.v1.Envelope (how a PRE-PREPARE
//     carries its batch beside the header), signed as above as `sender`
//     with type t;
//   kind bit 0x80: `body` is a whole pbft.v1.Envelope, delivered as decoded
//     (unsigned by the harness).
// Checked after every input (CoreHarness): the core's invariants; batches
// executed in seq order, once each, with a PRE-PREPARE and commit
// certificate the ledger's verifier accepts; every message the core sends
// passes its peers' checks; every reply is signed and names its client.
// Also: the view, the executed seq and the low watermark never go back.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/check.h"
#include "tests/fuzz/fuzz_harness.h"

using pbft::fuzz::Record;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static pbft::fuzz::TestCluster* const tc = new pbft::fuzz::TestCluster();
  uint8_t header;
  const std::vector<Record> records =
      pbft::fuzz::ParseRecords(data, size, pbft::fuzz::kRecordsMax, &header);
  pbft::fuzz::CoreHarness h(tc, header % pbft::fuzz::kReplicas);
  for (const Record& r : records) {
    const uint64_t view = h.core().view().value();
    const uint64_t low = h.core().low_watermark().value();
    const uint64_t executed = h.executed();
    h.Apply(r);
    CHECK_GE(h.core().view().value(), view);
    CHECK_GE(h.core().low_watermark().value(), low);
    CHECK_GE(h.executed(), executed);
    CHECK_EQ(h.core().last_executed().value(), h.executed());
  }
  return 0;
}
