#include "replica/ledger/ledger.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/envelope.h"
#include "common/merkle.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "leveldb/cache.h"
#include "leveldb/db.h"
#include "leveldb/filter_policy.h"
#include "leveldb/write_batch.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger_internal.h"
#include "replica/ledger/parallel_expand.h"

namespace pbft::ledger {

using internal::AccountValue;
using internal::ClientValue;
using internal::HeadValue;
using internal::TransferKind;
using internal::TransferValue;
using internal::U128;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

absl::Status FromLevelDb(const leveldb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound())
    return absl::NotFoundError(absl::StrCat(what, ": not found"));
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  }
  if (s.IsInvalidArgument()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.ToString()));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", s.ToString()));
}

// Protobuf serialisation with deterministic map ordering; the result bytes
// reach the state digest and are matched byte for byte by clients.
template <typename Message>
std::string SerializeDeterministic(const Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    CHECK(m.SerializeToCodedStream(&cos));
  }
  return out;
}

leveldb::Slice Slice(absl::string_view s) { return {s.data(), s.size()}; }

leveldb::WriteOptions SyncWrite(bool sync) {
  leveldb::WriteOptions w;
  w.sync = sync;  // Explicit: LevelDB's default is false.
  return w;
}

v1::OperationResult Code(v1::ResultCode code) {
  v1::OperationResult r;
  r.set_code(code);
  return r;
}

v1::OperationResult Exists(v1::ResultCode original, uint64_t original_seq) {
  v1::OperationResult r;
  r.set_code(v1::RESULT_CODE_EXISTS);
  r.set_original_code(original);
  r.set_original_seq(original_seq);
  return r;
}

// Genesis is part of the identity of a ledger: a data directory belongs to
// one cluster id and one genesis.
std::string GenesisIdentity(const v1::ClusterConfig& c) {
  v1::ClusterConfig g;
  g.set_cluster_id(c.cluster_id());
  *g.mutable_genesis_accounts() = c.genesis_accounts();
  return SerializeDeterministic(g);
}

// A block answer: the block as every correct replica has it, and beside it
// how this replica saw it committed (clients match the first and verify the
// second: docs/api.md "Blocks").
void AnswerBlock(v1::Block block, v1::QueryReply* reply) {
  v1::BlockCommit* commit = reply->mutable_block_commit();
  commit->set_view(block.view());
  *commit->mutable_pre_prepare() = std::move(*block.mutable_pre_prepare());
  *commit->mutable_certificate() = std::move(*block.mutable_certificate());
  block.clear_view();
  block.clear_pre_prepare();
  block.clear_certificate();
  *reply->mutable_block() = std::move(block);
}

// The same for a receipt (view and certificate only).
void AnswerReceipt(v1::Receipt receipt, v1::QueryReply* reply) {
  v1::BlockCommit* commit = reply->mutable_block_commit();
  commit->set_view(receipt.view());
  *commit->mutable_certificate() = std::move(*receipt.mutable_certificate());
  receipt.clear_view();
  receipt.clear_certificate();
  *reply->mutable_receipt() = std::move(receipt);
}

// The format record `format` of the ledger at `path`: true if it is
// version 2 and may be migrated (ledgerd opens it), false if current, an
// error naming the version otherwise.
absl::StatusOr<bool> NeedsMigration(const std::string& path,
                                    const std::string& format, bool may_write) {
  if (format.size() != 4) {
    return absl::DataLossError(
        absl::StrCat(path, ": format record is not 4 bytes"));
  }
  const uint32_t version = internal::GetU32(format.data());
  if (version == internal::kFormatVersion) return false;
  if (version == 2 && may_write) return true;
  return absl::FailedPreconditionError(absl::StrCat(
      path, ": ledger format version ", version, ", this build reads version ",
      internal::kFormatVersion,
      version == 2 ? " (opened read-only: start ledgerd once to migrate it)"
      : version < 2
          ? " (too old to migrate: start the replica with an empty data "
            "directory, it refills by state transfer)"
          : " (written by a newer build)"));
}

}  // namespace

struct Ledger::CachedAccount {
  AccountValue value;
  std::unique_ptr<StateHash::Lanes> lanes;  // Expand(AccountKey(id), encoded).
};

// The overlay of one block's execution: every record the block reads is
// loaded once, changed in memory, and written (and hashed) once at Finish().
class Ledger::Execution {
 public:
  // `arena` holds the parsed requests; it outlives the execution.
  Execution(Ledger* ledger, uint64_t seq, uint64_t timestamp_ms,
            google::protobuf::Arena* arena)
      : ledger_(ledger), seq_(seq), timestamp_ms_(timestamp_ms), arena_(arena) {
    // Sized as the last block's: one workload's blocks are alike, and
    // growing the tables record by record rehashes them.
    accounts_.reserve(ledger_->last_block_records_);
    transfers_.reserve(ledger_->last_block_records_);
  }
  // Hands the expansions the cache did not take back to the ledger's pool.
  ~Execution();
  Execution(const Execution&) = delete;
  Execution& operator=(const Execution&) = delete;

  RequestOutcome ExecuteRequest(const pbft::v1::Envelope& envelope);

  // Builds the block's WriteBatch of state changes, updates `hash` with them
  // and returns the new transfer count.
  uint64_t Finish(leveldb::WriteBatch* batch, StateHash* hash);

  const absl::Status& io_status() const { return io_status_; }

  // After the block is durable: the dirty accounts enter the cache.
  void UpdateCache();

 private:
  struct AccountSlot {
    bool exists = false;   // Now.
    bool existed = false;  // Before the block.
    bool dirty = false;
    AccountValue value;
    // The cache entry of the account before the block (its encoding and
    // expansion), if the cache had it: the cache does not change until the
    // block is written.
    const CachedAccount* cached = nullptr;
    std::string original;  // Encoding before the block, if existed && !cached.
    // Set by Finish() for dirty slots.
    internal::KeyBuf key;
    char encoded[internal::kAccountBytes];
    std::unique_ptr<StateHash::Lanes> lanes;  // Expansion of `encoded`.
  };

  struct TransferSlot {
    bool exists = false;
    bool created = false;  // In this block.
    TransferValue value;
  };
  struct ClientSlot {
    bool existed = false;
    bool dirty = false;
    std::string original;
    ClientValue value;
  };
  struct SupplySlot {
    bool existed = false;
    bool dirty = false;
    uint64_t original = 0;
    uint64_t value = 0;
  };

  AccountSlot* LoadAccount(const U128& id);
  TransferSlot* LoadTransfer(const U128& id);
  ClientSlot* LoadClient(uint64_t client_id);
  SupplySlot* LoadSupply(uint32_t ledger);
  bool Get(absl::string_view key, std::string* value);

