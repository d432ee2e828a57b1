// pbft::client::Client: the C++ SDK for application developers.
//
//   absl::StatusOr<std::unique_ptr<pbft::client::Client>> c =
//       pbft::client::Client::Create({.config_path = "cluster.json",
//                               .key_path = "keys/client-1.key"});
//   ledger::v1::Transfer t = ...;
//   absl::StatusOr<ledger::v1::OperationResults> r = (*c)->Transfers({t});
//
// A result is accepted only when f+1 replicas sent correctly signed replies
// that match byte for byte: at least one of them is correct, so the result
// is the cluster's. Every request goes to every replica; a replica that
// fails or refuses is retried with back-off until the call's deadline (see
// ClientOptions::retry_refused for refusals under load).
//
// Exactly-once: each request carries (client id, request number); request
// numbers strictly increase, also across a client restart (they start from
// the wall clock in microseconds), and replicas execute each at most once.
// When the deadline passes without f+1 matching replies the call fails with
// an "outcome unknown" status (IsOutcomeUnknown): the request may or may not
// have executed. Resubmitting the same transfer ids is safe: an executed id
// comes back as RESULT_CODE_EXISTS with the original outcome.
//
// Queries (§5.1 read-only optimisation) go to every replica and are accepted
// on 2f+1 matching signed answers; if replicas disagree (some are behind)
// or too few answer within half the deadline, the query is retried as an
// ordered request (f+1 matching replies), as §5.1 prescribes.
//
// Request numbers: one ordered request (Submit, OrderedQuery) is in flight
// per Client at a time, numbered when it is sent, so none can be overtaken
// by a higher number and never execute. Calls from many threads are sent in
// call order; for parallel load use one Client (one key) per stream. When
// f+1 replicas reject a request as stale (another process used this key, or
// the clock stepped back) the request is renumbered above the number they
// name and sent again, without an "outcome unknown".
//
// Thread-safe: one Client may be shared by many threads.
#ifndef PBFT_LEDGER_CLIENT_CLIENT_H_
#define PBFT_LEDGER_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/load_throttle.h"
#include "common/config.h"
#include "common/proto_names.h"
#include "ledger/v1/ledger.pb.h"
#include "ledger/v1/service.pb.h"

