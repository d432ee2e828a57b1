// Internals of the ledger shared by ledger.cc, verify.cc and tests: the
// LevelDB key layout and the canonical value encodings
// (docs/storage_format.md). Not for use outside replica/ledger/ and its tests.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_LEDGER_INTERNAL_H_
#define PBFT_LEDGER_REPLICA_LEDGER_LEDGER_INTERNAL_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto.h"
#include "common/proto_names.h"
#include "common/types.h"
#include "ledger/v1/ledger.pb.h"

namespace leveldb {
class DB;
class Env;
}  // namespace leveldb

namespace pbft::ledger::internal {

// A 128-bit id, ordered as (high, low): the big-endian key order.
struct U128 {
  uint64_t high = 0;
  uint64_t low = 0;
  bool IsZero() const { return high == 0 && low == 0; }
  friend auto operator<=>(const U128&, const U128&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const U128& v) {
    return H::combine(std::move(h), v.high, v.low);
  }
};
inline U128 FromProto(const v1::Uint128& v) { return {v.high(), v.low()}; }
inline v1::Uint128 ToProto(const U128& v) {
  v1::Uint128 p;
  p.set_high(v.high);
  p.set_low(v.low);
  return p;
}

// Key prefixes. State (hashed into the state digest): accounts, transfers,
// client table, supply. Chain data (not hashed): blocks, meta. An account's
// history is a list linked through the state itself (AccountValue::
// history_head, TransferValue::*_previous): no index records.
inline constexpr char kAccountPrefix = 'a';
inline constexpr char kTransferPrefix = 't';
inline constexpr char kClientPrefix = 'c';
inline constexpr char kSupplyPrefix = 's';
inline constexpr char kBlockPrefix = 'b';
inline constexpr absl::string_view kMetaHead = "m/head";
inline constexpr absl::string_view kMetaConfig = "m/config";
inline constexpr absl::string_view kMetaFormat = "m/format";
inline constexpr absl::string_view kMetaGenesis = "m/genesis";
// 3: block hashes cover only what every correct replica agrees on (no
// view; a results root) and the view is stored beside the header.
// 2: history linked through accounts and transfer records (1 had an 'h'
// index record per history entry).
inline constexpr uint32_t kFormatVersion = 3;

inline bool IsStateKey(absl::string_view key) {
  return !key.empty() &&
         (key[0] == kAccountPrefix || key[0] == kTransferPrefix ||
          key[0] == kClientPrefix || key[0] == kSupplyPrefix);
}

// Big-endian integers (inline: the block hot path encodes thousands).
inline void StoreU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (24 - 8 * i));
}
inline void StoreU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (56 - 8 * i));
}
inline void PutU32(std::string* out, uint32_t v) {
  char b[4];
  StoreU32(b, v);
  out->append(b, 4);
}
inline void PutU64(std::string* out, uint64_t v) {
  char b[8];
  StoreU64(b, v);
  out->append(b, 8);
}
inline uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string AccountKey(const U128& id);
std::string TransferKey(const U128& id);
std::string ClientKey(uint64_t client_id);
std::string SupplyKey(uint32_t ledger);
std::string BlockKey(uint64_t height);

// The same keys built on the stack, for the block hot path (a 17-byte
// std::string is a heap allocation). Bytes equal the functions above.
class KeyBuf {
 public:
  static constexpr size_t kMax = 1 + 16;
  absl::string_view view() const { return {data_, size_}; }

  static KeyBuf Account(const U128& id) { return WithId(kAccountPrefix, id); }
  static KeyBuf Transfer(const U128& id) { return WithId(kTransferPrefix, id); }

 private:
  static KeyBuf WithId(char prefix, const U128& id) {
    KeyBuf k;
    k.data_[0] = prefix;
    StoreU64(k.data_ + 1, id.high);
    StoreU64(k.data_ + 9, id.low);
    k.size_ = 17;
    return k;
  }
  char data_[kMax];
  size_t size_ = 0;
};

// An account as stored: fixed 112 bytes after the key.
struct AccountValue {
  uint64_t owner_client_id = 0;
  crypto::PublicKey owner_key;
  uint32_t ledger = 0;
  uint32_t code = 0;
  uint64_t user_data = 0;
  uint64_t balance = 0;
  uint64_t debits_posted = 0;
  uint64_t credits_posted = 0;
  uint64_t created_seq = 0;
  uint64_t created_timestamp_ms = 0;
  // The newest OK transfer or mint that moved this account's balance (zero:
  // none): the head of its history list.
  U128 history_head;
};
inline constexpr size_t kAccountBytes = 8 + 32 + 4 + 4 + 8 * 6 + 16;
static_assert(kAccountBytes == 112);
std::string EncodeAccount(const AccountValue& a);
// The same bytes into a fixed buffer.
void EncodeAccountTo(const AccountValue& a, char (&out)[kAccountBytes]);
absl::StatusOr<AccountValue> DecodeAccount(absl::string_view bytes);
v1::Account AccountToProto(const U128& id, const AccountValue& a);

