// The simulator's internals, shared by its parts (test-only; nothing
// outside tests/sim includes it):
//   sim.cc            set-up from the seed, the network, clients, the run;
//   sim_replica.cc    each replica: ledgerd's ReplicaNode over the real
//                     ledger and protocol store on LevelDB's in-memory Env,
//                     wired to the simulated network (SimIo);
//   sim_checks.cc     the checkers (agreement, validity, view rules, ...);
//   sim_faults.cc     crashes, partitions, power losses, stalls, rejoins;
//   sim_byzantine.cc  what Byzantine replicas send.
// Single-threaded: one Simulation runs one seed.
#ifndef PBFT_LEDGER_TESTS_SIM_SIM_INTERNAL_H_
#define PBFT_LEDGER_TESTS_SIM_SIM_INTERNAL_H_

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/wire_limits.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/core/core.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger.h"
#include "replica/node/fetch_responder.h"
#include "replica/node/ledger_adapters.h"
#include "replica/node/replica_node.h"
#include "replica/storage/protocol_store.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::sim::internal {

using crypto::Sha256;

// SplitMix64: tiny, fast, and its output is fixed by its definition (the
// standard library's distributions are not portable across platforms).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  // Uniform in [lo, hi].
  uint64_t Range(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  bool Chance(double p) {
    return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p;
  }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  uint64_t state_;
};

enum class Behaviour {
  kSilent,
  kFakePrimary,
  kWrongDigest,
  kEquivocate,
  kReplay,
  kFuture,
  kGarbage,
  kMixed,
  // Only for the primary (scenario corrupt-primary): each PRE-PREPARE goes
  // to one backup with its batch altered under the original digest.
  kCorruptBatch,
  // Byzantine primaries (scenario byzantine-primary), honest otherwise.
  kPrimaryEquivocate,  // Different batches to different backups, one seq.
  kPrimaryBadDigest,   // PRE-PREPAREs whose digest matches no batch.
  kPrimarySkipSeq,     // PRE-PREPAREs one seq ahead: leaves a gap.
  kPrimaryReuseSeq,    // The batch again at an already used seq.
  kPrimarySlow,        // Every PRE-PREPARE just under the view timeout late.
  // Byzantine replicas in view change (scenario byzantine-view-change).
  kStaleViewChange,   // Replays its older VIEW-CHANGEs instead of new ones.
  kForgedViewChange,  // Broken certificates, unproven s*, absurd views.
  kBadNewView,        // As primary: a NEW-VIEW whose O does not match V.
  // Scenario padding: honest content, but every message it signs padded
  // with an unknown protobuf field (small, or over its type's limit), then
  // silent from pad_silent_tick_ on.
  kPadVotes,
  // Scenario unprovoked-view-change: valid VIEW-CHANGEs (its real stable
  // checkpoint, no certificates) for view+1 or far-future views, now and
  // then, while the primary is correct.
  kUnprovokedViewChange,
};
inline const std::vector<Behaviour> kAllBehaviours = {
    Behaviour::kSilent,     Behaviour::kFakePrimary, Behaviour::kWrongDigest,
    Behaviour::kEquivocate, Behaviour::kReplay,      Behaviour::kFuture,
    Behaviour::kGarbage,    Behaviour::kMixed};

inline const std::vector<Behaviour> kPrimaryBehaviours = {
    Behaviour::kSilent,           Behaviour::kPrimaryEquivocate,
    Behaviour::kPrimaryBadDigest, Behaviour::kPrimarySkipSeq,
    Behaviour::kPrimaryReuseSeq,  Behaviour::kPrimarySlow,
    Behaviour::kCorruptBatch};
inline const std::vector<Behaviour> kViewChangeBehaviours = {
    Behaviour::kStaleViewChange, Behaviour::kForgedViewChange,
    Behaviour::kBadNewView};

using EnvPtr = std::shared_ptr<const v1::Envelope>;

class SimIo;