namespace pbft::client {

struct ClientOptions {
  std::string config_path;  // cluster.json
  std::string key_path;     // this client's private key file (mode 0600)
  // Per-call deadline when a call does not give one.
  absl::Duration default_deadline = absl::Seconds(10);
  // Back-off before re-sending to a replica that failed or refused.
  absl::Duration retry_initial = absl::Milliseconds(50);
  absl::Duration retry_max = absl::Seconds(1);
  // A replica that refuses an ordered request for load (RESOURCE_EXHAUSTED,
  // or a signed QUEUE_FULL / CLIENT_SHARE_FULL rejection) is asked again
  // with the back-off above until the deadline. false: the call fails at
  // once with RESOURCE_EXHAUSTED when every replica asked so far refused
  // it and they are at least f+1 (none of them holds it; the others are
  // not asked). That status carries IsOutcomeUnknown (a faulty replica may
  // still order it): resubmitting the same transfer ids later is safe. A
  // call that a replica asked admitted is never refused: once a reply says
  // it executed, the refusing replicas are asked again (at once if the
  // replicas that admitted it are fewer than f+1, else if it has not
  // completed a while later) for their stored replies. For applications
  // that shed load themselves.
  bool retry_refused = true;
  // With retry_refused off: while the cluster refuses this client's
  // ordered requests for load, refuse a share of new ones here, without
  // signing or sending them (load_throttle.h; RESOURCE_EXHAUSTED, not sent,
  // so not an unknown outcome). Clients given the same throttle share its
  // counts. nullptr (the default): every call is sent.
  std::shared_ptr<LoadThrottle> throttle;
  // TLS: when the config names TLS material, the client uses it unless
  // these override it (PEM file paths).
  std::string tls_ca_file, tls_cert_file, tls_key_file;
  // Route GetAccount, GetTransfer, History, GetBlock and GetHead through
  // OrderedQuery (linearizable, one ordering round) instead of the
  // read-only quorum query (faster; sees a state at least as new as 2f+1
  // replicas agree on, which may miss a write that completed elsewhere
  // moments ago).
  bool linearizable_reads = false;
  // Send requests and queries to each replica on one long-lived Session
  // stream (docs/api.md "Sessions") instead of a unary call each; a
  // replica that does not implement Session gets the unary calls.
  bool sessions = true;
  // An ordered request goes first to f+1 replicas only: the primary of the
  // latest view that f+1 matching replies named, and f others chosen by
  // client id (the rest receive it inside the primary's PRE-PREPARE and
  // execute it without replying). The others are asked too as soon as one
  // of the first fails, refuses or disagrees, or when no f+1 matching
  // replies came within the widening delay (the latency of this client's
  // recent requests plus four times its variation, doubled each time it ran
  // out, within [widen_after_min, widen_after_max], widen_after_initial
  // before any request completed), or when one of the first answered and
  // the others had not within hedge_after_first × the time that first
  // answer took (0, the default: never; docs/benchmarks.md "A hedge on the
  // first replies" measured 0.5 and 0.25). A replica that failed is left out of
  // the first ones for 10 s; so is one that stayed silent through the widening
  // delay while another first one answered, at its second such silence within
  // 16 of its answers (docs/api.md "Which replicas a request goes to"). true:
  // every replica at once.
  bool send_to_all = false;
  absl::Duration widen_after_initial = absl::Milliseconds(200);
  absl::Duration widen_after_min = absl::Milliseconds(50);
  absl::Duration widen_after_max = absl::Seconds(2);
  double hedge_after_first = 0;
};

// Where this client's ordered requests went (docs/api.md "Which replicas a
// request goes to"); counts since the client was created.
struct ClientStats {
  uint64_t ordered_sends = 0;      // Ordered request numbers sent
  uint64_t sent_to_all_first = 0;  // ... to every replica at once
  uint64_t widened_by_timer = 0;   // ... widened: the delay ran out
  uint64_t widened_early = 0;     // ... widened: a first one failed, refused or
                                  // disagreed
  uint64_t widened_by_hedge = 0;  // ... widened: first answers spread apart
  uint64_t replicas_left_out = 0;  // Times a replica was left out for 10 s
  uint64_t throttled = 0;  // Calls refused by ClientOptions::throttle, unsent
  // Calls the primary refused for load while a backup asked with them was
  // told it had them: that backup was sent a copy without the word.
  uint64_t words_withdrawn = 0;

  ClientStats& operator+=(const ClientStats& o);
  // Counts of `a` since `b` was taken from the same client.
  friend ClientStats operator-(ClientStats a, const ClientStats& b);
};

// True if `s` means the request may or may not have executed.
bool IsOutcomeUnknown(const absl::Status& s);

class Client {
 public:
  using ResultCallback =
      std::function<void(absl::StatusOr<ledger::v1::OperationResults>)>;

  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const ClientOptions& options);
  virtual ~Client() = default;

  uint64_t client_id() const { return client_id_; }
  uint32_t replica_count() const { return replica_count_; }
  // The cluster config this client trusts (keys, f).
  virtual const Cluster& cluster() const = 0;

  // Orders and executes a batch of operations. Blocks until f+1 matching
  // replies or the deadline (absl::ZeroDuration(): the default deadline).
  virtual absl::StatusOr<ledger::v1::OperationResults> Submit(
      const ledger::v1::OperationBatch& batch,
      absl::Duration deadline = absl::ZeroDuration()) = 0;
  // Asynchronous: `done` runs once, on a gRPC thread; keep it short.
  virtual void SubmitAsync(const ledger::v1::OperationBatch& batch,
                           absl::Duration deadline, ResultCallback done) = 0;
  std::future<absl::StatusOr<ledger::v1::OperationResults>> SubmitFuture(
      const ledger::v1::OperationBatch& batch,
      absl::Duration deadline = absl::ZeroDuration());

  // Conveniences over Submit.
  absl::StatusOr<ledger::v1::OperationResults> CreateAccounts(
      const std::vector<ledger::v1::CreateAccount>& accounts,
      absl::Duration deadline = absl::ZeroDuration());
  absl::StatusOr<ledger::v1::OperationResults> Transfers(
      const std::vector<ledger::v1::Transfer>& transfers,
      absl::Duration deadline = absl::ZeroDuration());
  absl::StatusOr<ledger::v1::OperationResults> Mint(
      const ledger::v1::Mint& mint,
      absl::Duration deadline = absl::ZeroDuration());