  v1::OperationResult CreateAccount(const v1::CreateAccount& op,
                                    uint64_t client_id,
                                    const crypto::PublicKey& signer);
  v1::OperationResult Transfer(const v1::Transfer& op, uint64_t client_id,
                               const crypto::PublicKey& signer);
  v1::OperationResult Mint(const v1::Mint& op, uint64_t client_id);
  // A transfer's or mint's id already taken: EXISTS with the first
  // outcome, or EXISTS_WITH_DIFFERENT_FIELDS; nullopt while the id is free.
  std::optional<v1::OperationResult> Existing(const U128& id,
                                              const TransferValue& t);
  // Records a transfer/mint outcome under its id; an OK one becomes the
  // newest history entry of `debit` (nullptr for a mint) and `credit`.
  void Record(const U128& id, TransferValue value, AccountSlot* debit = nullptr,
              AccountSlot* credit = nullptr);

  Ledger* ledger_;
  const uint64_t seq_;
  const uint64_t timestamp_ms_;
  google::protobuf::Arena* const arena_;
  absl::Status io_status_;
  uint64_t transfer_count_ = 0;  // Set from the ledger on first use.
  bool counted_ = false;

  // Look-ups only; Finish() sorts before anything reaches the batch or hash.
  // node_hash_map: a transfer holds pointers to two slots while loading.
  absl::node_hash_map<U128, AccountSlot> accounts_;
  absl::flat_hash_map<U128, TransferSlot> transfers_;
  absl::flat_hash_map<uint64_t, ClientSlot> clients_;
  absl::flat_hash_map<uint32_t, SupplySlot> supply_;
};

Ledger::Execution::~Execution() {
  ledger_->last_block_records_ =
      std::min(std::max(accounts_.size(), transfers_.size()), kRecordsHintMax);
  for (auto& [id, slot] : accounts_) {
    ledger_->ReturnLanes(std::move(slot.lanes));
  }
}

bool Ledger::Execution::Get(absl::string_view key, std::string* value) {
  leveldb::Status s = ledger_->db_->Get(
      leveldb::ReadOptions(), leveldb::Slice(key.data(), key.size()), value);
  if (s.ok()) return true;
  if (!s.IsNotFound() && io_status_.ok()) {
    io_status_ = FromLevelDb(s, "ledger read");
  }
  return false;
}

Ledger::Execution::AccountSlot* Ledger::Execution::LoadAccount(const U128& id) {
  auto [it, inserted] = accounts_.try_emplace(id);
  AccountSlot& slot = it->second;
  if (inserted) {
    auto cached = ledger_->account_cache_.find({id.high, id.low});
    if (cached != ledger_->account_cache_.end()) {
      slot.exists = slot.existed = true;
      slot.value = cached->second->value;
      slot.cached = cached->second.get();
      return &slot;
    }
    std::string bytes;
    if (Get(internal::KeyBuf::Account(id).view(), &bytes)) {
      absl::StatusOr<AccountValue> a = internal::DecodeAccount(bytes);
      if (a.ok()) {
        slot.exists = slot.existed = true;
        slot.original = std::move(bytes);
        slot.value = *a;
      } else if (io_status_.ok()) {
        io_status_ = a.status();
      }
    }
  }
  return slot.exists ? &slot : nullptr;
}

Ledger::Execution::TransferSlot* Ledger::Execution::LoadTransfer(
    const U128& id) {
  auto [it, inserted] = transfers_.try_emplace(id);
  TransferSlot& slot = it->second;
  if (inserted) {
    std::string bytes;
    if (Get(internal::KeyBuf::Transfer(id).view(), &bytes)) {
      absl::StatusOr<TransferValue> t = internal::DecodeTransfer(bytes);
      if (t.ok()) {
        slot.exists = true;
        slot.value = std::move(*t);
      } else if (io_status_.ok()) {
        io_status_ = t.status();
      }
    }
  }
  return slot.exists ? &slot : nullptr;
}

Ledger::Execution::ClientSlot* Ledger::Execution::LoadClient(
    uint64_t client_id) {
  auto [it, inserted] = clients_.try_emplace(client_id);
  ClientSlot& slot = it->second;
  if (inserted) {
    std::string bytes;
    if (Get(internal::ClientKey(client_id), &bytes)) {
      absl::StatusOr<ClientValue> c = internal::DecodeClient(bytes);
      if (c.ok()) {
        slot.existed = true;
        slot.original = std::move(bytes);
        slot.value = std::move(*c);
      } else if (io_status_.ok()) {
        io_status_ = c.status();
      }
    }
  }
  return &slot;
}

Ledger::Execution::SupplySlot* Ledger::Execution::LoadSupply(uint32_t ledger) {
  auto [it, inserted] = supply_.try_emplace(ledger);
  SupplySlot& slot = it->second;
  if (inserted) {
    std::string bytes;
    if (Get(internal::SupplyKey(ledger), &bytes)) {
      if (bytes.size() == 8) {
        slot.existed = true;
        slot.original = slot.value = internal::GetU64(bytes.data());
      } else if (io_status_.ok()) {
        io_status_ = absl::DataLossError("supply record is corrupt: length");
      }
    }
  }
  return &slot;
}

