// Generates a cluster: the config (cluster.json) and one private key file
// per replica and per client. Used by `ledgerctl cluster init` and tests.
//
// Layout written under `out_dir`:
//   cluster.json              public config, every replica and client loads it
//   keys/replica-<i>.key      replica i's private key (mode 0600)
//   keys/client-<id>.key      client <id>'s private key (mode 0600)
#ifndef PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_
#define PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "ledger/v1/config.pb.h"

namespace ledger {

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
  bool force = false;  // Overwrite an existing cluster.json and keys.
};

// Writes the files and returns the config written. Fails without writing
// anything if the options are invalid or the output exists (and !force).
absl::StatusOr<v1::ClusterConfig> InitCluster(
    const ClusterInitOptions& options);

}  // namespace ledger

#endif  // PBFT_LEDGER_CLIENT_CLUSTER_INIT_H_
