#include "client/cluster_init.h"

#include <sys/stat.h>

#include "common/config.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace pbft::client {
namespace {

TEST(ClusterInitTest, OutputLoadsAndValidates) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.replicas = 4;
  o.clients = 2;
  o.out_dir = dir.path();
  o.base_port = 9100;
  absl::StatusOr<ledger::v1::ClusterConfig> written = InitCluster(o);
  ASSERT_TRUE(written.ok()) << written.status();

  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(dir.file("cluster.json"));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ(cluster->n(), 4u);
  EXPECT_EQ(cluster->f(), 1u);
  EXPECT_EQ(cluster->config().clients_size(), 2);
  EXPECT_EQ(cluster->replica(ReplicaId(3)).address(), "127.0.0.1:9103");
  EXPECT_TRUE(cluster->IsIssuer(1, 1));

  // Every key file is 0600 and matches the config's public key.
  for (uint32_t i = 0; i < 4; ++i) {
    std::string path = dir.file("keys/replica-" + std::to_string(i) + ".key");
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
    absl::StatusOr<crypto::SecretKey> key = ReadKeyFile(path);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(key->public_key(), cluster->replica_key(ReplicaId(i)));
  }
  for (uint64_t c = 1; c <= 2; ++c) {
    absl::StatusOr<crypto::SecretKey> key =
        ReadKeyFile(dir.file("keys/client-" + std::to_string(c) + ".key"));
    ASSERT_TRUE(key.ok()) << key.status();
    const ledger::v1::ClientConfig* client =
        cluster->client_by_key(key->public_key());
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->id(), c);
  }
  // A config-built verifier accepts what a key file's owner signs.
  absl::StatusOr<crypto::SecretKey> k2 =
      ReadKeyFile(dir.file("keys/replica-2.key"));
  ASSERT_TRUE(k2.ok());
  EnvelopeSigner signer(cluster->cluster_id(), 2, *k2);
  EXPECT_TRUE(cluster->MakeVerifier()
                  .Verify(signer.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, "x"))
                  .ok());
}

TEST(ClusterInitTest, RefusesToOverwriteWithoutForce) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.out_dir = dir.path();
  ASSERT_TRUE(InitCluster(o).ok());
  EXPECT_EQ(InitCluster(o).status().code(), absl::StatusCode::kAlreadyExists);
  o.force = true;
  EXPECT_TRUE(InitCluster(o).ok());
}

TEST(ClusterInitTest, InvalidOptionsNameTheFlag) {
  test::TempDir dir;
  ClusterInitOptions o;
  o.out_dir = dir.path();
  o.replicas = 3;
  o.f = 1;
  absl::StatusOr<ledger::v1::ClusterConfig> r = InitCluster(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--f"), std::string::npos) << r.status();

  o.f = 0;
  o.base_port = 65500;
  r = InitCluster(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--base-port"), std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace pbft::client
