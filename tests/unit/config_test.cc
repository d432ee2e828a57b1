#include "common/config.h"

#include <functional>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace pbft {
namespace {

ledger::v1::ClusterConfig ValidConfig(uint32_t n = 4, uint32_t f = 1) {
  ledger::v1::ClusterConfig c;
  c.set_cluster_id("test-cluster");
  c.set_f(f);
  for (uint32_t i = 0; i < n; ++i) {
    ledger::v1::ReplicaConfig* r = c.add_replicas();
    r->set_id(i);
    r->set_address("127.0.0.1:" + std::to_string(7000 + i));
    r->set_public_key(crypto::SecretKey::Generate().public_key().ToBytes());
  }
  for (uint64_t id = 1; id <= 2; ++id) {
    ledger::v1::ClientConfig* cl = c.add_clients();
    cl->set_id(id);
    cl->set_name("client-" + std::to_string(id));
    cl->set_public_key(crypto::SecretKey::Generate().public_key().ToBytes());
    ledger::v1::GenesisAccount* a = c.add_genesis_accounts();
    a->mutable_id()->set_low(id);
    a->set_owner_client_id(id);
    a->set_ledger(1);
    a->set_balance(100);
  }
  c.mutable_clients(0)->add_roles(ledger::v1::CLIENT_ROLE_ISSUER);
  c.mutable_clients(0)->add_issuer_ledgers(1);
  return c;
}

TEST(ConfigTest, ValidConfigLoadsWithDefaults) {
  absl::StatusOr<Cluster> c = Cluster::FromProto(ValidConfig(), "cluster.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n(), 4u);
  EXPECT_EQ(c->f(), 1u);
  EXPECT_EQ(c->quorum(), 3u);
  EXPECT_EQ(c->weak_quorum(), 2u);
  EXPECT_EQ(c->protocol().checkpoint_interval,
            ProtocolParams::kDefaultCheckpointInterval);
  EXPECT_EQ(c->protocol().admission_wait_ms, 0u);  // Off.
  EXPECT_TRUE(c->IsIssuer(1, 1));
  EXPECT_FALSE(c->IsIssuer(1, 2));
  EXPECT_FALSE(c->IsIssuer(2, 1));
  EXPECT_NE(c->client(2), nullptr);
  EXPECT_EQ(c->client(3), nullptr);
}

TEST(ConfigTest, ReplicaCountMustBeExactly3fPlus1) {
  // The loader (ledgerctl config check) refuses what ledgerd's core would:
  // one validation function decides for both.
  for (uint32_t f = 0; f <= 3; ++f) {
    for (uint32_t n = 3 * f + 1; n <= 3 * f + 4; ++n) {
      absl::StatusOr<Cluster> c = Cluster::FromProto(ValidConfig(n, f), "x");
      EXPECT_EQ(ValidateReplicaCount(n, f).ok(), n == 3 * f + 1);
      if (n != 3 * f + 1) {
        ASSERT_FALSE(c.ok()) << "n=" << n << " f=" << f;
        EXPECT_NE(c.status().message().find("x: f: "), std::string::npos)
            << c.status();
        continue;
      }
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_GE(2 * c->quorum(), n + f + 1) << "n=" << n << " f=" << f;
      EXPECT_LE(c->quorum(), n - f) << "quorum must be reachable without f";
      if (n == 3 * f + 1) {
        EXPECT_EQ(c->quorum(), 2 * f + 1);
      }
    }
  }
}

struct BadCase {
  std::string name;
  std::function<void(ledger::v1::ClusterConfig*)> mutate;
  std::string field;  // Expected in the error message.
};

TEST(ConfigTest, EachInvalidFieldGivesItsOwnNamedError) {
  const std::vector<BadCase> cases = {
      {"empty cluster id", [](auto* c) { c->set_cluster_id(""); },
       "cluster_id"},
      {"n < 3f+1", [](auto* c) { c->set_f(2); }, ": f: "},
      {"no replicas", [](auto* c) { c->clear_replicas(); }, "replicas: "},
      {"replica id gap", [](auto* c) { c->mutable_replicas(2)->set_id(5); },
       "replicas[2].id"},
      {"duplicate replica id",
       [](auto* c) { c->mutable_replicas(3)->set_id(2); }, "replicas[3].id"},
      {"duplicate address",
       [](auto* c) { c->mutable_replicas(1)->set_address("127.0.0.1:7000"); },
       "replicas[1].address"},
      {"address without port",
       [](auto* c) { c->mutable_replicas(2)->set_address("127.0.0.1"); },
       "replicas[2].address"},
      {"port out of range",
       [](auto* c) { c->mutable_replicas(2)->set_address("h:70000"); },
       "replicas[2].address"},
      {"bad health address",
       [](auto* c) { c->mutable_replicas(0)->set_health_address("nohost"); },
       "replicas[0].health_address"},
      {"short replica key",
       [](auto* c) {
         c->mutable_replicas(1)->set_public_key(std::string(31, 'k'));
       },
       "replicas[1].public_key"},
      {"duplicate replica key",
       [](auto* c) {
         c->mutable_replicas(3)->set_public_key(c->replicas(0).public_key());
       },
       "replicas[3].public_key"},
      {"client id zero", [](auto* c) { c->mutable_clients(1)->set_id(0); },
       "clients[1].id"},
      {"duplicate client id", [](auto* c) { c->mutable_clients(1)->set_id(1); },
       "clients[1].id"},
      {"short client key",
       [](auto* c) { c->mutable_clients(0)->set_public_key("abc"); },
       "clients[0].public_key"},
      {"client key equals replica key",
       [](auto* c) {
         c->mutable_clients(0)->set_public_key(c->replicas(0).public_key());
       },
       "clients[0].public_key"},
      {"unspecified role",
       [](auto* c) {
         c->mutable_clients(1)->add_roles(ledger::v1::CLIENT_ROLE_UNSPECIFIED);
       },
       "clients[1].roles[0]"},
      {"issuer ledger zero",
       [](auto* c) { c->mutable_clients(0)->add_issuer_ledgers(0); },
       "clients[0].issuer_ledgers[1]"},
      {"genesis id zero",
       [](auto* c) {
         c->mutable_genesis_accounts(0)->mutable_id()->set_low(0);
       },
       "genesis_accounts[0].id"},
      {"duplicate genesis id",
       [](auto* c) {
         c->mutable_genesis_accounts(1)->mutable_id()->set_low(1);
       },
       "genesis_accounts[1].id"},
      {"genesis owner unknown",
       [](auto* c) { c->mutable_genesis_accounts(1)->set_owner_client_id(99); },
       "genesis_accounts[1].owner_client_id"},
      {"genesis ledger zero",
       [](auto* c) { c->mutable_genesis_accounts(0)->set_ledger(0); },
       "genesis_accounts[0].ledger"},
      {"genesis overflow",
       [](auto* c) { c->mutable_genesis_accounts(1)->set_balance(~0ull); },
       "genesis_accounts[1].balance"},
      {"window not multiple of K",
       [](auto* c) {
         c->mutable_protocol()->set_checkpoint_interval(10);
         c->mutable_protocol()->set_watermark_window(25);
       },
       "protocol.watermark_window"},
      {"window below 2K",
       [](auto* c) {
         c->mutable_protocol()->set_checkpoint_interval(10);
         c->mutable_protocol()->set_watermark_window(10);
       },
       "protocol.watermark_window"},
      {"batch bytes above message bytes",
       [](auto* c) {
         c->mutable_protocol()->set_batch_bytes_max(2000);
         c->mutable_protocol()->set_message_bytes_max(1000);
       },
       "protocol.batch_bytes_max"},
      {"admission wait over an hour",
       [](auto* c) { c->mutable_protocol()->set_admission_wait_ms(3'600'001); },
       "protocol.admission_wait_ms"},
      {"tls half configured",
       [](auto* c) { c->mutable_tls()->set_ca_file("ca.pem"); },
       "tls.cert_file"},
  };
  for (const BadCase& bc : cases) {
    ledger::v1::ClusterConfig c = ValidConfig();
    bc.mutate(&c);
    absl::StatusOr<Cluster> r = Cluster::FromProto(c, "cluster.json");
    ASSERT_FALSE(r.ok()) << bc.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bc.name;
    const std::string msg(r.status().message());
    EXPECT_EQ(msg.rfind("cluster.json: ", 0), 0u) << bc.name << ": " << msg;
    EXPECT_NE(msg.find(bc.field), std::string::npos)
        << bc.name << ": expected '" << bc.field << "' in: " << msg;
  }
}

TEST(ConfigTest, JsonRoundTripAndParseErrors) {
  test::TempDir dir;
  ledger::v1::ClusterConfig c = ValidConfig();
  std::string json = ClusterConfigToJson(c);
  absl::StatusOr<Cluster> back = Cluster::FromJson(json, "x.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->config().SerializeAsString(), c.SerializeAsString());

  absl::StatusOr<Cluster> bad =
      Cluster::FromJson("{\"replicaz\": []}", "x.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("x.json"), std::string::npos);
  EXPECT_NE(bad.status().message().find("replicaz"), std::string::npos)
      << bad.status();

  bad = Cluster::FromJson("{not json", "y.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("y.json"), std::string::npos);

  absl::StatusOr<Cluster> missing = Cluster::LoadFile(dir.file("none.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("none.json"), std::string::npos);
}

}  // namespace
}  // namespace pbft
