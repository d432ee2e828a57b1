#include "common/config.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/check.h"
#include "common/proto_names.h"
#include "common/wire_limits.h"
#include "google/protobuf/util/json_util.h"

namespace pbft {
namespace {

constexpr size_t kClusterIdMax = 128;
constexpr uint32_t kReplicasMax = 1024;
constexpr uint32_t kCheckpointIntervalMax = 1 << 20;
constexpr uint32_t kMessageBytesMax = 64 << 20;

// Collects errors as "<source>: <field>: <message>"; reports the first.
class Errors {
 public:
  explicit Errors(absl::string_view source) : source_(source) {}
  void Add(absl::string_view field, absl::string_view message) {
    if (first_.empty())
      first_ = absl::StrCat(source_, ": ", field, ": ", message);
  }
  absl::Status status() const {
    return first_.empty() ? absl::OkStatus()
                          : absl::InvalidArgumentError(first_);
  }
  bool ok() const { return first_.empty(); }

 private:
  std::string source_;
  std::string first_;
};

// Per-client shares: each at most the shared limit it divides, and room for
// one request of the largest size.
void ApplyClientShares(const ledger::v1::ProtocolConfig& p, ProtocolParams* out,
                       Errors* errors) {
  auto pick = [](uint32_t v, uint64_t def) {
    return v == 0 ? static_cast<uint32_t>(std::min<uint64_t>(def, UINT32_MAX))
                  : v;
  };
  out->client_calls_max =
      pick(p.client_calls_max(),
           std::min(out->client_calls_max, out->request_queue_max));
  out->client_queue_max =
      pick(p.client_queue_max(),
           std::min(out->client_queue_max, out->request_queue_max));
  out->client_queue_bytes_max =
      pick(p.client_queue_bytes_max(), 4ull * out->batch_bytes_max);
  out->request_queue_bytes_max =
      pick(p.request_queue_bytes_max(), 64ull * out->batch_bytes_max);
  if (out->client_queue_max > out->request_queue_max) {
    errors->Add("protocol.client_queue_max",
                absl::StrCat("must be at most request_queue_max (",
                             out->request_queue_max, ")"));
  }
  if (out->client_calls_max > out->request_queue_max) {
    errors->Add("protocol.client_calls_max",
                absl::StrCat("must be at most request_queue_max (",
                             out->request_queue_max, ")"));
  }
  if (out->client_queue_bytes_max < out->batch_bytes_max ||
      out->client_queue_bytes_max > out->request_queue_bytes_max) {
    errors->Add(
        "protocol.client_queue_bytes_max",
        absl::StrCat("must be between batch_bytes_max (", out->batch_bytes_max,
                     ") and request_queue_bytes_max (",
                     out->request_queue_bytes_max, ")"));
  }
}

void ApplyProtocol(const ledger::v1::ProtocolConfig& p, ProtocolParams* out,
                   Errors* errors) {
  auto pick = [](uint32_t v, uint32_t def) { return v == 0 ? def : v; };
  out->checkpoint_interval =
      pick(p.checkpoint_interval(), out->checkpoint_interval);
  out->watermark_window = pick(p.watermark_window(), out->watermark_window);
  // When only K is given, L follows it as 2K.
  if (p.watermark_window() == 0 && p.checkpoint_interval() != 0) {
    out->watermark_window = 2 * out->checkpoint_interval;
  }
  out->batch_requests_max =
      pick(p.batch_requests_max(), out->batch_requests_max);
  out->batch_bytes_max = pick(p.batch_bytes_max(), out->batch_bytes_max);
  out->batch_delay_ticks = pick(p.batch_delay_ticks(), out->batch_delay_ticks);
  out->tick_ms = pick(p.tick_ms(), out->tick_ms);
  out->view_change_timeout_ticks =
      pick(p.view_change_timeout_ticks(), out->view_change_timeout_ticks);
  out->request_queue_max = pick(p.request_queue_max(), out->request_queue_max);
  out->timestamp_skew_max_ms =
      pick(p.timestamp_skew_max_ms(), out->timestamp_skew_max_ms);
  out->message_bytes_max = pick(p.message_bytes_max(), out->message_bytes_max);
  out->request_operations_max =
      pick(p.request_operations_max(), out->request_operations_max);
  out->batch_wait_when_idle = p.batch_wait_when_idle();
  out->admission_wait_ms = p.admission_wait_ms();  // 0: off.
  if (out->admission_wait_ms > ProtocolParams::kAdmissionWaitMsMax) {
    errors->Add(
        "protocol.admission_wait_ms",
        absl::StrCat("must be at most ", ProtocolParams::kAdmissionWaitMsMax,
                     " (an hour)"));
  }
  ApplyClientShares(p, out, errors);
  const uint32_t reply_default = out->message_bytes_max > (2u << 20)
                                     ? out->message_bytes_max - (1u << 20)
                                     : out->message_bytes_max / 2;
  out->reply_bytes_max = pick(p.reply_bytes_max(), reply_default);
  out->answer_bytes_max = pick(p.answer_bytes_max(), out->reply_bytes_max);
  if (out->reply_bytes_max >= out->message_bytes_max) {
    errors->Add("protocol.reply_bytes_max",
                absl::StrCat("must be below message_bytes_max (",
                             out->message_bytes_max, ")"));
  }
  if (out->answer_bytes_max > out->reply_bytes_max) {
    errors->Add("protocol.answer_bytes_max",
                absl::StrCat("must be at most reply_bytes_max (",
                             out->reply_bytes_max, ")"));
  }

  if (out->checkpoint_interval > kCheckpointIntervalMax) {
    errors->Add("protocol.checkpoint_interval",
                absl::StrCat("must be at most ", kCheckpointIntervalMax));
  }
  if (out->watermark_window % out->checkpoint_interval != 0 ||
      out->watermark_window < 2 * out->checkpoint_interval) {
    errors->Add(
        "protocol.watermark_window",
        absl::StrCat("must be a multiple of checkpoint_interval (",
                     out->checkpoint_interval, ") and at least twice it; got ",
                     out->watermark_window));
  }
  if (out->batch_bytes_max >= out->message_bytes_max) {
    errors->Add("protocol.batch_bytes_max",
                absl::StrCat("must be below message_bytes_max (",
                             out->message_bytes_max, ")"));
  }
  if (out->message_bytes_max > kMessageBytesMax) {
    errors->Add("protocol.message_bytes_max",
                absl::StrCat("must be at most ", kMessageBytesMax));
  }
  if (out->tick_ms > 60'000) {
    errors->Add("protocol.tick_ms", "must be at most 60000");
  }
}

absl::Status CheckKey(absl::string_view bytes, absl::string_view field,
                      Errors* errors, crypto::PublicKey* out) {
  absl::StatusOr<crypto::PublicKey> k = crypto::PublicKey::FromBytes(bytes);
  if (!k.ok()) {
    errors->Add(field, k.status().message());
    return k.status();
  }
  *out = *k;
  return absl::OkStatus();
}

// FromProto's checks, one part of the config each; findings go to *errors.

// The cluster id and the replica count; n, the number of replicas listed.
uint32_t CheckIdentity(const ledger::v1::ClusterConfig& config,
                       Errors* errors) {
  if (config.cluster_id().empty()) {
    errors->Add("cluster_id", "must not be empty");
  } else if (config.cluster_id().size() > kClusterIdMax) {
    errors->Add("cluster_id",
                absl::StrCat("must be at most ", kClusterIdMax, " bytes"));
  }

  const uint32_t n = static_cast<uint32_t>(config.replicas_size());
  if (n == 0) {
    errors->Add("replicas", "must list at least one replica");
  } else if (n > kReplicasMax) {
    errors->Add("replicas",
                absl::StrCat("at most ", kReplicasMax, " replicas"));
  } else if (absl::Status s = ValidateReplicaCount(n, config.f()); !s.ok()) {
    errors->Add("f", s.message());
  }
  return n;
}

// Replicas: ids dense 0..n-1 in order, unique addresses and keys (added to
// *keys); the keys in id order.
void CheckReplicas(const ledger::v1::ClusterConfig& config, uint32_t n,
                   Errors* errors, absl::flat_hash_set<crypto::PublicKey>* keys,
                   std::vector<crypto::PublicKey>* replica_keys) {
  absl::flat_hash_set<std::string> addresses;
  replica_keys->resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const ledger::v1::ReplicaConfig& r = config.replicas(static_cast<int>(i));
    const std::string f = absl::StrCat("replicas[", i, "]");
    if (r.id() != i) {
      errors->Add(
          absl::StrCat(f, ".id"),
          absl::StrCat("must be ", i,
                       " (ids are 0..n-1 in order, unique); got ", r.id()));
    }
    std::string host;
    uint16_t port;
    absl::Status hp =
        ParseHostPort(r.address(), absl::StrCat(f, ".address"), &host, &port);
    if (!hp.ok()) {
      errors->Add(absl::StrCat(f, ".address"),
                  hp.message().substr(hp.message().find(": ") + 2));
    } else if (!addresses.insert(r.address()).second) {
      errors->Add(
          absl::StrCat(f, ".address"),
          absl::StrCat("'", r.address(), "' is used by another replica"));
    }
    for (const auto& [name, addr] :
         {std::pair{"health_address", r.health_address()},
          std::pair{"metrics_address", r.metrics_address()}}) {
      if (addr.empty()) continue;
      absl::Status s =
          ParseHostPort(addr, absl::StrCat(f, ".", name), &host, &port);
      if (!s.ok()) {
        errors->Add(absl::StrCat(f, ".", name),
                    s.message().substr(s.message().find(": ") + 2));
      }
    }
    crypto::PublicKey key;
    if (CheckKey(r.public_key(), absl::StrCat(f, ".public_key"), errors, &key)
            .ok()) {
      if (!keys->insert(key).second) {
        errors->Add(absl::StrCat(f, ".public_key"),
                    "is used by another replica");
      }
      (*replica_keys)[i] = key;
    }
  }
}

// Clients: non-zero unique ids, unique keys distinct from replicas' (in
// *keys).
void CheckClients(
    const ledger::v1::ClusterConfig& config, Errors* errors,
    absl::flat_hash_set<crypto::PublicKey>* keys,
    absl::flat_hash_map<uint64_t, size_t>* client_index,
    absl::flat_hash_map<uint64_t, crypto::PublicKey>* client_keys) {
  for (int i = 0; i < config.clients_size(); ++i) {
    const ledger::v1::ClientConfig& cl = config.clients(i);
    const std::string f = absl::StrCat("clients[", i, "]");
    if (cl.id() == 0) {
      errors->Add(absl::StrCat(f, ".id"), "must not be 0");
    } else if (!client_index->emplace(cl.id(), static_cast<size_t>(i)).second) {
      errors->Add(absl::StrCat(f, ".id"),
                  absl::StrCat(cl.id(), " is used by another client"));
    }
    crypto::PublicKey key;
    if (CheckKey(cl.public_key(), absl::StrCat(f, ".public_key"), errors, &key)
            .ok()) {
      if (!keys->insert(key).second) {
        errors->Add(absl::StrCat(f, ".public_key"),
                    "is used by another client or replica");
      }
      (*client_keys)[cl.id()] = key;
    }
    for (int j = 0; j < cl.roles_size(); ++j) {
      if (cl.roles(j) == ledger::v1::CLIENT_ROLE_UNSPECIFIED) {
        errors->Add(absl::StrCat(f, ".roles[", j, "]"),
                    "must not be CLIENT_ROLE_UNSPECIFIED");
      }
    }
    for (int j = 0; j < cl.issuer_ledgers_size(); ++j) {
      if (cl.issuer_ledgers(j) == 0) {
        errors->Add(absl::StrCat(f, ".issuer_ledgers[", j, "]"),
                    "ledger 0 is not a ledger");
      }
    }
  }
}

// Genesis accounts: unique non-zero ids, registered owners, no overflow.
void CheckGenesis(const ledger::v1::ClusterConfig& config,
                  const absl::flat_hash_map<uint64_t, size_t>& client_index,
                  Errors* errors) {
  absl::flat_hash_set<std::pair<uint64_t, uint64_t>> account_ids;
  absl::flat_hash_map<uint32_t, uint64_t> totals;
  for (int i = 0; i < config.genesis_accounts_size(); ++i) {
    const ledger::v1::GenesisAccount& a = config.genesis_accounts(i);
    const std::string f = absl::StrCat("genesis_accounts[", i, "]");
    std::pair<uint64_t, uint64_t> id{a.id().high(), a.id().low()};
    if (id.first == 0 && id.second == 0) {
      errors->Add(absl::StrCat(f, ".id"), "must not be zero");
    } else if (!account_ids.insert(id).second) {
      errors->Add(absl::StrCat(f, ".id"), "is used by another genesis account");
    }
    if (client_index.find(a.owner_client_id()) == client_index.end()) {
      errors->Add(
          absl::StrCat(f, ".owner_client_id"),
          absl::StrCat(a.owner_client_id(), " is not a registered client"));
    }
    if (a.ledger() == 0) {
      errors->Add(absl::StrCat(f, ".ledger"), "must not be 0");
    }
    uint64_t& total = totals[a.ledger()];
    if (a.balance() > std::numeric_limits<uint64_t>::max() - total) {
      errors->Add(absl::StrCat(f, ".balance"),
                  "the ledger's total genesis balance overflows 64 bits");
    } else {
      total += a.balance();
    }
  }
}

// TLS: all three files or none.
void CheckTls(const ledger::v1::TlsConfig& tls, Errors* errors) {
  const bool any_tls = !tls.ca_file().empty() || !tls.cert_file().empty() ||
                       !tls.key_file().empty();
  if (any_tls) {
    if (tls.ca_file().empty())
      errors->Add("tls.ca_file", "required when tls is set");
    if (tls.cert_file().empty())
      errors->Add("tls.cert_file", "required when tls is set");
    if (tls.key_file().empty())
      errors->Add("tls.key_file", "required when tls is set");
  }
}

}  // namespace

