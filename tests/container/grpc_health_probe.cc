// grpc_health_probe: what the kubelet's native gRPC probe does, for the
// container tests. One grpc.health.v1.Health/Check call over plaintext.
//
//   grpc_health_probe HOST:PORT SERVICE [TIMEOUT_MS]
//
// Prints the status (SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN or the
// RPC error) and exits 0 for SERVING, 1 for any other answer, 2 when the call
// failed (nothing listening, timeout), 3 on bad usage. The two messages are
// encoded by hand (HealthCheckRequest{1: service},
// HealthCheckResponse{1: status}): Debian's gRPC ships no generated health
// client.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr size_t kServiceNameMax = 127;  // one length byte

std::string EncodeRequest(const std::string& service) {
  if (service.empty()) return "";
  return std::string{'\x0a', static_cast<char>(service.size())} + service;
}

// The status field (1, varint); 0 (UNKNOWN) when absent, -1 if malformed.
int DecodeStatus(const std::string& bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t tag = static_cast<uint8_t>(bytes[i++]);
    if (tag != 0x08 || i >= bytes.size()) return -1;
    const uint8_t value = static_cast<uint8_t>(bytes[i++]);
    if (value & 0x80) return -1;
    return value;
  }
  return 0;
}

const char* StatusName(int status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "MALFORMED";
  }
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return "";
  std::string out;
  for (const auto& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr,
                 "usage: grpc_health_probe HOST:PORT SERVICE [TIMEOUT_MS]\n");
    return 3;
  }
  const std::string target = argv[1], service = argv[2];
  const long timeout_ms = argc == 4 ? std::strtol(argv[3], nullptr, 10) : 3000;
  if (service.size() > kServiceNameMax || timeout_ms <= 0) {
    std::fprintf(
        stderr,
        "grpc_health_probe: service name over %zu bytes or bad timeout\n",
        kServiceNameMax);
    return 3;
  }
  auto channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(timeout_ms));
  const std::string request = EncodeRequest(service);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), resp;
  grpc::CompletionQueue cq;
  auto call =
      stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", req, &cq);
  grpc::Status status;
  call->StartCall();
  call->Finish(&resp, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) {
    std::printf("error: completion queue failed\n");
    return 2;
  }
  if (!status.ok()) {
    std::printf("error: %d %s\n", static_cast<int>(status.error_code()),
                status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::NOT_FOUND ? 1 : 2;
  }
  const int health = DecodeStatus(Flatten(resp));
  std::printf("%s\n", StatusName(health));
  return health == 1 ? 0 : 1;
}
