// Fuzzes what every peer and client message goes through before its
// signature check: the envelope's protobuf decoding, then CheckWireMessage
// (per-type limits, canonical encoding, nested envelopes) for a 4-replica
// cluster with the default protocol parameters. An envelope that passes
// must be within its type's limit.
#include <cstddef>
#include <cstdint>

#include "common/check.h"
#include "common/config.h"
#include "common/wire_limits.h"
#include "pbft/v1/pbft.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pbft::WireLimits limits =
      pbft::WireLimits::For(4, pbft::ProtocolParams{});
  pbft::v1::Envelope envelope;
  if (!envelope.ParseFromArray(data, static_cast<int>(size))) return 0;
  const pbft::WireError error = pbft::CheckWireMessage(envelope, limits);
  CHECK(pbft::WireErrorName(error) != nullptr);
  if (error == pbft::WireError::kOk) {
    CHECK_LE(envelope.payload().size(), limits.PayloadMax(envelope.type()));
  }
  return 0;
}