RequestOutcome Ledger::Execution::ExecuteRequest(
    const pbft::v1::Envelope& envelope) {
  RequestOutcome out;
  out.client_id = envelope.sender();
  // The request's messages live on the block's arena: one OperationBatch
  // of 100 transfers is ~400 small messages, freed at once with the block.
  v1::OperationResults& results =
      *google::protobuf::Arena::CreateMessage<v1::OperationResults>(arena_);
  results.set_seq(seq_);
  results.set_timestamp_ms(timestamp_ms_);

  pbft::v1::Request& request =
      *google::protobuf::Arena::CreateMessage<pbft::v1::Request>(arena_);
  const bool parsed = envelope.type() == pbft::v1::MESSAGE_TYPE_REQUEST &&
                      request.ParseFromString(envelope.payload());
  auto signer = ledger_->client_keys_.find(envelope.sender());
  if (!parsed || request.client_id() != envelope.sender() ||
      signer == ledger_->client_keys_.end() || request.read_only()) {
    // Not attributable to a client's request sequence (the core should never
    // order it): answered, but the last-reply table is left alone.
    out.request_number = parsed ? request.request_number() : 0;
    *results.add_results() = Code(v1::RESULT_CODE_MALFORMED_BATCH);
    out.result = SerializeDeterministic(results);
    return out;
  }
  out.request_number = request.request_number();

  // Exactly-once (§4.1): a request number at or below the client's last
  // executed one is not executed again.
  ClientSlot* client = LoadClient(request.client_id());
  if (request.request_number() <= client->value.request_number) {
    out.duplicate = true;
    if (request.request_number() == client->value.request_number) {
      out.result = client->value.result;
    }
    return out;
  }

  v1::OperationBatch& batch =
      *google::protobuf::Arena::CreateMessage<v1::OperationBatch>(arena_);
  if (!batch.ParseFromString(request.operation())) {
    *results.add_results() = Code(v1::RESULT_CODE_MALFORMED_BATCH);
  } else if (static_cast<uint64_t>(batch.operations_size()) >
             ledger_->cluster_.protocol().request_operations_max) {
    // Refused as a whole: nothing in it executes.
    *results.add_results() = Code(v1::RESULT_CODE_TOO_MANY_OPERATIONS);
  } else {
    const uint64_t client_id = request.client_id();
    const crypto::PublicKey& key = signer->second;
    for (const v1::Operation& op : batch.operations()) {
      switch (op.kind_case()) {
        case v1::Operation::kCreateAccount:
          *results.add_results() =
              CreateAccount(op.create_account(), client_id, key);
          break;
        case v1::Operation::kTransfer:
          *results.add_results() = Transfer(op.transfer(), client_id, key);
          break;
        case v1::Operation::kMint:
          *results.add_results() = Mint(op.mint(), client_id);
          break;
        case v1::Operation::kQuery:
          // Answered by the shell from the state after this block.
          *results.add_results() = Code(v1::RESULT_CODE_OK);
          out.has_query = true;
          break;
        case v1::Operation::KIND_NOT_SET:
          *results.add_results() = Code(v1::RESULT_CODE_OPERATION_EMPTY);
          break;
      }
    }
  }
  out.result = SerializeDeterministic(results);
  client->value.request_number = request.request_number();
  client->value.result = out.result;
  client->dirty = true;
  return out;
}