// One replica: ledgerd's loop (ReplicaNode) over the real ledger and
// protocol store on LevelDB's in-memory Env, which survives its crashes
// (a wipe replaces it), and the simulator's network and clock (SimIo).
struct SimReplica {
  uint32_t id = 0;
  bool byzantine = false;
  Behaviour behaviour = Behaviour::kSilent;
  std::unique_ptr<core::Signer> signer;
  std::unique_ptr<leveldb::Env> env;  // The data directory.
  // Open while the replica runs (closed by a crash).
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<storage::ProtocolStore> store;
  std::unique_ptr<node::LedgerStateMachine> machine;
  std::unique_ptr<node::StoreStorage> storage;
  std::unique_ptr<node::FetchResponder> responder;
  std::unique_ptr<node::InlineFetchService> fetch;
  std::unique_ptr<SimIo> io;
  std::unique_ptr<node::ReplicaNode> node;
  uint64_t height_at_crash = 0;
  // Every stable checkpoint proof it persisted (fetch answers that carry
  // the proof the batches reach rather than the latest).
  std::map<uint64_t, v1::CheckpointProof> proofs;
  int64_t clock_offset_ms = 0;
  std::deque<EnvPtr> heard;                          // Byzantine replay buffer.
  std::set<std::pair<uint64_t, uint64_t>> executed;  // Exactly-once.
  // What its Readys listed in persist, for the persist-before-send check:
  // digests of its own envelopes, the view and the latest NEW-VIEW.
  std::set<Digest> persisted;
  uint64_t durable_view = 0;
  std::string durable_new_view;  // Payload.
  bool down = false;
  uint64_t down_until = 0;
  // (client, request number) of the REQUESTs clients sent it that wait for
  // their reply, as calls wait in ledgerd: only those replies are signed
  // and sent (ReplySink::Wants). Lost with a crash, as connections are.
  std::set<std::pair<uint64_t, uint64_t>> waiting;
  // After a restart, until this tick, nothing from the other replicas
  // arrives: their links to it are still coming up (gRPC's reconnect
  // back-off), while clients already reach it.
  uint64_t deaf_until = 0;
  bool crash_mid_ready = false;  // Crash after the next persist.
  // SimOptions::deferred_execution: batches submitted to its executor and
  // the tick each runs at (in order). Lost with a crash.
  std::deque<std::pair<uint64_t, core::CommittedBatch>> to_execute;
  // Stalled (SIGSTOP): no ticks; what arrives waits in `held` (at most
  // held_max, the rest lost as by a full stream) until it resumes.
  bool stalled = false;
  std::deque<EnvPtr> held;
  // Rule checkers: the highest VIEW-CHANGE target delivered per sender,
  // the timer expiries and the view seen at the last Drain.
  std::map<uint64_t, uint64_t> view_change_heard;
  // Prepared certificates held when it crashed (checked after restart).
  std::vector<core::Core::PreparedEntry> certs_at_crash;
  uint64_t timer_expiries_seen = 0;
  uint64_t view_seen = 0;
  bool wipe_on_crash = false;
  std::deque<EnvPtr> own_view_changes;  // kStaleViewChange.

  const core::Core& core() const { return node->core(); }
  uint64_t height() const {
    return machine ? machine->last_executed() : height_at_crash;
  }
};

struct SimClient {
  uint64_t id = 0;
  std::unique_ptr<core::Signer> signer;
  uint64_t next_number = 1;
  uint64_t total = 0;
  uint64_t completed = 0;
  bool outstanding = false;
  EnvPtr request;
  uint64_t number = 0;
  uint64_t first_sent_tick = 0;
  uint64_t last_sent_tick = 0;
  uint64_t view_hint = 0;  // Highest view seen in replies.
  // Sends each request to every replica at once (odd client ids, as the
  // SDK's send_to_all does); the others send to f+1 replicas, the primary
  // they believe in and the f after it (the SDK's first replicas), and to
  // all on timeout (Castro–Liskov §4.1). A backup forwards what no
  // PRE-PREPARE carried in time.
  bool to_all = false;
  // Scenario lying-hint: sends to f+1 backups only (every backup on a
  // retransmission), telling them it sent the request to the primary too (the
  // hint of ledger.v1.SubmitRequest.primary_view). Correct clients sending
  // to f+1 tell the truth with every first send; those sending to all, as
  // the SDK's send_to_all, say nothing.
  bool lies_about_primary = false;
  // Scenario lying-hint, the honest clients: no think time between requests.
  bool busy = false;
  std::map<uint32_t, std::string> replies;  // replica -> result
  // Scenario stale-numbers: the operation of the outstanding request, the
  // numbers used, and the stale rejections it got (replica -> last number).
  std::string op;
  std::set<uint64_t> used;
  uint64_t last_completed = 0;
  std::map<uint32_t, uint64_t> stale;
};

