#include "client/cluster_init.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/keyfile.h"

namespace ledger {

absl::StatusOr<v1::ClusterConfig> InitCluster(const ClusterInitOptions& o) {
  namespace fs = std::filesystem;
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out: required");
  if (o.replicas == 0)
    return absl::InvalidArgumentError("--replicas: must be at least 1");
  if (o.base_port == 0 || o.base_port + 200 + o.replicas > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--base-port: ", o.base_port, " leaves no room for ", o.replicas,
        " replicas' API, health (+100) and metrics (+200) ports below 65536"));
  }
  const uint32_t f = o.f != 0 ? o.f : (o.replicas - 1) / 3;
  if (o.replicas < 3 * f + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--f: ", f, " needs at least ", 3 * f + 1,
                     " replicas, got ", o.replicas));
  }

  const fs::path dir(o.out_dir);
  const fs::path config_path = dir / "cluster.json";
  std::error_code ec;
  if (!o.force && fs::exists(config_path, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(config_path.string(),
                     ": exists; pass --force to overwrite the cluster"));
  }
  fs::create_directories(dir / "keys", ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir.string(), ": cannot create directory: ", ec.message()));
  }
  ::chmod((dir / "keys").c_str(), 0700);

  v1::ClusterConfig config;
  config.set_cluster_id(
      o.cluster_id.empty()
          ? absl::StrCat("cluster-",
                         absl::BytesToHexString(crypto::RandomBytes(6)))
          : o.cluster_id);
  config.set_f(f);
  for (uint32_t i = 0; i < o.replicas; ++i) {
    crypto::SecretKey key = crypto::SecretKey::Generate();
    absl::Status s = WriteKeyFile(
        (dir / "keys" / absl::StrCat("replica-", i, ".key")).string(), key,
        o.force);
    if (!s.ok()) return s;
    v1::ReplicaConfig* r = config.add_replicas();
    r->set_id(i);
    r->set_address(absl::StrCat(o.host, ":", o.base_port + i));
    r->set_health_address(absl::StrCat(o.host, ":", o.base_port + 100 + i));
    r->set_metrics_address(absl::StrCat(o.host, ":", o.base_port + 200 + i));
    r->set_public_key(key.public_key().ToBytes());
    r->set_organization(absl::StrCat("org-", i));
  }
  for (uint32_t c = 1; c <= o.clients; ++c) {
    crypto::SecretKey key = crypto::SecretKey::Generate();
    absl::Status s = WriteKeyFile(
        (dir / "keys" / absl::StrCat("client-", c, ".key")).string(), key,
        o.force);
    if (!s.ok()) return s;
    v1::ClientConfig* cl = config.add_clients();
    cl->set_id(c);
    cl->set_name(absl::StrCat("client-", c));
    cl->set_public_key(key.public_key().ToBytes());
    if (c == 1) {
      cl->add_roles(v1::CLIENT_ROLE_ISSUER);
      cl->add_issuer_ledgers(1);
    }
    v1::GenesisAccount* a = config.add_genesis_accounts();
    a->mutable_id()->set_low(c);
    a->set_owner_client_id(c);
    a->set_ledger(1);
    a->set_balance(o.genesis_balance);
  }

  // What we write must load: validate before it reaches the disk.
  absl::StatusOr<Cluster> check =
      Cluster::FromProto(config, config_path.string());
  if (!check.ok()) return check.status();

  const fs::path tmp = dir / "cluster.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << ClusterConfigToJson(config);
    if (!out.good()) {
      return absl::FailedPreconditionError(
          absl::StrCat(tmp.string(), ": cannot write"));
    }
  }
  fs::rename(tmp, config_path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat(config_path.string(), ": cannot write: ", ec.message()));
  }
  return config;
}

}  // namespace ledger