v1::OperationResult Ledger::Execution::CreateAccount(
    const v1::CreateAccount& op, uint64_t client_id,
    const crypto::PublicKey& signer) {
  const U128 id = internal::FromProto(op.id());
  if (id.IsZero()) return Code(v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO);
  if (op.ledger() == 0) return Code(v1::RESULT_CODE_LEDGER_MUST_NOT_BE_ZERO);
  if (AccountSlot* existing = LoadAccount(id)) {
    const AccountValue& a = existing->value;
    const bool same = a.owner_key == signer && a.ledger == op.ledger() &&
                      a.code == op.code() && a.user_data == op.user_data();
    if (!same) return Code(v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
    return Exists(v1::RESULT_CODE_OK, a.created_seq);
  }
  AccountSlot& slot = accounts_[id];
  slot.exists = true;
  slot.dirty = true;
  slot.value = AccountValue{};
  slot.value.owner_client_id = client_id;
  slot.value.owner_key = signer;
  slot.value.ledger = op.ledger();
  slot.value.code = op.code();
  slot.value.user_data = op.user_data();
  slot.value.created_seq = seq_;
  slot.value.created_timestamp_ms = timestamp_ms_;
  return Code(v1::RESULT_CODE_OK);
}

std::optional<v1::OperationResult> Ledger::Execution::Existing(
    const U128& id, const TransferValue& t) {
  TransferSlot* existing = LoadTransfer(id);
  if (existing == nullptr) return std::nullopt;
  if (!existing->value.SameFields(t)) {
    return Code(v1::RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS);
  }
  return Exists(existing->value.result, existing->value.seq);
}

void Ledger::Execution::Record(const U128& id, TransferValue value,
                               AccountSlot* debit, AccountSlot* credit) {
  value.seq = seq_;
  value.timestamp_ms = timestamp_ms_;
  if (value.result == v1::RESULT_CODE_OK) {
    if (!counted_) {
      transfer_count_ = ledger_->transfer_count_;
      counted_ = true;
    }
    value.transfer_number = ++transfer_count_;
    // Push onto both accounts' history lists (their slots are dirty: the
    // balances changed).
    if (debit != nullptr) {
      value.debit_previous = debit->value.history_head;
      debit->value.history_head = id;
    }
    CHECK(credit != nullptr);
    value.credit_previous = credit->value.history_head;
    credit->value.history_head = id;
  }
  TransferSlot& slot = transfers_[id];
  slot.exists = true;
  slot.created = true;
  slot.value = std::move(value);
}

v1::OperationResult Ledger::Execution::Transfer(
    const v1::Transfer& op, uint64_t client_id,
    const crypto::PublicKey& signer) {
  // Static checks: nothing is recorded, the id stays free.
  const U128 id = internal::FromProto(op.id());
  const U128 debit_id = internal::FromProto(op.debit_account_id());
  const U128 credit_id = internal::FromProto(op.credit_account_id());
  if (id.IsZero()) return Code(v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO);
  if (debit_id == credit_id) {
    return Code(v1::RESULT_CODE_ACCOUNTS_MUST_BE_DIFFERENT);
  }
  const v1::ResultCode fields =
      internal::CheckMovementFields(id, op.amount(), op.ledger(), op.memo());
  if (fields != v1::RESULT_CODE_OK) return Code(fields);

  TransferValue t;
  t.kind = TransferKind::kTransfer;
  t.debit = debit_id;
  t.credit = credit_id;
  t.amount = op.amount();
  t.ledger = op.ledger();
  t.memo = op.memo();
  t.client_id = client_id;

  if (auto existing = Existing(id, t)) return *existing;

  AccountSlot* debit = LoadAccount(debit_id);
  if (debit == nullptr) {
    t.result = v1::RESULT_CODE_DEBIT_ACCOUNT_NOT_FOUND;
    Record(id, std::move(t));
    return Code(v1::RESULT_CODE_DEBIT_ACCOUNT_NOT_FOUND);
  }
  // Authorization failures are not recorded: a stranger cannot burn an
  // owner's transfer id by failing with it.
  if (!(debit->value.owner_key == signer)) {
    return Code(v1::RESULT_CODE_NOT_OWNER);
  }
  AccountSlot* credit = LoadAccount(credit_id);
  v1::ResultCode code = v1::RESULT_CODE_OK;
  if (credit == nullptr) {
    code = v1::RESULT_CODE_CREDIT_ACCOUNT_NOT_FOUND;
  } else if (debit->value.ledger != op.ledger() ||
             credit->value.ledger != op.ledger()) {
    code = v1::RESULT_CODE_LEDGER_MISMATCH;
  } else if (debit->value.balance < op.amount()) {
    code = v1::RESULT_CODE_INSUFFICIENT_FUNDS;
  } else if (debit->value.debits_posted > kU64Max - op.amount() ||
             credit->value.credits_posted > kU64Max - op.amount() ||
             credit->value.balance > kU64Max - op.amount()) {
    code = v1::RESULT_CODE_OVERFLOW;
  }
  if (code == v1::RESULT_CODE_OK) {
    debit->value.balance -= op.amount();
    debit->value.debits_posted += op.amount();
    debit->dirty = true;
    credit->value.balance += op.amount();
    credit->value.credits_posted += op.amount();
    credit->dirty = true;
  }
  t.result = code;
  Record(id, std::move(t), debit, credit);
  return Code(code);
}

v1::OperationResult Ledger::Execution::Mint(const v1::Mint& op,
                                            uint64_t client_id) {
  const U128 id = internal::FromProto(op.id());
  const U128 account_id = internal::FromProto(op.account_id());
  const v1::ResultCode fields =
      internal::CheckMovementFields(id, op.amount(), op.ledger(), op.memo());
  if (fields != v1::RESULT_CODE_OK) return Code(fields);
  if (!ledger_->cluster_.IsIssuer(client_id, op.ledger())) {
    return Code(v1::RESULT_CODE_NOT_ISSUER);
  }

  TransferValue t;
  t.kind = TransferKind::kMint;
  t.credit = account_id;
  t.amount = op.amount();
  t.ledger = op.ledger();
  t.memo = op.memo();
  t.client_id = client_id;
  if (auto existing = Existing(id, t)) return *existing;

  AccountSlot* account = LoadAccount(account_id);
  SupplySlot* supply = LoadSupply(op.ledger());
  v1::ResultCode code = v1::RESULT_CODE_OK;
  if (account == nullptr) {
    code = v1::RESULT_CODE_ACCOUNT_NOT_FOUND;
  } else if (account->value.ledger != op.ledger()) {
    code = v1::RESULT_CODE_LEDGER_MISMATCH;
  } else if (supply->value > kU64Max - op.amount() ||
             account->value.credits_posted > kU64Max - op.amount() ||
             account->value.balance > kU64Max - op.amount()) {
    // The ledger's total supply fits 64 bits, so no balance ever overflows
    // through transfers.
    code = v1::RESULT_CODE_OVERFLOW;
  }
  if (code == v1::RESULT_CODE_OK) {
    account->value.balance += op.amount();
    account->value.credits_posted += op.amount();
    account->dirty = true;
    supply->value += op.amount();
    supply->dirty = true;
  }
  t.result = code;
  Record(id, std::move(t), nullptr, account);
  return Code(code);
}

uint64_t Ledger::Execution::Finish(leveldb::WriteBatch* batch,
                                   StateHash* hash) {
  // Sorted, so the batch is the same on every replica (the hash is
  // order-independent anyway).
  std::vector<std::pair<const U128, AccountSlot>*> accounts;
  for (auto& entry : accounts_) {
    if (entry.second.dirty) accounts.push_back(&entry);
  }
  std::sort(accounts.begin(), accounts.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  // The accounts' state-hash updates (the old element out, the new one in:
  // an expansion of ~1.5 us each, the largest cost of the digest, unless the
  // cache kept the old one) go to the expander, whose helper thread starts
  // on them while this thread builds the batch and hashes the other records.
  using Job = internal::ParallelExpander::Job;
  std::vector<Job> jobs;
  jobs.reserve(2 * accounts.size());
  for (auto* entry : accounts) {
    AccountSlot& slot = entry->second;
    slot.key = internal::KeyBuf::Account(entry->first);
    internal::EncodeAccountTo(slot.value, slot.encoded);
    slot.lanes = ledger_->TakeLanes();
    Job add;
    add.key = slot.key.view();
    add.value = absl::string_view(slot.encoded, sizeof slot.encoded);
    add.out = slot.lanes.get();  // Kept: the cache's copy after the block.
    jobs.push_back(add);
    if (!slot.existed) continue;
    Job remove;
    remove.remove = true;
    if (slot.cached != nullptr) {
      remove.expanded = slot.cached->lanes.get();
    } else {
      remove.key = slot.key.view();
      remove.value = slot.original;
    }
    jobs.push_back(remove);
  }
  internal::ParallelExpander& expander = *ledger_->expander_;
  expander.Start(&jobs);
  for (auto* entry : accounts) {
    const AccountSlot& slot = entry->second;
    batch->Put(Slice(slot.key.view()),
               leveldb::Slice(slot.encoded, sizeof slot.encoded));
  }

  std::vector<const std::pair<const U128, TransferSlot>*> transfers;
  for (const auto& entry : transfers_) {
    if (entry.second.created) transfers.push_back(&entry);
  }
  std::sort(transfers.begin(), transfers.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  internal::TransferGroupHasher group;
  for (const auto* entry : transfers) {
    const internal::KeyBuf key = internal::KeyBuf::Transfer(entry->first);
    const std::string value = internal::EncodeTransfer(entry->second.value);
    group.Add(key.view(), value);
    batch->Put(Slice(key.view()), value);
  }
  if (!group.empty()) {
    hash->Add(internal::TransferGroupKey(seq_), group.Finish().view());
  }

  std::vector<const std::pair<const uint64_t, ClientSlot>*> clients;
  for (const auto& entry : clients_) {
    if (entry.second.dirty) clients.push_back(&entry);
  }
  std::sort(clients.begin(), clients.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* entry : clients) {
    const std::string key = internal::ClientKey(entry->first);
    const std::string value = internal::EncodeClient(entry->second.value);
    if (entry->second.existed) hash->Remove(key, entry->second.original);
    hash->Add(key, value);
    batch->Put(key, value);
  }

  std::vector<const std::pair<const uint32_t, SupplySlot>*> supplies;
  for (const auto& entry : supply_) {
    if (entry.second.dirty) supplies.push_back(&entry);
  }
  std::sort(supplies.begin(), supplies.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* entry : supplies) {
    const std::string key = internal::SupplyKey(entry->first);
    std::string value;
    internal::PutU64(&value, entry->second.value);
    if (entry->second.existed) {
      std::string original;
      internal::PutU64(&original, entry->second.original);
      hash->Remove(key, original);
    }
    hash->Add(key, value);
    batch->Put(key, value);
  }

  expander.Finish(hash);
  return counted_ ? transfer_count_ : ledger_->transfer_count_;
}

void Ledger::Execution::UpdateCache() {
  auto& cache = ledger_->account_cache_;
  for (auto& [id, slot] : accounts_) {
    if (!slot.dirty) continue;
    if (cache.size() >= kAccountCacheMax) cache.clear();  // Bounded.
    auto& entry = cache[{id.high, id.low}];
    if (entry == nullptr) entry = std::make_unique<CachedAccount>();
    entry->value = slot.value;
    // The displaced expansion goes back to the pool with the slot's.
    std::swap(entry->lanes, slot.lanes);
  }
}

std::unique_ptr<StateHash::Lanes> Ledger::TakeLanes() {
  if (spare_lanes_.empty()) return std::make_unique<StateHash::Lanes>();
  std::unique_ptr<StateHash::Lanes> lanes = std::move(spare_lanes_.back());
  spare_lanes_.pop_back();
  return lanes;
}

void Ledger::ReturnLanes(std::unique_ptr<StateHash::Lanes> lanes) {
  if (lanes != nullptr && spare_lanes_.size() < kSpareLanesMax) {
    spare_lanes_.push_back(std::move(lanes));
  }
}

// ---------------------------------------------------------------------------

Ledger::Ledger(Cluster cluster,
               std::unique_ptr<const leveldb::FilterPolicy> filter,
               std::unique_ptr<leveldb::Cache> cache,
               std::unique_ptr<leveldb::DB> db, const LedgerOptions& options)
    : cluster_(std::move(cluster)),
      filter_(std::move(filter)),
      cache_(std::move(cache)),
      db_(std::move(db)),
      options_(options),
      write_batch_(std::make_unique<leveldb::WriteBatch>()),
      expander_(std::make_unique<internal::ParallelExpander>(
          options.parallel_state_hash)) {
  for (const v1::ClientConfig& c : cluster_.config().clients()) {
    absl::StatusOr<crypto::PublicKey> k =
        crypto::PublicKey::FromBytes(c.public_key());
    CHECK(k.ok());  // Cluster validated it.
    client_keys_[c.id()] = *k;
  }
}

Ledger::~Ledger() = default;

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(
    const Cluster& cluster, const std::string& path,
    const LedgerOptions& options) {
  return OpenImpl(&cluster, path, options);
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::OpenExisting(
    const std::string& path, const LedgerOptions& options) {
  LedgerOptions o = options;
  o.create_if_missing = false;
  return OpenImpl(nullptr, path, o);
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::OpenImpl(
    const Cluster* cluster, const std::string& path,
    const LedgerOptions& options) {
  std::unique_ptr<const leveldb::FilterPolicy> filter(
      leveldb::NewBloomFilterPolicy(10));
  std::unique_ptr<leveldb::Cache> cache(
      leveldb::NewLRUCache(options.block_cache_bytes));
  leveldb::Options lo;
  lo.env = internal::EnvOrDefault(options.env);
  lo.create_if_missing = options.create_if_missing && cluster != nullptr;
  lo.filter_policy = filter.get();
  lo.block_cache = cache.get();
  lo.write_buffer_size = options.write_buffer_bytes;
  lo.paranoid_checks = options.paranoid_checks;
  leveldb::DB* raw = nullptr;
  leveldb::Status s = leveldb::DB::Open(lo, path, &raw);
  if (!s.ok()) {
    return FromLevelDb(s, absl::StrCat(path, ": cannot open the ledger"));
  }
  std::unique_ptr<leveldb::DB> db(raw);

  leveldb::ReadOptions ro;
  ro.verify_checksums = options.paranoid_checks;
  std::string format;
  s = db->Get(ro, std::string(internal::kMetaFormat), &format);
  if (s.IsNotFound()) {
    if (cluster == nullptr || !options.create_if_missing) {
      return absl::NotFoundError(absl::StrCat(
          path, ": holds no ledger (no ", internal::kMetaFormat, " record)"));
    }
    std::unique_ptr<Ledger> ledger(new Ledger(
        *cluster, std::move(filter), std::move(cache), std::move(db), options));
    absl::Status g = ledger->WriteGenesis();
    if (!g.ok()) return g;
    absl::Status h = ledger->LoadHead();
    if (!h.ok()) return h;
    return ledger;
  }
  if (!s.ok()) return FromLevelDb(s, absl::StrCat(path, ": format record"));
  absl::StatusOr<bool> migrate =
      NeedsMigration(path, format, options.create_if_missing);
  if (!migrate.ok()) return migrate.status();
  std::string config_bytes;
  s = db->Get(ro, std::string(internal::kMetaConfig), &config_bytes);
  if (!s.ok()) return FromLevelDb(s, absl::StrCat(path, ": stored config"));
  v1::ClusterConfig stored;
  if (!stored.ParseFromString(config_bytes)) {
    return absl::DataLossError(
        absl::StrCat(path, ": stored cluster config does not parse"));
  }
  absl::StatusOr<Cluster> stored_cluster =
      Cluster::FromProto(stored, absl::StrCat(path, " (stored config)"));
  if (!stored_cluster.ok()) return stored_cluster.status();
  if (cluster != nullptr &&
      GenesisIdentity(cluster->config()) != GenesisIdentity(stored)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": the ledger was created for cluster '", stored.cluster_id(),
        "' with another genesis; config names cluster '", cluster->cluster_id(),
        "'"));
  }
  if (*migrate) {
    // Format 2 hashed the committing view into block headers; rewrite the
    // chain once (docs/storage_format.md "Versions").
    absl::Status m = internal::MigrateFormat2To3(db.get(), options.sync);
    if (!m.ok()) return m;
  }
  std::unique_ptr<Ledger> ledger(
      new Ledger(cluster != nullptr ? *cluster : *stored_cluster,
                 std::move(filter), std::move(cache), std::move(db), options));
  absl::Status h = ledger->LoadHead();
  if (!h.ok()) return h;
  return ledger;
}

absl::Status Ledger::WriteGenesis() {
  leveldb::WriteBatch batch;
  StateHash hash;
  absl::flat_hash_map<uint32_t, uint64_t> supply;
  std::vector<uint32_t> ledgers;  // In first-seen order, then sorted.
  for (const v1::GenesisAccount& g : cluster_.config().genesis_accounts()) {
    AccountValue a;
    a.owner_client_id = g.owner_client_id();
    auto key = client_keys_.find(g.owner_client_id());
    CHECK(key != client_keys_.end());  // Cluster validated it.
    a.owner_key = key->second;
    a.ledger = g.ledger();
    a.code = g.code();
    a.balance = g.balance();
    a.credits_posted = g.balance();
    const std::string k = internal::AccountKey(internal::FromProto(g.id()));
    const std::string v = internal::EncodeAccount(a);
    hash.Add(k, v);
    batch.Put(k, v);
    if (supply.find(g.ledger()) == supply.end()) ledgers.push_back(g.ledger());
    supply[g.ledger()] += g.balance();  // Cluster checked for overflow.
  }
  std::sort(ledgers.begin(), ledgers.end());
  for (uint32_t l : ledgers) {
    std::string v;
    internal::PutU64(&v, supply[l]);
    hash.Add(internal::SupplyKey(l), v);
    batch.Put(internal::SupplyKey(l), v);
  }
  HeadValue head;
  head.state_digest = hash.ToDigest();
  head.state_hash = hash.Serialize();
  batch.Put(std::string(internal::kMetaHead), internal::EncodeHead(head));
  batch.Put(std::string(internal::kMetaGenesis), head.state_digest.ToBytes());
  batch.Put(std::string(internal::kMetaConfig),
            SerializeDeterministic(cluster_.config()));
  std::string format;
  internal::PutU32(&format, internal::kFormatVersion);
  // The format record goes last in the same atomic batch: its presence
  // means genesis is complete.
  batch.Put(std::string(internal::kMetaFormat), format);
  return FromLevelDb(db_->Write(SyncWrite(options_.sync), &batch),
                     "ledger genesis write");
}

absl::Status Ledger::LoadHead() {
  leveldb::ReadOptions ro;
  ro.verify_checksums = options_.paranoid_checks;
  std::string bytes;
  absl::Status s = FromLevelDb(
      db_->Get(ro, std::string(internal::kMetaHead), &bytes), "chain head");
  if (!s.ok()) return s;
  absl::StatusOr<HeadValue> head = internal::DecodeHead(bytes);
  if (!head.ok()) return head.status();
  absl::StatusOr<StateHash> hash = StateHash::Parse(head->state_hash);
  if (!hash.ok()) return hash.status();
  if (hash->ToDigest() != head->state_digest) {
    return absl::DataLossError(
        "chain head: state hash does not match the state digest");
  }
  std::string genesis;
  s = FromLevelDb(db_->Get(ro, std::string(internal::kMetaGenesis), &genesis),
                  "genesis digest");
  if (!s.ok()) return s;
  absl::StatusOr<Digest> g = Digest::FromBytes(genesis);
  if (!g.ok()) return absl::DataLossError("genesis digest: wrong length");
  absl::MutexLock lock(&mu_);
  height_ = head->height;
  block_hash_ = head->block_hash;
  state_digest_ = head->state_digest;
  genesis_digest_ = *g;
  state_hash_ = *hash;
  transfer_count_ = head->transfer_count;
  return absl::OkStatus();
}

absl::StatusOr<BlockResult> Ledger::ApplyBlock(const BlockInput& input) {
  if (broken_) {
    return absl::FailedPreconditionError(
        "ledger: an earlier block write failed; reopen the ledger");
  }
  uint64_t height;
  Digest previous_hash;
  {
    absl::MutexLock lock(&mu_);
    height = height_;
    previous_hash = block_hash_;
  }
  if (input.seq != height + 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger: block seq ", input.seq,
                     " is not the next one (last executed ", height, ")"));
  }
  // The block's parsed messages live on one arena, freed with the block.
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = 64 << 10;
  arena_options.max_block_size = 256 << 10;
  google::protobuf::Arena arena(arena_options);
  pbft::v1::PrePrepare& pp =
      *google::protobuf::Arena::CreateMessage<pbft::v1::PrePrepare>(&arena);
  if (input.pre_prepare.type() != pbft::v1::MESSAGE_TYPE_PRE_PREPARE ||
      !pp.ParseFromString(input.pre_prepare.payload())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", input.seq, ": pre_prepare is not a PRE-PREPARE"));
  }
  if (pp.view() != input.view || pp.seq() != input.seq ||
      pp.timestamp_ms() != input.timestamp_ms ||
      pp.batch_digest() != input.batch_digest.view()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", input.seq,
        ": pre_prepare view/seq/timestamp/batch_digest do not match the "
        "block input"));
  }
  const auto& requests = BatchOf(input.pre_prepare, pp);
  if (static_cast<uint64_t>(requests.size()) >
      cluster_.protocol().batch_requests_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", input.seq, ": ", requests.size(),
                     " requests exceed batch_requests_max"));
  }
  const Digest requests_root = RequestsRoot(requests);
  if (BatchDigestFromRoot(static_cast<uint32_t>(requests.size()),
                          requests_root) != input.batch_digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block ", input.seq, ": batch_digest does not match the requests"));
  }

  BlockResult result;
  result.seq = input.seq;
  v1::Block block;
  Execution execution(this, input.seq, input.timestamp_ms, &arena);
  for (const pbft::v1::Envelope& request : requests) {
    result.outcomes.push_back(execution.ExecuteRequest(request));
    block.add_results(result.outcomes.back().result);
  }
  if (!execution.io_status().ok()) {
    broken_ = true;
    return execution.io_status();
  }

  // Reused: its buffer keeps its capacity (hundreds of KB per block).
  leveldb::WriteBatch& batch = *write_batch_;
  batch.Clear();
  StateHash hash = state_hash_;
  const uint64_t transfer_count = execution.Finish(&batch, &hash);
  result.state_digest = hash.ToDigest();

  v1::BlockHeader* header = block.mutable_header();
  header->set_height(input.seq);
  header->set_previous_hash(previous_hash.ToBytes());
  header->set_requests_root(requests_root.ToBytes());
  header->set_batch_digest(input.batch_digest.ToBytes());
  header->set_results_root(ResultsRoot(block.results()).ToBytes());
  header->set_state_digest(result.state_digest.ToBytes());
  header->set_timestamp_ms(input.timestamp_ms);
  result.block_hash = BlockHash(*header);
  // Beside the header, not hashed: replicas may commit the batch in
  // different views with different certificates.
  block.set_view(input.view);
  *block.mutable_certificate() = input.certificate;
  *block.mutable_pre_prepare() = input.pre_prepare;
  batch.Put(internal::BlockKey(input.seq), SerializeDeterministic(block));

  HeadValue head;
  head.height = input.seq;
  head.block_hash = result.block_hash;
  head.state_digest = result.state_digest;
  head.transfer_count = transfer_count;
  head.state_hash = hash.Serialize();
  batch.Put(std::string(internal::kMetaHead), internal::EncodeHead(head));

  // The one durable step: state, block, client table and head together.
  leveldb::Status s = db_->Write(SyncWrite(options_.sync), &batch);
  if (!s.ok()) {
    broken_ = true;
    account_cache_.clear();
    return FromLevelDb(s, absl::StrCat("block ", input.seq, " write"));
  }
  execution.UpdateCache();
  state_hash_ = hash;
  transfer_count_ = transfer_count;
  absl::MutexLock lock(&mu_);
  height_ = input.seq;
  block_hash_ = result.block_hash;
  state_digest_ = result.state_digest;
  return result;
}