struct Packet {
  uint64_t at = 0;
  uint64_t order = 0;
  bool to_client = false;
  bool from_client = false;  // A REQUEST a client sent (not forwarded).
  // A client's word that it sent the REQUEST to this view's primary too.
  std::optional<uint64_t> primary_view;
  uint64_t to = 0;
  EnvPtr envelope;
  bool operator>(const Packet& o) const {
    return std::tie(at, order) > std::tie(o.at, o.order);
  }
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& o)
      : opt_(o), rng_(o.seed * 0x2545F4914F6CDD1DULL + o.replicas) {}

  SimResult Run();

 private:
  void Setup();
  // Setup's steps, in the order they draw from the seed's PRNG (a seed's
  // set-up depends on it).
  struct Roles {
    std::set<uint32_t> ids;
    std::map<uint32_t, Behaviour> chosen;
  };
  uint32_t DrawParams();
  void DrawFaults();
  bool FaultScenario() const;
  Roles ChooseByzantine();
  void DrawMissingBodies();
  std::string CreateParticipants(uint32_t clients, const Roles& roles);
  void DescribeSetup(uint32_t clients, const std::string& byz_desc);
  void Fail(std::string why) {
    if (result_.ok) {
      result_.ok = false;
      result_.failure = absl::StrCat("tick ", tick_, ": ", why);
    }
  }
  uint64_t NowMs(const SimReplica& r) const {
    return static_cast<uint64_t>(static_cast<int64_t>(tick_ * kTickMs) +
                                 r.clock_offset_ms + 1000000);
  }

  // Network.
  void SendToReplica(uint32_t to, EnvPtr e);
  void CountUnsentReply() { ++result_.replies_unsent; }
  // A client's REQUEST: where it arrives, a call waits for its reply.
  void ClientSendTo(uint32_t to, EnvPtr e,
                    std::optional<uint64_t> primary_view = std::nullopt);
  void SendToClient(uint64_t to, EnvPtr e);
  void Enqueue(bool to_client, uint64_t to, EnvPtr e, uint64_t extra = 0,
               bool from_client = false,
               std::optional<uint64_t> primary_view = std::nullopt);
  void Deliver(const Packet& p);

  // Replicas. SimIo (the node's interfaces) calls Append ... Reply.
  friend class SimIo;
  Cluster MakeCluster(uint32_t clients) const;
  // Opens the replica's ledger and protocol store on its Env, and the node
  // over them (ledgerd's restart path); false (and Fail) if that fails.
  bool StartNode(SimReplica& r);
  void DeliverToReplica(SimReplica& r, const EnvPtr& e,
                        std::optional<uint64_t> primary_view = std::nullopt);
  void Drain(SimReplica& r);
  // The executor's choices (deferred_execution): some batches at once on
  // the node's turn when none is outstanding, the rest 0-3 ticks after
  // the one before (one in eight up to 39).
  bool ExecuteInline() {
    if (rng_.Below(4) != 0) return false;
    ++result_.executed_inline;
    return true;
  }
  void QueueExecution(SimReplica& r, core::CommittedBatch b);
  // Runs the batches due by now and hands their results to the node.
  void ExecuteDue(SimReplica& r);
  absl::Status Append(SimReplica& r, const core::Persist& p);
  void Route(SimReplica& r, core::Outbound o);
  void CheckSentPersisted(const SimReplica& r, const v1::Envelope& e);
  absl::StatusOr<node::StateMachine::Executed> Execute(
      SimReplica& r, const core::CommittedBatch& b);
  void Reply(SimReplica& r, pbft::ClientId client, v1::Envelope reply);
  void RespondFetch(SimReplica& r, uint32_t peer, const v1::FetchRequest& req,
                    v1::FetchResponse resp);
  void CheckCertifiedBatch(const SimReplica& r, const core::CommittedBatch& b);
  void CheckPrepared();
  // Every running replica's timer tick and what it leads to, then the
  // prepared-certificate check.
  void TickReplicas();
  // Rules of §4.4 restated, checked after every Drain of a correct replica.
  void CheckViewRules(SimReplica& r, const core::Ready& rd);
  void CheckNewView(const SimReplica& r, const v1::Envelope& e);
  // Crash recovery: every prepared certificate above the stable checkpoint
  // a replica held when it crashed is held again after its restart (the
  // same or a higher view), so its next VIEW-CHANGE still carries it.
  void CheckCertsSurvived(const SimReplica& r);
  void Crash(SimReplica& r);
  void Restart(SimReplica& r);
  void FaultTick();
  void Heal();
  void FinalCheck();
  void ChainCheck();
  void IdleCatchUpCheck();
  // Every correct replica is running and active in the cluster's view (the
  // highest view a correct replica is active in), or changing to a higher
  // one alone; counts the latter in *ahead (docs/protocol.md "Rejoining the
  // current view").
  bool ViewsSettled(uint64_t* ahead) const;
  void ViewCheck();
  void PowerLossTick();
  void FullWindowTick();
  bool FullWindowDrops(const v1::Envelope& e, uint64_t to);
  bool WindowFullAtBackups() const;
  void MissingBodiesTick();
  // Views reached stay below a bound linear in the faults injected.
  void ViewBoundCheck();
  void LyingHintCheck();
  // Scenarios restart-during-view-change and stall-through-view-change.
  bool RejoinRun();
  void ForceViewChange(SimReplica& victim);
  void Resume(SimReplica& r);
  std::string Views() const;
  // Ticks the cluster (clients too if `clients`; down replicas stay down)
  // until done() or `bound` ticks passed; returns done().
  template <typename Done>
  bool TickUntil(uint64_t bound, bool clients, Done done);
  uint32_t CurrentPrimary() const;
  v1::Envelope ForgeViewChange(SimReplica& r, const v1::Envelope& e);
  v1::Envelope ForgeNewView(SimReplica& r, const v1::Envelope& e);

  // Byzantine behaviour.
  Behaviour Pick(const SimReplica& r) {
    if (r.behaviour == Behaviour::kPadVotes && tick_ >= pad_silent_tick_)
      return Behaviour::kSilent;
    return r.behaviour == Behaviour::kMixed
               ? kAllBehaviours[rng_.Below(kAllBehaviours.size() - 1)]
               : r.behaviour;
  }
  void ByzantineSend(SimReplica& r, core::Outbound o);
  std::vector<uint32_t> Targets(const SimReplica& r,
                                const core::Outbound& o) const;
  bool ByzantineViewChange(SimReplica& r, core::Outbound& o, Behaviour b,
                           const std::vector<uint32_t>& targets);
  bool ByzantinePrimary(SimReplica& r, const core::Outbound& o, Behaviour b,
                        const std::vector<uint32_t>& targets);
  bool ByzantineMessage(SimReplica& r, core::Outbound& o, Behaviour b,
                        const std::vector<uint32_t>& targets);
  bool CorruptBatch(SimReplica& r, core::Outbound& o,
                    const std::vector<uint32_t>& targets);
  std::string PadPayload(std::string payload);
  void SendShiftedVote(SimReplica& r, const core::Outbound& o,
                       const std::vector<uint32_t>& targets);
  void ByzantineOnReceive(SimReplica& r, const EnvPtr& e);
  void ByzantineTick(SimReplica& r);
  v1::Envelope Tamper(const SimReplica& r, const v1::Envelope& e,
                      int64_t view_delta, int64_t seq_delta, bool digest);

  // Clients.
  void ClientTick(SimClient& c);
  void LyingSend(SimClient& c, bool retransmission);
  void ClientReceive(SimClient& c, const v1::Envelope& e);
  // A transfer of 1 from client c's genesis account to the next client's,
  // with an id of its own and 0-64 bytes of memo.
  std::string Operation(const SimClient& c, uint64_t number);
  // Signs and sends request `number` carrying `op` for client c.
  EnvPtr ClientSend(SimClient& c, uint64_t number, const std::string& op);
  // Scenario stale-numbers: the number of a new request, which may be one
  // below the client's last (clock stepped back) or overtaken by a higher
  // one sent just before it (pipelining).
  uint64_t StaleScenarioNumber(SimClient& c);
  // f+1 stale rejections: check the number they name, renumber above it.
  void OnStaleRejection(SimClient& c, const v1::Reply& rep);

  static constexpr uint64_t kTickMs = 10;
  // No new crash or partition starts after this tick: liveness is owed
  // once the last one ends.
  static constexpr uint64_t kFaultsEndTick = 8000;
  // ViewBoundCheck: views a run may reach without faults, and per fault.
  static constexpr uint64_t kViewsFree = 4;
  static constexpr uint64_t kViewsPerFault = 4;

  const SimOptions opt_;
  Rng rng_;
  SimResult result_;
  uint32_t n_ = 4;
  uint32_t f_ = 1;
  ProtocolParams params_;
  double drop_ = 0, dup_ = 0;
  uint64_t delay_max_ = 1;
  uint64_t client_timeout_ticks_ = 40;
  uint64_t liveness_ticks_ = 4000;
  // What the shell refuses before the core (common/wire_limits.h), and
  // the bound every certificate and proof a correct replica keeps obeys.
  WireLimits limits_;
  uint64_t pad_silent_tick_ = 0;
  // Rejoin scenarios: how the victim is taken out, and whether the clients
  // keep sending after it returns.
  bool rejoin_ = false, stall_ = false, busy_ = false;
  // Set when the checks after the clients' traffic inject a fault
  // (IdleCatchUpCheck's crash): lying-hint's latency bound held until then.
  bool faults_after_traffic_ = false;
  // Scenario power-loss: episodes so far and in all; then one forced view
  // change (the primary cut off).
  uint64_t power_losses_ = 0, power_losses_max_ = 0;
  bool view_change_forced_ = false;
  // Scenario full-window: COMMITs above the cut are lost (all, or all but
  // those to commit_receiver_) from blackout_tick_ until the backups have
  // left view 0; the primary crashes once every backup holds prepared
  // certificates for the whole window above the cut. Phases: 0 before the
  // blackout, 1 filling, 2 primary down, 3 blackout over, 4 a view change came
  // before the window was full (the seed fails). max_o_ is the largest O of a
  // NEW-VIEW a correct replica entered by.
  bool full_window_ = false, commit_blackout_ = false;
  uint64_t full_window_phase_ = 0, blackout_tick_ = 0, max_o_ = 0;
  // The checkpoint at or above the highest seq pre-prepared before the
  // blackout: COMMITs up to it pass.
  uint64_t blackout_cut_ = 0;
  uint32_t commit_receiver_ = UINT32_MAX;
  double held_drop_ = 0;
  uint64_t held_max_ = 0;
  // Faults of the crash / partition scenarios.
  bool crashes_ = false, wipes_ = false, partitions_ = false;
  std::set<uint32_t> wiped_;         // Replicas wiped so far (at most f).
  bool partition_primary_ = false;   // Episodes that isolate the primary.
  bool serve_latest_proof_ = false;  // Fetch answers as ledgerd does.
  std::vector<std::vector<bool>> blocked_;  // [from][to] among replicas.
  uint64_t partition_until_ = 0;
  uint64_t last_disturbance_ = 0;  // Tick of the last fault start or end.
  uint32_t from_ = UINT32_MAX;     // Replica now sending (UINT32_MAX: none).
  bool final_phase_ = false;
  uint64_t crashes_done_ = 0, partitions_done_ = 0;
  uint64_t next_crash_ = 0, next_partition_ = 0;  // Ticks of the next.
  bool stale_numbers_ = false;                    // Scenario stale-numbers.
  bool lying_hint_ = false;                       // Scenario lying-hint.
  // deferred_execution: the longest a batch waited between its submission
  // and its execution (the executor's lag, not the protocol's).
  uint64_t max_execution_lag_ = 0;
  // Scenario missing-bodies: replicas that get view 0's PRE-PREPAREs
  // without batches, and the tick primary 0 is cut off.
  std::set<uint32_t> starved_;
  uint64_t cut_primary_at_ = 0;
  std::unique_ptr<SimCrypto> crypto_;
  std::optional<Cluster> cluster_;  // For the ledgers' genesis.
  std::vector<std::unique_ptr<SimReplica>> replicas_;
  std::vector<std::unique_ptr<SimClient>> clients_;
  std::priority_queue<Packet, std::vector<Packet>, std::greater<Packet>> net_;
  uint64_t order_ = 0;
  uint64_t tick_ = 0;
  crypto::Sha256Hasher trace_;

  // Checker state.
  std::map<uint64_t, Digest> agreed_batch_;  // seq -> batch digest
  std::map<uint64_t, Digest> agreed_state_;  // seq -> state digest
  std::map<std::pair<uint64_t, uint64_t>, Digest> submitted_;  // op hash
  std::map<std::pair<uint64_t, uint64_t>, std::string> results_;
  std::map<std::pair<uint64_t, uint64_t>, Digest> prepared_;  // (v,s) -> d
  // Results clients accepted with f+1 matching replies.
  std::map<std::pair<uint64_t, uint64_t>, std::string> acknowledged_;
};

