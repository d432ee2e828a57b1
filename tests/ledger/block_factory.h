// Test helper: a generated cluster with deterministic keys, and certified
// blocks built from it — client-signed requests, the primary's signed
// PRE-PREPARE, and 2f+1 signed COMMITs — exactly as the PBFT core hands them
// to the ledger. Header-only, no gtest dependency (exec-bench uses it too).
//
// Cluster: replicas 0..n-1 at 127.0.0.1:7000+i; clients 1..m; client c owns
// genesis account {high 0, low c} on ledger 1 with `genesis_balance`; client
// 1 is an issuer on ledgers 1 and 2. Keys come from fixed seeds, so two
// factories with the same options build identical clusters and blocks.
//
// Not thread-safe (request numbers and the next seq are counters).
#ifndef PBFT_LEDGER_TESTS_LEDGER_BLOCK_FACTORY_H_
#define PBFT_LEDGER_TESTS_LEDGER_BLOCK_FACTORY_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "ledger/v1/config.pb.h"
#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/ledger/ledger.h"

namespace pbft::test {

struct FactoryOptions {
  uint32_t replicas = 4;
  uint32_t clients = 3;
  uint64_t genesis_balance = 1'000'000;
  std::string cluster_id = "test-cluster";
  uint32_t request_operations_max = 0;  // 0: the default.
  uint32_t batch_requests_max = 0;      // 0: the default.
  uint8_t key_seed = 1;                 // Distinct seeds give distinct keys.
};

inline ledger::v1::Uint128 Id(uint64_t low, uint64_t high = 0) {
  ledger::v1::Uint128 id;
  id.set_high(high);
  id.set_low(low);
  return id;
}

inline ledger::v1::Operation TransferOp(const ledger::v1::Uint128& id,
                                        const ledger::v1::Uint128& debit,
                                        const ledger::v1::Uint128& credit,
                                        uint64_t amount, uint32_t ledger = 1,
                                        const std::string& memo = "") {
  ledger::v1::Operation op;
  ledger::v1::Transfer* t = op.mutable_transfer();
  *t->mutable_id() = id;
  *t->mutable_debit_account_id() = debit;
  *t->mutable_credit_account_id() = credit;
  t->set_amount(amount);
  t->set_ledger(ledger);
  t->set_memo(memo);
  return op;
}

inline ledger::v1::Operation CreateAccountOp(const ledger::v1::Uint128& id,
                                             uint32_t ledger = 1,
                                             uint32_t code = 0,
                                             uint64_t user_data = 0) {
  ledger::v1::Operation op;
  ledger::v1::CreateAccount* c = op.mutable_create_account();
  *c->mutable_id() = id;
  c->set_ledger(ledger);
  c->set_code(code);
  c->set_user_data(user_data);
  return op;
}

inline ledger::v1::Operation MintOp(const ledger::v1::Uint128& id,
                                    const ledger::v1::Uint128& account,
                                    uint64_t amount, uint32_t ledger = 1,
                                    const std::string& memo = "") {
  ledger::v1::Operation op;
  ledger::v1::Mint* m = op.mutable_mint();
  *m->mutable_id() = id;
  *m->mutable_account_id() = account;
  m->set_amount(amount);
  m->set_ledger(ledger);
  m->set_memo(memo);
  return op;
}

inline ledger::v1::OperationBatch Ops(std::vector<ledger::v1::Operation> ops) {
  ledger::v1::OperationBatch b;
  for (ledger::v1::Operation& op : ops) *b.add_operations() = std::move(op);
  return b;
}

class BlockFactory {
 public:
  explicit BlockFactory(FactoryOptions options = {})
      : options_(std::move(options)) {
    ledger::v1::ClusterConfig config;
    config.set_cluster_id(options_.cluster_id);
    config.set_f((options_.replicas - 1) / 3);
    for (uint32_t i = 0; i < options_.replicas; ++i) {
      crypto::SecretKey key = Key(0x10000 + i);
      ledger::v1::ReplicaConfig* r = config.add_replicas();
      r->set_id(i);
      r->set_address("127.0.0.1:" + std::to_string(7000 + i));
      r->set_public_key(key.public_key().ToBytes());
      replica_signers_.emplace_back(options_.cluster_id, i, key);
    }
    for (uint64_t c = 1; c <= options_.clients; ++c) {
      crypto::SecretKey key = Key(c);
      ledger::v1::ClientConfig* cl = config.add_clients();
      cl->set_id(c);
      cl->set_name("client-" + std::to_string(c));
      cl->set_public_key(key.public_key().ToBytes());
      if (c == 1) {
        cl->add_roles(ledger::v1::CLIENT_ROLE_ISSUER);
        cl->add_issuer_ledgers(1);
        cl->add_issuer_ledgers(2);
      }
      client_signers_.emplace(c, EnvelopeSigner(options_.cluster_id, c, key));
      ledger::v1::GenesisAccount* g = config.add_genesis_accounts();
      *g->mutable_id() = Id(c);
      g->set_owner_client_id(c);
      g->set_ledger(1);
      g->set_balance(options_.genesis_balance);
    }
    config.mutable_protocol()->set_request_operations_max(
        options_.request_operations_max);
    config.mutable_protocol()->set_batch_requests_max(
        options_.batch_requests_max);
    absl::StatusOr<Cluster> cluster = Cluster::FromProto(config, "factory");
    CHECK_OK(cluster.status());
    cluster_.push_back(std::move(*cluster));
  }

