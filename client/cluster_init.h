// Generates a cluster: the config (cluster.json) and one private key file
// per replica and per client. Used by `ledgerctl cluster init` and tests.
//
// Layout written under `out_dir`:
//   cluster.json              public config, every replica and client loads it
//   keys/replica-<i>.key      replica i's private key (mode 0600)
//   keys/client-<id>.key      client <id>'s private key (mode 0600)
//
// With `k8s` set (`ledgerctl cluster init --k8s`), the config names the
// Kubernetes DNS names and pod mount paths of deploy/k8s, and two more
// entries are written for a Kustomize overlay to include as a component:
//   kustomization.yaml        a kustomize Component generating the ConfigMap
//                             `ledger-config` (cluster.json) and, for each
//                             replica i in k8s_own_replicas, the Secrets
//                             `ledger-<i>-key` (replica.key) and
//                             `ledger-<i>-tls` (ca.crt, tls.crt, tls.key
//                             read from tls/ca.crt, tls/replica-<i>.{crt,key})
//   tls/                      empty (mode 0700): the operator puts the TLS
//                             material there (deploy/k8s/gen-dev-tls.sh does
//                             for a dev cluster)
#ifndef PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_
#define PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/proto_names.h"
#include "ledger/v1/config.pb.h"

namespace pbft::client {

struct ClusterInitOptions {
  uint32_t replicas = 4;
  uint32_t clients = 1;
  std::string out_dir;
  std::string host = "127.0.0.1";
  uint32_t base_port = 7000;  // Replica i: base+i; health base+100+i;
                              // metrics base+200+i.
  // Faults tolerated; 0 means the largest f with n >= 3f+1.
  uint32_t f = 0;
  std::string cluster_id;  // Empty: a random id.
  // Every client gets one genesis account on ledger 1 (id = client id)
  // with this balance; client 1 is an issuer on ledger 1.
  uint64_t genesis_balance = 1'000'000'000;
  // Checkpoint interval K (0: the default); the window L is set to 2K.
  uint32_t checkpoint_interval = 0;
  bool force = false;  // Overwrite an existing cluster.json and keys.

  // Kubernetes mode. Replica i's API address is
  //   ledger-<i>.<k8s_namespace>.svc.<k8s_cluster_domain>:<base_port>
  // (its headless Service in deploy/k8s), or ledger-<i>.<k8s_external_domain>
  // :<base_port> when k8s_external_domain is set (replicas of several
  // organisations reaching each other across clusters); health and metrics
  // listen on base_port+100 and base_port+200 of the same host (every pod has
  // its own IP, so the ports are the same for all replicas). `host` is unused.
  // The tls section names kK8sTls* (one config serves every pod; each pod
  // mounts its own Secret there).
  bool k8s = false;
  std::string k8s_namespace = "pbft-ledger";
  std::string k8s_cluster_domain = "cluster.local";
  std::string k8s_external_domain;
  // Replicas whose private-key and TLS Secrets kustomization.yaml generates
  // (the ones this organisation runs). Empty: all.
  std::vector<uint32_t> k8s_own_replicas;
};

// Where the pods of deploy/k8s mount the TLS Secret's entries.
inline constexpr char kK8sTlsCaFile[] = "/etc/pbft-ledger/tls/ca.crt";
inline constexpr char kK8sTlsCertFile[] = "/etc/pbft-ledger/tls/tls.crt";
inline constexpr char kK8sTlsKeyFile[] = "/etc/pbft-ledger/tls/tls.key";

// The name of replica i's StatefulSet, headless Service and DNS label in
// deploy/k8s: "ledger-<i>".
std::string K8sReplicaName(uint32_t replica);

// Writes the files and returns the config written. Fails without writing
// anything if the options are invalid or the output exists (and !force).
absl::StatusOr<ledger::v1::ClusterConfig> InitCluster(
    const ClusterInitOptions& options);

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_
