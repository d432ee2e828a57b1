// `ledgerctl cluster init --k8s`: the config names the Kubernetes DNS names
// and pod mount paths of deploy/k8s, and the kustomize component generates
// exactly the Secrets of the replicas this organisation runs
// (docs/operations.md, Kubernetes). The rendering itself is checked by
// tests/deploy.
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "client/cluster_init.h"
#include "common/config.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace pbft::client {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ClusterInitK8sTest, ConfigNamesServiceDnsAndTlsMountPaths) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.k8s = true;
  o.k8s_namespace = "bank-a";
  o.out_dir = dir.path();
  ASSERT_TRUE(InitCluster(o).ok());

  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(dir.file("cluster.json"));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_EQ(cluster->n(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    const ledger::v1::ReplicaConfig& r = cluster->replica(ReplicaId(i));
    const std::string host =
        "ledger-" + std::to_string(i) + ".bank-a.svc.cluster.local";
    // Same ports in every pod: each has its own IP.
    EXPECT_EQ(r.address(), host + ":7000");
    EXPECT_EQ(r.health_address(), host + ":7100");
    EXPECT_EQ(r.metrics_address(), host + ":7200");
    EXPECT_EQ(K8sReplicaName(i), "ledger-" + std::to_string(i));
  }
  EXPECT_EQ(cluster->config().tls().ca_file(), "/etc/pbft-ledger/tls/ca.crt");
  EXPECT_EQ(cluster->config().tls().cert_file(),
            "/etc/pbft-ledger/tls/tls.crt");
  EXPECT_EQ(cluster->config().tls().key_file(), "/etc/pbft-ledger/tls/tls.key");

  // The component generates the ConfigMap and every replica's two Secrets.
  const std::string k = ReadAll(dir.file("kustomization.yaml"));
  EXPECT_NE(k.find("kind: Component\n"), std::string::npos) << k;
  EXPECT_NE(k.find("- name: ledger-config\n  files:\n  - cluster.json\n"),
            std::string::npos)
      << k;
  for (int i = 0; i < 4; ++i) {
    const std::string n = std::to_string(i);
    EXPECT_NE(k.find("- name: ledger-" + n +
                     "-key\n  files:\n  - "
                     "replica.key=keys/replica-" +
                     n + ".key\n"),
              std::string::npos)
        << k;
    EXPECT_NE(k.find("  - tls.key=tls/replica-" + n + ".key\n"),
              std::string::npos)
        << k;
  }
  // The TLS directory exists for the operator's files and is private.
  struct stat st;
  ASSERT_EQ(::stat(dir.file("tls").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(ClusterInitK8sTest, OwnReplicasLimitWhichPrivateKeysTheComponentMounts) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.k8s = true;
  o.replicas = 7;
  o.k8s_own_replicas = {2, 5};
  o.k8s_external_domain = "ledger.consortium.example";
  o.out_dir = dir.path();
  absl::StatusOr<ledger::v1::ClusterConfig> config = InitCluster(o);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->f(), 2u);
  EXPECT_EQ(config->replicas(6).address(),
            "ledger-6.ledger.consortium.example:7000");

  const std::string k = ReadAll(dir.file("kustomization.yaml"));
  for (int i = 0; i < 7; ++i) {
    const bool own = i == 2 || i == 5;
    const std::string n = std::to_string(i);
    EXPECT_EQ(k.find("name: ledger-" + n + "-key\n") != std::string::npos, own)
        << "replica " << i << "\n"
        << k;
    EXPECT_EQ(k.find("name: ledger-" + n + "-tls\n") != std::string::npos, own)
        << "replica " << i << "\n"
        << k;
  }
  // The key the component mounts for replica 5 is replica 5's.
  absl::StatusOr<crypto::SecretKey> key =
      ReadKeyFile(dir.file("keys/replica-5.key"));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->public_key().ToBytes(), config->replicas(5).public_key());
}

TEST(ClusterInitK8sTest, InvalidOptionsNameTheFlagAndWriteNothing) {
  struct Case {
    void (*set)(ClusterInitOptions*);
    const char* flag;
  };
  const Case cases[] = {
      {[](ClusterInitOptions* o) { o->k8s_namespace = "Bank_A"; },
       "--namespace"},
      {[](ClusterInitOptions* o) { o->k8s_namespace = "-a"; }, "--namespace"},
      {[](ClusterInitOptions* o) { o->k8s_namespace = std::string(64, 'a'); },
       "--namespace"},
      {[](ClusterInitOptions* o) { o->k8s_cluster_domain = "a..b"; },
       "--cluster-domain"},
      {[](ClusterInitOptions* o) { o->k8s_external_domain = "x_y.example"; },
       "--external-domain"},
      {[](ClusterInitOptions* o) { o->k8s_own_replicas = {4}; },
       "--own-replicas"},
      {[](ClusterInitOptions* o) {
         o->k8s_own_replicas = {1, 1};
       },
       "--own-replicas"},
  };
  for (const Case& c : cases) {
    test::TempDir dir;
    ClusterInitOptions o;
    o.k8s = true;
    o.out_dir = dir.file("out");
    c.set(&o);
    absl::StatusOr<ledger::v1::ClusterConfig> r = InitCluster(o);
    ASSERT_FALSE(r.ok()) << c.flag;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.flag), std::string::npos)
        << r.status();
    struct stat st;
    EXPECT_NE(::stat(o.out_dir.c_str(), &st), 0) << "wrote " << o.out_dir;
  }
}

TEST(ClusterInitK8sTest, WithoutK8sNoComponentIsWritten) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.out_dir = dir.path();
  absl::StatusOr<ledger::v1::ClusterConfig> config = InitCluster(o);
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(config->has_tls());
  struct stat st;
  EXPECT_NE(::stat(dir.file("kustomization.yaml").c_str(), &st), 0);
}

}  // namespace
}  // namespace pbft::client