size_t Ledger::TEST_helper_expansions() const {
  return expander_->helper_jobs();
}

uint64_t Ledger::last_executed() const {
  absl::MutexLock lock(&mu_);
  return height_;
}

v1::ChainHead Ledger::head() const {
  absl::MutexLock lock(&mu_);
  v1::ChainHead h;
  h.set_height(height_);
  h.set_block_hash(block_hash_.ToBytes());
  h.set_state_digest(state_digest_.ToBytes());
  return h;
}

Digest Ledger::state_digest() const {
  absl::MutexLock lock(&mu_);
  return state_digest_;
}

Digest Ledger::genesis_state_digest() const {
  absl::MutexLock lock(&mu_);
  return genesis_digest_;
}

absl::StatusOr<v1::Account> Ledger::GetAccount(const v1::Uint128& id) const {
  const U128 key = internal::FromProto(id);
  std::string bytes;
  leveldb::Status s =
      db_->Get(leveldb::ReadOptions(), internal::AccountKey(key), &bytes);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("account ", key.high, ":", key.low, " not found"));
  }
  if (!s.ok()) return FromLevelDb(s, "account read");
  absl::StatusOr<AccountValue> a = internal::DecodeAccount(bytes);
  if (!a.ok()) return a.status();
  return internal::AccountToProto(key, *a);
}

