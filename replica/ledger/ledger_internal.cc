#include "replica/ledger/ledger_internal.h"

#include <array>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/leveldb_memory.h"
#include "common/proto_names.h"
#include "common/thread_name.h"
#include "leveldb/db.h"
#include "leveldb/env.h"
#include "replica/ledger/ledger.h"

namespace pbft::ledger::internal {
namespace {

std::string KeyWithId(char prefix, const U128& id) {
  std::string k(1, prefix);
  PutU64(&k, id.high);
  PutU64(&k, id.low);
  return k;
}

absl::Status Corrupt(absl::string_view what, absl::string_view why) {
  return absl::DataLossError(absl::StrCat(what, " record is corrupt: ", why));
}

}  // namespace

std::string AccountKey(const U128& id) { return KeyWithId(kAccountPrefix, id); }
std::string TransferKey(const U128& id) {
  return KeyWithId(kTransferPrefix, id);
}
std::string ClientKey(uint64_t client_id) {
  std::string k(1, kClientPrefix);
  PutU64(&k, client_id);
  return k;
}
std::string SupplyKey(uint32_t ledger) {
  std::string k(1, kSupplyPrefix);
  PutU32(&k, ledger);
  return k;
}
std::string BlockKey(uint64_t height) {
  std::string k(1, kBlockPrefix);
  PutU64(&k, height);
  return k;
}

void EncodeAccountTo(const AccountValue& a, char (&out)[kAccountBytes]) {
  char* p = out;
  StoreU64(p, a.owner_client_id);
  const absl::string_view key = a.owner_key.view();
  CHECK_EQ(key.size(), 32u);
  std::memcpy(p + 8, key.data(), 32);
  p += 40;
  StoreU32(p, a.ledger);
  StoreU32(p + 4, a.code);
  p += 8;
  StoreU64(p, a.user_data);
  StoreU64(p + 8, a.balance);
  StoreU64(p + 16, a.debits_posted);
  StoreU64(p + 24, a.credits_posted);
  StoreU64(p + 32, a.created_seq);
  StoreU64(p + 40, a.created_timestamp_ms);
  StoreU64(p + 48, a.history_head.high);
  StoreU64(p + 56, a.history_head.low);
  CHECK_EQ(p + 64 - out, static_cast<ptrdiff_t>(kAccountBytes));
}

std::string EncodeAccount(const AccountValue& a) {
  char out[kAccountBytes];
  EncodeAccountTo(a, out);
  return std::string(out, kAccountBytes);
}

absl::StatusOr<AccountValue> DecodeAccount(absl::string_view b) {
  if (b.size() != kAccountBytes) {
    return Corrupt("account", absl::StrCat("length ", b.size()));
  }
  const char* p = b.data();
  AccountValue a;
  a.owner_client_id = GetU64(p);
  absl::StatusOr<crypto::PublicKey> key =
      crypto::PublicKey::FromBytes(b.substr(8, 32));
  if (!key.ok()) return Corrupt("account", key.status().message());
  a.owner_key = *key;
  p += 40;
  a.ledger = GetU32(p);
  a.code = GetU32(p + 4);
  p += 8;
  a.user_data = GetU64(p);
  a.balance = GetU64(p + 8);
  a.debits_posted = GetU64(p + 16);
  a.credits_posted = GetU64(p + 24);
  a.created_seq = GetU64(p + 32);
  a.created_timestamp_ms = GetU64(p + 40);
  a.history_head = {GetU64(p + 48), GetU64(p + 56)};
  return a;
}

v1::Account AccountToProto(const U128& id, const AccountValue& a) {
  v1::Account p;
  *p.mutable_id() = ToProto(id);
  p.set_owner_client_id(a.owner_client_id);
  p.set_owner_public_key(a.owner_key.ToBytes());
  p.set_ledger(a.ledger);
  p.set_code(a.code);
  p.set_user_data(a.user_data);
  p.set_balance(a.balance);
  p.set_debits_posted(a.debits_posted);
  p.set_credits_posted(a.credits_posted);
  p.set_created_seq(a.created_seq);
  p.set_created_timestamp_ms(a.created_timestamp_ms);
  return p;
}

v1::ResultCode CheckMovementFields(const U128& id, uint64_t amount,
                                   uint32_t ledger, const std::string& memo) {
  if (id.IsZero()) return v1::RESULT_CODE_ID_MUST_NOT_BE_ZERO;
  if (amount == 0) return v1::RESULT_CODE_AMOUNT_MUST_BE_POSITIVE;
  if (ledger == 0) return v1::RESULT_CODE_LEDGER_MUST_NOT_BE_ZERO;
  if (memo.size() > kMemoBytesMax) return v1::RESULT_CODE_MEMO_TOO_LONG;
  return v1::RESULT_CODE_OK;
}

std::string EncodeTransfer(const TransferValue& t) {
  // Sized once and filled in place: blocks encode thousands of these.
  std::string out(kTransferFixedBytes + t.memo.size(), '\0');
  char* p = out.data();
  *p++ = static_cast<char>(t.kind);
  const auto u64 = [&p](uint64_t v) {
    StoreU64(p, v);
    p += 8;
  };
  const auto u32 = [&p](uint32_t v) {
    StoreU32(p, v);
    p += 4;
  };
  u64(t.debit.high);
  u64(t.debit.low);
  u64(t.credit.high);
  u64(t.credit.low);
  u64(t.amount);
  u32(t.ledger);
  u32(static_cast<uint32_t>(t.memo.size()));
  if (!t.memo.empty()) std::memcpy(p, t.memo.data(), t.memo.size());
  p += t.memo.size();
  u32(static_cast<uint32_t>(t.result));
  u64(t.seq);
  u64(t.timestamp_ms);
  u64(t.client_id);
  u64(t.transfer_number);
  u64(t.debit_previous.high);
  u64(t.debit_previous.low);
  u64(t.credit_previous.high);
  u64(t.credit_previous.low);
  CHECK_EQ(p, out.data() + out.size());
  return out;
}

absl::StatusOr<TransferValue> DecodeTransfer(absl::string_view b) {
  if (b.size() < kTransferFixedBytes) return Corrupt("transfer", "too short");
  const char* p = b.data();
  TransferValue t;
  const uint8_t kind = static_cast<uint8_t>(p[0]);
  if (kind != 1 && kind != 2) return Corrupt("transfer", "unknown kind");
  t.kind = static_cast<TransferKind>(kind);
  p += 1;
  t.debit = {GetU64(p), GetU64(p + 8)};
  t.credit = {GetU64(p + 16), GetU64(p + 24)};
  t.amount = GetU64(p + 32);
  t.ledger = GetU32(p + 40);
  const uint32_t memo_len = GetU32(p + 44);
  if (b.size() != kTransferFixedBytes + memo_len)
    return Corrupt("transfer", "length");
  p += 48;
  t.memo.assign(p, memo_len);
  p += memo_len;
  const uint32_t result = GetU32(p);
  if (!v1::ResultCode_IsValid(static_cast<int>(result))) {
    return Corrupt("transfer", "unknown result code");
  }
  t.result = static_cast<v1::ResultCode>(result);
  t.seq = GetU64(p + 4);
  t.timestamp_ms = GetU64(p + 12);
  t.client_id = GetU64(p + 20);
  t.transfer_number = GetU64(p + 28);
  t.debit_previous = {GetU64(p + 36), GetU64(p + 44)};
  t.credit_previous = {GetU64(p + 52), GetU64(p + 60)};
  return t;
}

v1::TransferRecord TransferToProto(const U128& id, const TransferValue& t) {
  v1::TransferRecord r;
  *r.mutable_id() = ToProto(id);
  if (t.kind == TransferKind::kTransfer) {
    *r.mutable_debit_account_id() = ToProto(t.debit);
  }
  *r.mutable_credit_account_id() = ToProto(t.credit);
  r.set_amount(t.amount);
  r.set_ledger(t.ledger);
  r.set_memo(t.memo);
  r.set_result(t.result);
  r.set_seq(t.seq);
  r.set_timestamp_ms(t.timestamp_ms);
  r.set_client_id(t.client_id);
  r.set_is_mint(t.kind == TransferKind::kMint);
  return r;
}

std::string EncodeClient(const ClientValue& c) {
  std::string out;
  PutU64(&out, c.request_number);
  out.append(c.result);
  return out;
}

absl::StatusOr<ClientValue> DecodeClient(absl::string_view b) {
  if (b.size() < 8) return Corrupt("client", "too short");
  ClientValue c;
  c.request_number = GetU64(b.data());
  c.result.assign(b.data() + 8, b.size() - 8);
  return c;
}

std::string EncodeHead(const HeadValue& h) {
  std::string out;
  PutU64(&out, h.height);
  out.append(h.block_hash.view().data(), Digest::kSize);
  out.append(h.state_digest.view().data(), Digest::kSize);
  PutU64(&out, h.transfer_count);
  out.append(h.state_hash);
  return out;
}

absl::StatusOr<HeadValue> DecodeHead(absl::string_view b) {
  if (b.size() < 8 + 32 + 32 + 8) return Corrupt("head", "too short");
  HeadValue h;
  h.height = GetU64(b.data());
  h.block_hash = *Digest::FromBytes(b.substr(8, 32));
  h.state_digest = *Digest::FromBytes(b.substr(40, 32));
  h.transfer_count = GetU64(b.data() + 72);
  h.state_hash = std::string(b.substr(80));
  return h;
}

std::string TransferGroupKey(uint64_t seq) {
  std::string k = "T";
  PutU64(&k, seq);
  return k;
}

TransferGroupHasher::TransferGroupHasher() {
  sha_.Update("pbft-ledger/transfers/v1");
}

void TransferGroupHasher::Add(absl::string_view key, absl::string_view value) {
  // One hash update per record (the same bytes as four).
  buffer_.resize(4 + key.size() + 4 + value.size());
  char* p = buffer_.data();
  StoreU32(p, static_cast<uint32_t>(key.size()));
  std::memcpy(p + 4, key.data(), key.size());
  p += 4 + key.size();
  StoreU32(p, static_cast<uint32_t>(value.size()));
  std::memcpy(p + 4, value.data(), value.size());
  sha_.Update(buffer_);
  ++count_;
}

Digest TransferGroupHasher::Finish() { return sha_.Finish(); }

leveldb::Env* EnvOrDefault(leveldb::Env* env) {
  if (env != nullptr) return env;
  static std::once_flag once;
  std::call_once(once, [] {
    std::thread([] {
      NameThisThread("leveldb-bg");
      leveldb::Env::Default()->Schedule([](void*) {}, nullptr);
    }).join();
  });
  return leveldb::Env::Default();
}

}  // namespace pbft::ledger::internal

namespace pbft::ledger {

uint64_t Ledger::MemoryBytes() const { return LevelDbMemoryBytes(*db_); }

size_t WriteBufferForReplica(size_t base, uint32_t replica_id) {
  return base + (replica_id % 8) * (base / 8);
}

}  // namespace pbft::ledger
