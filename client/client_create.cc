// Client::Create: the options checked, the cluster config and the client's
// key read, the TLS credentials and the channels to the replicas made; the
// client itself is GrpcClient (client.cc).
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/grpc_client.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/keyfile.h"

namespace pbft::client {
namespace {

// Room for gRPC framing above the largest payload the cluster accepts.
constexpr int kMessageSlackBytes = 64 << 10;

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const std::string& field) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(field, ": cannot read ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// gRPC channels shared by every Client of the process with the same
// address and credentials: one connection per replica, not one per Client.
std::shared_ptr<grpc::Channel> SharedChannel(
    const std::string& address, const std::string& creds_key,
    const std::shared_ptr<grpc::ChannelCredentials>& creds,
    const grpc::ChannelArguments& args) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache =
      new std::map<std::string, std::weak_ptr<grpc::Channel>>();
  absl::MutexLock l(&mu);
  std::weak_ptr<grpc::Channel>& slot = (*cache)[address + "\n" + creds_key];
  std::shared_ptr<grpc::Channel> ch = slot.lock();
  if (ch == nullptr) {
    ch = grpc::CreateCustomChannel(address, creds, args);
    slot = ch;
  }
  return ch;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& o) {
  // Keep gRPC initialised for the life of the process. Without this, the
  // last gRPC object's destruction shuts the library down and the next
  // client re-initialises it, a cycle that gRPC 1.51's callback-queue
  // thread does not survive (seen as "assertion failed: prior > 0").
  static const bool grpc_initialized = [] {
    grpc_init();
    return true;
  }();
  (void)grpc_initialized;
  if (o.throttle != nullptr && o.retry_refused) {
    return absl::InvalidArgumentError(
        "throttle: needs retry_refused off (a client that retries refusals "
        "does not hand them to the application)");
  }
  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(o.config_path);
  if (!cluster.ok()) return cluster.status();
  absl::StatusOr<crypto::SecretKey> key = ReadKeyFile(o.key_path);
  if (!key.ok()) return key.status();
  const ledger::v1::ClientConfig* me =
      cluster->client_by_key(key->public_key());
  if (me == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat(o.key_path, ": this key is not a registered client in ",
                     o.config_path));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::InsecureChannelCredentials();
  const ledger::v1::TlsConfig& tls = cluster->config().tls();
  std::string ca = o.tls_ca_file.empty() ? tls.ca_file() : o.tls_ca_file;
  std::string cert =
      o.tls_cert_file.empty() ? tls.cert_file() : o.tls_cert_file;
  std::string pkey = o.tls_key_file.empty() ? tls.key_file() : o.tls_key_file;
  if (!ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca_pem = ReadFile(ca, "tls.ca_file");
    if (!ca_pem.ok()) return ca_pem.status();
    ssl.pem_root_certs = *ca_pem;
    if (!cert.empty()) {
      absl::StatusOr<std::string> c = ReadFile(cert, "tls.cert_file");
      if (!c.ok()) return c.status();
      absl::StatusOr<std::string> k = ReadFile(pkey, "tls.key_file");
      if (!k.ok()) return k.status();
      ssl.pem_cert_chain = *c;
      ssl.pem_private_key = *k;
    }
    creds = grpc::SslCredentials(ssl);
  }
  const std::string creds_key = absl::StrCat(ca, "|", cert, "|", pkey);
  grpc::ChannelArguments args;
  const int message_max =
      static_cast<int>(cluster->protocol().message_bytes_max) +
      kMessageSlackBytes;
  args.SetMaxReceiveMessageSize(message_max);
  args.SetMaxSendMessageSize(message_max);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (uint32_t i = 0; i < cluster->n(); ++i) {
    channels.push_back(SharedChannel(cluster->replica(ReplicaId(i)).address(),
                                     creds_key, creds, args));
  }
  const uint64_t id = me->id();
  return internal::NewGrpcClient(*std::move(cluster), id, *std::move(key), o,
                                 channels);
}

}  // namespace pbft::client