absl::Status ValidateReplicaCount(uint32_t n, uint32_t f) {
  if (static_cast<uint64_t>(n) == 3ull * f + 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "f = ", f, " needs exactly 3f+1 = ", 3ull * f + 1, " replicas; got ", n));
}

absl::Status ParseHostPort(absl::string_view address, absl::string_view field,
                           std::string* host, uint16_t* port) {
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", address, "' is not host:port"));
  }
  uint32_t p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p == 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": port in '", address, "' must be a number in 1..65535"));
  }
  *host = std::string(address.substr(0, colon));
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

absl::StatusOr<Cluster> Cluster::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return FromJson(ss.str(), path);
}

absl::StatusOr<Cluster> Cluster::FromJson(absl::string_view json,
                                          absl::string_view source) {
  ledger::v1::ClusterConfig config;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  google::protobuf::util::Status s =
      google::protobuf::util::JsonStringToMessage(std::string(json), &config,
                                                  opts);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not a valid cluster config: ", s.message().as_string()));
  }
  return FromProto(config, source);
}

absl::StatusOr<Cluster> Cluster::FromProto(
    const ledger::v1::ClusterConfig& config, absl::string_view source) {
  Errors errors(source);
  Cluster c;
  const uint32_t n = CheckIdentity(config, &errors);
  absl::flat_hash_set<crypto::PublicKey> keys;
  CheckReplicas(config, n, &errors, &keys, &c.replica_keys_);
  CheckClients(config, &errors, &keys, &c.client_index_, &c.client_keys_);
  CheckGenesis(config, c.client_index_, &errors);
  ApplyProtocol(config.protocol(), &c.protocol_, &errors);
  if (n > 0 && n <= kReplicasMax) {
    if (absl::Status s = ValidateWireLimits(n, c.protocol_); !s.ok()) {
      errors.Add("protocol.watermark_window", s.message());
    }
  }
  CheckTls(config.tls(), &errors);
  if (!errors.ok()) return errors.status();
  c.config_ = std::make_shared<const ledger::v1::ClusterConfig>(config);
  return c;
}