absl::StatusOr<v1::TransferRecord> Ledger::GetTransfer(
    const v1::Uint128& id) const {
  const U128 key = internal::FromProto(id);
  std::string bytes;
  leveldb::Status s =
      db_->Get(leveldb::ReadOptions(), internal::TransferKey(key), &bytes);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("transfer ", key.high, ":", key.low, " not found"));
  }
  if (!s.ok()) return FromLevelDb(s, "transfer read");
  absl::StatusOr<TransferValue> t = internal::DecodeTransfer(bytes);
  if (!t.ok()) return t.status();
  return internal::TransferToProto(key, *t);
}

absl::StatusOr<v1::HistoryPage> Ledger::GetHistory(
    const v1::Uint128& account_id, uint32_t limit,
    const v1::Uint128& cursor) const {
  if (limit == 0) limit = kHistoryLimitDefault;
  if (limit > kHistoryLimitMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("history: limit ", limit, " exceeds ", kHistoryLimitMax));
  }
  const U128 account = internal::FromProto(account_id);
  const std::string account_name =
      absl::StrCat("account ", account.high, ":", account.low);
  // One snapshot: the page shows the ledger before or after a block.
  leveldb::ReadOptions ro;
  ro.snapshot = db_->GetSnapshot();
  absl::Cleanup release = [&] { db_->ReleaseSnapshot(ro.snapshot); };
  auto read = [&](const std::string& key, absl::string_view what,
                  std::string* bytes) -> absl::Status {
    leveldb::Status s = db_->Get(ro, key, bytes);
    if (s.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat(what, " not found"));
    }
    return FromLevelDb(s, what);
  };
  // The transfer `id` of this account's history, and the id of the entry
  // after it (older; zero at the end).
  auto entry = [&](const U128& id, absl::string_view what,
                   TransferValue* t) -> absl::StatusOr<U128> {
    std::string bytes;
    absl::Status s = read(internal::TransferKey(id), what, &bytes);
    if (!s.ok()) return s;
    absl::StatusOr<TransferValue> v = internal::DecodeTransfer(bytes);
    if (!v.ok()) return v.status();
    *t = std::move(*v);
    if (t->result == v1::RESULT_CODE_OK) {
      if (t->kind == TransferKind::kTransfer && t->debit == account) {
        return t->debit_previous;
      }
      if (t->credit == account) return t->credit_previous;
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not in the history of ", account_name));
  };

  std::string bytes;
  absl::Status s = read(internal::AccountKey(account), account_name, &bytes);
  if (!s.ok()) return s;
  absl::StatusOr<AccountValue> a = internal::DecodeAccount(bytes);
  if (!a.ok()) return a.status();
  U128 next = a->history_head;
  const U128 after = internal::FromProto(cursor);
  if (!after.IsZero()) {
    // Continue after the cursor's entry (the previous page's last).
    TransferValue t;
    absl::StatusOr<U128> older = entry(
        after, absl::StrCat("history cursor ", after.high, ":", after.low), &t);
    if (!older.ok()) {
      return absl::IsNotFound(older.status())
                 ? absl::InvalidArgumentError(older.status().message())
                 : older.status();
    }
    next = *older;
  }
  v1::HistoryPage page;
  while (!next.IsZero() && static_cast<uint32_t>(page.entries_size()) < limit) {
    TransferValue t;
    absl::StatusOr<U128> older = entry(
        next, absl::StrCat("history entry ", next.high, ":", next.low), &t);
    if (!older.ok()) {
      // The list is part of the state: a broken link is damage, whatever
      // the read said.
      return absl::DataLossError(
          absl::StrCat(account_name, " history: ", older.status().message()));
    }
    *page.add_entries() = internal::TransferToProto(next, t);
    next = *older;
  }
  if (!next.IsZero() && page.entries_size() > 0) {
    *page.mutable_next_cursor() = page.entries(page.entries_size() - 1).id();
  }
  return page;
}