enum class TransferKind : uint8_t { kTransfer = 1, kMint = 2 };

// A transfer or mint as recorded (with its outcome).
struct TransferValue {
  TransferKind kind = TransferKind::kTransfer;
  U128 debit;  // Zero for a mint.
  U128 credit;
  uint64_t amount = 0;
  uint32_t ledger = 0;
  std::string memo;
  v1::ResultCode result = v1::RESULT_CODE_UNSPECIFIED;
  uint64_t seq = 0;
  uint64_t timestamp_ms = 0;
  uint64_t client_id = 0;
  uint64_t transfer_number = 0;  // Global order of OK ones; 0 otherwise.
  // OK only: the history heads of the debit and credit accounts before this
  // transfer (zero: it is the account's first entry; debit_previous is zero
  // for a mint). Following them from an account's history_head lists its
  // history newest first.
  U128 debit_previous;
  U128 credit_previous;

  // The fields a retry must repeat exactly to get RESULT_CODE_EXISTS.
  bool SameFields(const TransferValue& o) const {
    return kind == o.kind && debit == o.debit && credit == o.credit &&
           amount == o.amount && ledger == o.ledger && memo == o.memo;
  }
};
// A transfer record's bytes less its memo: kind, debit, credit, amount,
// ledger, memo length, result, seq, timestamp, client, transfer number and
// the two history links.
inline constexpr size_t kTransferFixedBytes =
    1 + 16 + 16 + 8 + 4 + 4 + 4 + 8 + 8 + 8 + 8 + 16 + 16;
static_assert(kTransferFixedBytes == 117);
std::string EncodeTransfer(const TransferValue& t);
absl::StatusOr<TransferValue> DecodeTransfer(absl::string_view bytes);
v1::TransferRecord TransferToProto(const U128& id, const TransferValue& t);

// The checks on a money movement's own fields, before any state is read;
// OK when they pass. Transfers and mints check these in this order.
v1::ResultCode CheckMovementFields(const U128& id, uint64_t amount,
                                   uint32_t ledger, const std::string& memo);

// The per-client last-reply table (exactly-once across restarts).
struct ClientValue {
  uint64_t request_number = 0;
  std::string result;  // OperationResults bytes.
};
std::string EncodeClient(const ClientValue& c);
absl::StatusOr<ClientValue> DecodeClient(absl::string_view bytes);

// The chain head as stored under kMetaHead.
struct HeadValue {
  uint64_t height = 0;
  Digest block_hash;
  Digest state_digest;
  uint64_t transfer_count = 0;
  std::string state_hash;  // StateHash::Serialize().
};
std::string EncodeHead(const HeadValue& h);
absl::StatusOr<HeadValue> DecodeHead(absl::string_view bytes);

// Transfer records never change once written, so the state hash takes them
// per block rather than one by one: the records created at `seq` (sorted by
// id) form one element
//   key   = "T" || u64 seq
//   value = SHA-256("pbft-ledger/transfers/v1" ||
//                   for each: bytes key || bytes value)
// which is still a function of the state (every record carries its seq)
// and costs one expansion per block instead of one per transfer.
std::string TransferGroupKey(uint64_t seq);
class TransferGroupHasher {
 public:
  TransferGroupHasher();
  void Add(absl::string_view key, absl::string_view value);
  bool empty() const { return count_ == 0; }
  // Once only.
  Digest Finish();

 private:
  crypto::Sha256Hasher sha_;
  std::string buffer_;  // One record's framed bytes.
  uint64_t count_ = 0;
};

// Progress of a format 2 -> 3 migration: u64 height || hash (32) of the
// last block rewritten; written with every kMigrateBlocksPerWrite blocks.
inline constexpr absl::string_view kMetaMigrate = "m/migrate-3";
inline constexpr uint64_t kMigrateBlocksPerWrite = 512;

// Rewrites a format-2 ledger in `db` as format 3: every block's header
// loses the view (kept beside it, in Block.view) and gains the results
// root, the chain is re-linked, the head's hash updated and the format
// record set to 3. Resumable: progress is recorded every few hundred blocks
// in the same synced writes.
absl::Status MigrateFormat2To3(leveldb::DB* db, bool sync);

// `env`, or if null leveldb::Env::Default(), whose one background thread
// runs every compaction of the process (the ledger's and the protocol
// store's). The first Schedule starts that thread, which inherits the name
// of the thread that called it (the core's); this starts it first from a
// thread named `leveldb-bg`, so that top -H and perf tell compactions from
// the core.
leveldb::Env* EnvOrDefault(leveldb::Env* env);

}  // namespace pbft::ledger::internal

#endif  // PBFT_LEDGER_REPLICA_LEDGER_LEDGER_INTERNAL_H_