const char* BehaviourName(Behaviour b);

// Replica r's side of ReplicaNode's interfaces: its ledger and protocol
// store behind the simulator's checkers, the simulated network, and its
// clock (simulated time plus the replica's skew).
class SimIo final : public node::ProtocolStorage,
                    public node::StateMachine,
                    public node::Transport,
                    public node::ReplySink,
                    public node::ReadyObserver,
                    public node::BatchExecutor,
                    public Clock {
 public:
  SimIo(Simulation* sim, SimReplica* r) : sim_(sim), r_(r) {}

  absl::Status Append(const core::Persist& p) override {
    return sim_->Append(*r_, p);
  }
  absl::StatusOr<core::RestoreState> Load() const override {
    return r_->storage->Load();
  }
  absl::StatusOr<std::optional<v1::Envelope>> FindBody(
      uint64_t seq, const std::string& digest) const override {
    return r_->storage->FindBody(seq, digest);
  }
  uint64_t last_executed() const override {
    return r_->machine->last_executed();
  }
  absl::StatusOr<v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t seq) const override {
    return r_->machine->GetCertifiedBatch(seq);
  }
  absl::StatusOr<Executed> Execute(const core::CommittedBatch& b) override {
    return sim_->Execute(*r_, b);
  }
  absl::StatusOr<uint64_t> last_timestamp_ms() const override {
    return r_->machine->last_timestamp_ms();
  }
  absl::StatusOr<std::vector<ClientEntry>> ClientTable() const override {
    return r_->machine->ClientTable();
  }
  void Send(ReplicaId to, const v1::Envelope& e) override {
    sim_->Route(*r_, core::Outbound{false, to, e});
  }
  void Broadcast(const v1::Envelope& e) override {
    sim_->Route(*r_, core::Outbound{true, ReplicaId(0), e});
  }
  // A correct replica replies where a client's call waits; a Byzantine one
  // sends whatever it likes to any client.
  bool Wants(pbft::ClientId client, pbft::RequestNumber number) override {
    if (r_->byzantine) return true;
    if (r_->waiting.erase({client.value(), number.value()}) > 0) return true;
    sim_->CountUnsentReply();
    return false;
  }
  void Deliver(pbft::ClientId client, pbft::RequestNumber,
               const v1::Envelope& reply) override {
    sim_->Reply(*r_, client, reply);
  }
  void OnReady(const core::Core&, const core::Ready& ready) override {
    if (!r_->byzantine) sim_->CheckViewRules(*r_, ready);
  }
  void AfterReady(const core::Core& core) override {
    if (r_->byzantine) return;
    absl::Status s = core.Invariants();
    if (!s.ok())
      sim_->Fail(absl::StrCat("replica ", r_->id, ": ", s.message()));
  }
  uint64_t NowMs() const override { return sim_->NowMs(*r_); }
  bool Inline(const core::CommittedBatch&) override {
    return sim_->ExecuteInline();
  }
  void Submit(core::CommittedBatch b) override {
    sim_->QueueExecution(*r_, std::move(b));
  }

 private:
  Simulation* sim_;
  SimReplica* r_;
};

template <typename Done>
bool Simulation::TickUntil(uint64_t bound, bool clients, Done done) {
  const uint64_t start = tick_;
  for (; tick_ <= start + bound && result_.ok; ++tick_) {
    if (clients) {
      for (auto& c : clients_) ClientTick(*c);
    }
    while (!net_.empty() && net_.top().at <= tick_ && result_.ok) {
      Packet p = net_.top();
      net_.pop();
      Deliver(p);
    }
    TickReplicas();
    if (done()) return true;
  }
  return result_.ok && done();
}

}  // namespace pbft::sim::internal

#endif  // PBFT_LEDGER_TESTS_SIM_SIM_INTERNAL_H_