absl::StatusOr<v1::Block> Ledger::GetStoredBlock(uint64_t height) const {
  std::string bytes;
  leveldb::ReadOptions ro;
  ro.verify_checksums = options_.paranoid_checks;
  leveldb::Status s = db_->Get(ro, internal::BlockKey(height), &bytes);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("block ", height, " not found"));
  }
  if (!s.ok()) return FromLevelDb(s, absl::StrCat("block ", height));
  v1::Block block;
  if (!block.ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat("block ", height, ": stored record does not parse"));
  }
  return block;
}

absl::StatusOr<v1::Block> Ledger::GetBlock(uint64_t height) const {
  absl::StatusOr<v1::Block> block = GetStoredBlock(height);
  if (!block.ok()) return block;
  pbft::v1::PrePrepare pp;
  if (!pp.ParseFromString(block->pre_prepare().payload())) {
    return absl::DataLossError(
        absl::StrCat("block ", height, ": stored pre-prepare does not parse"));
  }
  *block->mutable_requests() = BatchOf(block->pre_prepare(), pp);
  return block;
}

absl::StatusOr<pbft::v1::CertifiedBatch> Ledger::GetCertifiedBatch(
    uint64_t height) const {
  absl::StatusOr<v1::Block> block = GetStoredBlock(height);
  if (!block.ok()) return block.status();
  pbft::v1::CertifiedBatch cb;
  *cb.mutable_pre_prepare() = std::move(*block->mutable_pre_prepare());
  *cb.mutable_certificate() = std::move(*block->mutable_certificate());
  return cb;
}