  // Read-only queries: NOT_FOUND when 2f+1 replicas agree it is absent.
  absl::StatusOr<ledger::v1::Account> GetAccount(
      const ledger::v1::Uint128& id,
      absl::Duration deadline = absl::ZeroDuration());
  absl::StatusOr<ledger::v1::TransferRecord> GetTransfer(
      const ledger::v1::Uint128& id,
      absl::Duration deadline = absl::ZeroDuration());
  absl::StatusOr<ledger::v1::HistoryPage> History(
      const ledger::v1::Uint128& account_id, uint32_t limit,
      const ledger::v1::Uint128& cursor = ledger::v1::Uint128(),
      absl::Duration deadline = absl::ZeroDuration());
  // The block at `height`: 2f+1 matching answers of the block every correct
  // replica holds, with the view, pre-prepare and commit certificate of one
  // replica that the SDK verified against the config (DATA_LOSS if none
  // verifies). From the ordered fallback (or with linearizable_reads) the
  // block has no view, pre-prepare or certificate: f+1 matching replies
  // certify it instead (docs/api.md "Blocks").
  absl::StatusOr<ledger::v1::Block> GetBlock(
      uint64_t height, absl::Duration deadline = absl::ZeroDuration());
  absl::StatusOr<ledger::v1::ChainHead> GetHead(
      absl::Duration deadline = absl::ZeroDuration());
  // The receipt of transfer or mint `transfer_id` (docs/api.md "Receipts"):
  // 2f+1 matching read-only answers, with a commit certificate the SDK
  // verified, and VerifyReceipt passed against the config. NOT_FOUND when
  // 2f+1 replicas agree the transfer does not exist (yet).
  absl::StatusOr<ledger::v1::Receipt> GetReceipt(
      const ledger::v1::Uint128& transfer_id,
      absl::Duration deadline = absl::ZeroDuration());
  // The raw query: 2f+1 matching signed answers.
  virtual absl::StatusOr<ledger::v1::QueryReply> Query(
      const ledger::v1::Query& query, absl::Duration deadline) = 0;
  // A linearizable read: the query is ordered like a transfer and answered
  // from the state right after the block that ordered it; accepted on f+1
  // matching replies. It reflects every operation that completed before
  // the call began.
  absl::StatusOr<ledger::v1::QueryReply> OrderedQuery(
      const ledger::v1::Query& query,
      absl::Duration deadline = absl::ZeroDuration());

  virtual ClientStats stats() const = 0;

  // One replica's status (not a quorum answer; for operators).
  virtual absl::StatusOr<ledger::v1::StatusResponse> ReplicaStatus(
      uint32_t replica_id, absl::Duration deadline = absl::Seconds(2)) = 0;

 protected:
  Client(uint64_t client_id, uint32_t replica_count)
      : client_id_(client_id), replica_count_(replica_count) {}

  absl::Duration Deadline(absl::Duration d) const {
    return d == absl::ZeroDuration() ? default_deadline_ : d;
  }
  absl::Duration default_deadline_ = absl::Seconds(10);
  bool linearizable_reads_ = false;

 private:
  absl::StatusOr<ledger::v1::QueryReply> Read(const ledger::v1::Query& query,
                                              absl::Duration deadline);

  uint64_t client_id_;
  uint32_t replica_count_;
};

// Helpers for 128-bit ids.
ledger::v1::Uint128 MakeId(uint64_t high, uint64_t low);
// A new transfer or account id, ordered by time: the top 48 bits are
// milliseconds since the Unix epoch, the other 80 bits random (from the
// operating system's generator). Ids made by one process strictly increase,
// also within one millisecond and when the clock steps back (the previous
// id plus one then). The ledger keeps its records in key order, so ids
// that grow with time are written where the newest ones are instead of
// all over the key space (docs/api.md "Choosing ids"). Keep the id of an
// operation you may retry: a retry with a new id is a new operation.
// Thread-safe.
ledger::v1::Uint128 NewId();
// Parses "123", "0x1f" or "HIGH:LOW" (decimal). Names `field` on error.
absl::StatusOr<ledger::v1::Uint128> ParseId(const std::string& text,
                                            const std::string& field);
std::string IdToString(const ledger::v1::Uint128& id);

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_CLIENT_H_