  const Cluster& cluster() const { return cluster_.front(); }
  const ledger::v1::ClusterConfig& config() const { return cluster().config(); }
  const EnvelopeSigner& replica(uint32_t i) const {
    return replica_signers_.at(i);
  }
  const EnvelopeSigner& client(uint64_t id) const {
    return client_signers_.at(id);
  }

  // A client-signed REQUEST with an explicit request number.
  pbft::v1::Envelope SignRequest(uint64_t client_id, uint64_t request_number,
                                 const ledger::v1::OperationBatch& ops) const {
    pbft::v1::Request r;
    r.set_client_id(client_id);
    r.set_request_number(request_number);
    r.set_operation(ops.SerializeAsString());
    return client(client_id).SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r);
  }
  // ... with the client's next request number (1, 2, ...).
  pbft::v1::Envelope Request(uint64_t client_id,
                             const ledger::v1::OperationBatch& ops) {
    return SignRequest(client_id, ++request_numbers_[client_id], ops);
  }

  // A committed batch at `seq`: PRE-PREPARE signed by the primary of `view`
  // (view mod n) with the batch beside it, COMMITs from `commits` distinct
  // replicas (0: quorum). `legacy`: the batch inside the signed header, as
  // earlier versions stored blocks.
  ledger::BlockInput MakeBlock(uint64_t seq,
                               std::vector<pbft::v1::Envelope> requests,
                               uint64_t view = 0, uint64_t timestamp_ms = 0,
                               uint32_t commits = 0,
                               bool legacy = false) const {
    if (timestamp_ms == 0) timestamp_ms = 1'700'000'000'000 + seq * 10;
    pbft::v1::PrePrepare pp;
    pp.set_view(view);
    pp.set_seq(seq);
    pp.set_timestamp_ms(timestamp_ms);
    google::protobuf::RepeatedPtrField<pbft::v1::Envelope> batch(
        requests.begin(), requests.end());
    const Digest digest = BatchDigest(batch);
    pp.set_batch_digest(digest.ToBytes());
    if (legacy) pp.mutable_legacy_requests()->Swap(&batch);
    ledger::BlockInput in;
    in.view = view;
    in.seq = seq;
    in.timestamp_ms = timestamp_ms;
    in.batch_digest = digest;
    in.pre_prepare = replica(static_cast<uint32_t>(view % options_.replicas))
                         .SignMessage(pbft::v1::MESSAGE_TYPE_PRE_PREPARE, pp);
    in.pre_prepare.mutable_batch()->Swap(&batch);
    const uint32_t count = commits == 0 ? cluster().quorum() : commits;
    for (uint32_t i = 0; i < count; ++i) {
      // Vary which replicas sign, as a real quorum would.
      const uint32_t id = static_cast<uint32_t>((seq + i) % options_.replicas);
      pbft::v1::Commit c;
      c.set_view(view);
      c.set_seq(seq);
      c.set_batch_digest(digest.ToBytes());
      c.set_replica_id(id);
      *in.certificate.add_commits() =
          replica(id).SignMessage(pbft::v1::MESSAGE_TYPE_COMMIT, c);
    }
    return in;
  }

  // The block after the last one NextBlock made (seq 1 first).
  ledger::BlockInput NextBlock(std::vector<pbft::v1::Envelope> requests,
                               uint64_t view = 0) {
    return MakeBlock(++seq_, std::move(requests), view);
  }
  uint64_t last_seq() const { return seq_; }

  // A signed REPLY from replica `i` for a request (receipts).
  pbft::v1::Envelope SignReply(uint32_t i, uint64_t view, uint64_t client_id,
                               uint64_t request_number,
                               const std::string& result) const {
    pbft::v1::Reply r;
    r.set_view(view);
    r.set_request_number(request_number);
    r.set_client_id(client_id);
    r.set_replica_id(i);
    r.set_result(result);
    return replica(i).SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, r);
  }
  const FactoryOptions& options() const { return options_; }
  // The keys behind replica(i) and client c's signer (fake servers).
  crypto::SecretKey replica_key(uint32_t i) const { return Key(0x10000 + i); }
  crypto::SecretKey client_key(uint64_t c) const { return Key(c); }

 private:
  crypto::SecretKey Key(uint64_t n) const {
    std::string seed(32, '\0');
    seed[0] = static_cast<char>(options_.key_seed);
    for (int i = 0; i < 8; ++i) seed[31 - i] = static_cast<char>(n >> (8 * i));
    absl::StatusOr<crypto::SecretKey> k = crypto::SecretKey::FromSeed(seed);
    CHECK_OK(k.status());
    return *k;
  }

  FactoryOptions options_;
  std::vector<Cluster> cluster_;  // One element; Cluster has no default.
  std::vector<EnvelopeSigner> replica_signers_;
  std::map<uint64_t, EnvelopeSigner> client_signers_;
  std::map<uint64_t, uint64_t> request_numbers_;
  uint64_t seq_ = 0;
};

}  // namespace pbft::test

#endif  // PBFT_LEDGER_TESTS_LEDGER_BLOCK_FACTORY_H_