const ledger::v1::ReplicaConfig& Cluster::replica(ReplicaId id) const {
  CHECK_LT(id.value(), n());
  return config_->replicas(static_cast<int>(id.value()));
}

const crypto::PublicKey& Cluster::replica_key(ReplicaId id) const {
  CHECK_LT(id.value(), n());
  return replica_keys_[id.value()];
}

const ledger::v1::ClientConfig* Cluster::client(uint64_t id) const {
  auto it = client_index_.find(id);
  if (it == client_index_.end()) return nullptr;
  return &config_->clients(static_cast<int>(it->second));
}

const ledger::v1::ClientConfig* Cluster::client_by_key(
    const crypto::PublicKey& key) const {
  for (const auto& [id, k] : client_keys_) {
    if (k == key) return client(id);
  }
  return nullptr;
}

int Cluster::replica_by_key(const crypto::PublicKey& key) const {
  for (size_t i = 0; i < replica_keys_.size(); ++i) {
    if (replica_keys_[i] == key) return static_cast<int>(i);
  }
  return -1;
}

bool Cluster::IsIssuer(uint64_t client_id, uint32_t ledger) const {
  const ledger::v1::ClientConfig* c = client(client_id);
  if (c == nullptr) return false;
  bool issuer = false;
  for (int r : c->roles()) issuer |= (r == ledger::v1::CLIENT_ROLE_ISSUER);
  if (!issuer) return false;
  for (uint32_t l : c->issuer_ledgers()) {
    if (l == ledger) return true;
  }
  return false;
}

EnvelopeVerifier Cluster::MakeVerifier() const {
  return EnvelopeVerifier(cluster_id(), replica_keys_, client_keys_,
                          protocol_.message_bytes_max);
}

std::string ClusterConfigToJson(const ledger::v1::ClusterConfig& config) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  std::string out;
  CHECK(google::protobuf::util::MessageToJsonString(config, &out, opts).ok());
  return out;
}

}  // namespace pbft