size_t Ledger::AnswerBudgetBytes(const v1::QueryReply& answer) const {
  if (!answer.has_block()) return answer.ByteSizeLong();
  // A block answer carries the requests twice (in the block and in its
  // pre-prepare) and a commit certificate and view that differ between
  // replicas: counted from the requests alone, with a fixed allowance for
  // the rest, so that every correct replica counts the same.
  size_t requests = 0;
  for (const pbft::v1::Envelope& r : answer.block().requests()) {
    requests += r.ByteSizeLong() + 8;
  }
  return 2 * requests + 4096 + size_t{cluster_.quorum()} * 256;
}

absl::Status Ledger::FillQueryAnswers(const pbft::v1::Envelope& request,
                                      std::string* result) const {
  pbft::v1::Request r;
  v1::OperationBatch batch;
  v1::OperationResults results;
  if (!r.ParseFromString(request.payload()) ||
      !batch.ParseFromString(r.operation()) ||
      !results.ParseFromString(*result) ||
      results.results_size() != batch.operations_size()) {
    return absl::InternalError(
        "query answers: request and results do not match");
  }
  // Answer budgets (docs/api.md): answers are built one at a time and each
  // is kept only if it fits both budgets, so a request that asks for more
  // costs at most one answer beyond what the reply may carry.
  const ProtocolParams& params = cluster_.protocol();
  size_t reply_left = params.reply_bytes_max;
  for (int i = 0; i < batch.operations_size(); ++i) {
    if (!batch.operations(i).has_query()) continue;
    v1::OperationResult* result = results.mutable_results(i);
    v1::QueryReply* answer = result->mutable_answer();
    absl::Status s = Answer(batch.operations(i).query(), answer);
    // Replies are matched byte for byte: only what every correct replica
    // has (an ordered block answer is certified by f+1 matching replies).
    answer->clear_block_commit();
    if (absl::IsInvalidArgument(s)) {
      // A malformed query gets its reason, like a not-found.
      answer->set_not_found(std::string(s.message()));
    } else if (!s.ok()) {
      return s;
    }
    const size_t bytes = AnswerBudgetBytes(*answer);
    if (bytes > params.answer_bytes_max || bytes > reply_left) {
      result->clear_answer();
      result->set_code(v1::RESULT_CODE_ANSWER_TOO_LARGE);
      continue;
    }
    reply_left -= bytes;
  }
  *result = SerializeDeterministic(results);
  return absl::OkStatus();
}

absl::Status Ledger::Answer(const v1::Query& query,
                            v1::QueryReply* reply) const {
  auto not_found = [&](const absl::Status& s) {
    if (absl::IsNotFound(s)) {
      reply->set_not_found(std::string(s.message()));
      return absl::OkStatus();
    }
    return s;
  };
  switch (query.kind_case()) {
    case v1::Query::kGetAccount: {
      absl::StatusOr<v1::Account> a = GetAccount(query.get_account().id());
      if (!a.ok()) return not_found(a.status());
      *reply->mutable_account() = std::move(*a);
      return absl::OkStatus();
    }
    case v1::Query::kGetTransfer: {
      absl::StatusOr<v1::TransferRecord> t =
          GetTransfer(query.get_transfer().id());
      if (!t.ok()) return not_found(t.status());
      *reply->mutable_transfer() = std::move(*t);
      return absl::OkStatus();
    }
    case v1::Query::kGetHistory: {
      const v1::GetHistoryQuery& q = query.get_history();
      absl::StatusOr<v1::HistoryPage> p =
          GetHistory(q.account_id(), q.limit(), q.cursor());
      if (!p.ok()) return not_found(p.status());
      *reply->mutable_history() = std::move(*p);
      return absl::OkStatus();
    }
    case v1::Query::kGetBlock: {
      absl::StatusOr<v1::Block> b = GetBlock(query.get_block().height());
      if (!b.ok()) return not_found(b.status());
      AnswerBlock(std::move(*b), reply);
      return absl::OkStatus();
    }
    case v1::Query::kGetHead:
      *reply->mutable_head() = head();
      return absl::OkStatus();
    case v1::Query::kGetReceipt: {
      absl::StatusOr<v1::Receipt> r =
          BuildReceipt(query.get_receipt().transfer_id());
      if (!r.ok()) return not_found(r.status());
      AnswerReceipt(std::move(*r), reply);
      return absl::OkStatus();
    }
    case v1::Query::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("query: kind is not set");
}

absl::StatusOr<std::vector<ClientReply>> Ledger::ClientTable() const {
  std::vector<ClientReply> out;
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  const std::string prefix(1, internal::kClientPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (it->key().size() != 9) {
      return absl::DataLossError("client table: malformed key");
    }
    absl::StatusOr<ClientValue> c = internal::DecodeClient(
        absl::string_view(it->value().data(), it->value().size()));
    if (!c.ok()) return c.status();
    out.push_back({internal::GetU64(it->key().data() + 1), c->request_number,
                   std::move(c->result)});
  }
  absl::Status s = FromLevelDb(it->status(), "client table scan");
  if (!s.ok()) return s;
  return out;
}

uint64_t Ledger::Supply(uint32_t ledger) const {
  std::string bytes;
  if (!db_->Get(leveldb::ReadOptions(), internal::SupplyKey(ledger), &bytes)
           .ok() ||
      bytes.size() != 8) {
    return 0;
  }
  return internal::GetU64(bytes.data());
}

absl::StatusOr<Digest> Ledger::TEST_RecomputeStateDigest() const {
  StateHash hash;
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
  // Transfer records by the block that created them (ascending id within).
  std::map<uint64_t, internal::TransferGroupHasher> groups;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    const absl::string_view value(it->value().data(), it->value().size());
    if (!internal::IsStateKey(key)) continue;
    if (key[0] == internal::kTransferPrefix) {
      absl::StatusOr<TransferValue> t = internal::DecodeTransfer(value);
      if (!t.ok()) return t.status();
      groups[t->seq].Add(key, value);
      continue;
    }
    hash.Add(key, value);
  }
  absl::Status s = FromLevelDb(it->status(), "state scan");
  if (!s.ok()) return s;
  for (auto& [seq, group] : groups) {
    hash.Add(internal::TransferGroupKey(seq), group.Finish().view());
  }
  return hash.ToDigest();
}

absl::StatusOr<uint64_t> Ledger::TEST_SumBalances(uint32_t ledger) const {
  uint64_t sum = 0;
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  const std::string prefix(1, internal::kAccountPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    absl::StatusOr<AccountValue> a = internal::DecodeAccount(
        absl::string_view(it->value().data(), it->value().size()));
    if (!a.ok()) return a.status();
    if (a->ledger != ledger) continue;
    if (a->balance > kU64Max - sum) {
      return absl::InternalError("sum of balances overflows");
    }
    sum += a->balance;
  }
  return sum;
}

}  // namespace pbft::ledger
