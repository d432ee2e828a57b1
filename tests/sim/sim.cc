#include "tests/sim/sim.h"

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
#include "common/check.h"
#include "common/codec.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/wire_limits.h"
#include "replica/core/core.h"
#include "replica/ledger/block.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::sim {
namespace {

using ledger::crypto::Sha256;

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
const char* BehaviourName(Behaviour b) {
  switch (b) {
    case Behaviour::kSilent:
      return "silent";
    case Behaviour::kFakePrimary:
      return "fake-primary";
    case Behaviour::kWrongDigest:
      return "wrong-digest";
    case Behaviour::kEquivocate:
      return "equivocate";
    case Behaviour::kReplay:
      return "replay";
    case Behaviour::kFuture:
      return "future";
    case Behaviour::kGarbage:
      return "garbage";
    case Behaviour::kMixed:
      return "mixed";
    case Behaviour::kCorruptBatch:
      return "corrupt-batch";
    case Behaviour::kPrimaryEquivocate:
      return "primary-equivocate";
    case Behaviour::kPrimaryBadDigest:
      return "primary-bad-digest";
    case Behaviour::kPrimarySkipSeq:
      return "primary-skip-seq";
    case Behaviour::kPrimaryReuseSeq:
      return "primary-reuse-seq";
    case Behaviour::kPrimarySlow:
      return "primary-slow";
    case Behaviour::kStaleViewChange:
      return "stale-view-change";
    case Behaviour::kForgedViewChange:
      return "forged-view-change";
    case Behaviour::kBadNewView:
      return "bad-new-view";
    case Behaviour::kPadVotes:
      return "pad-votes";
    case Behaviour::kUnprovokedViewChange:
      return "unprovoked-view-change";
  }
  return "?";
}
const std::vector<Behaviour> kAllBehaviours = {
    Behaviour::kSilent,     Behaviour::kFakePrimary, Behaviour::kWrongDigest,
    Behaviour::kEquivocate, Behaviour::kReplay,      Behaviour::kFuture,
    Behaviour::kGarbage,    Behaviour::kMixed};

const std::vector<Behaviour> kPrimaryBehaviours = {
    Behaviour::kSilent,           Behaviour::kPrimaryEquivocate,
    Behaviour::kPrimaryBadDigest, Behaviour::kPrimarySkipSeq,
    Behaviour::kPrimaryReuseSeq,  Behaviour::kPrimarySlow,
    Behaviour::kCorruptBatch};
const std::vector<Behaviour> kViewChangeBehaviours = {
    Behaviour::kStaleViewChange, Behaviour::kForgedViewChange,
    Behaviour::kBadNewView};

const std::vector<std::string> kScenarios = {"fair",
                                             "lossy",
                                             "byzantine",
                                             "small-window",
                                             "queue-full",
                                             "corrupt-primary",
                                             "crash",
                                             "partition",
                                             "byzantine-primary",
                                             "byzantine-view-change",
                                             "restart-during-view-change",
                                             "stall-through-view-change",
                                             "padding",
                                             "stale-numbers",
                                             "unprovoked-view-change",
                                             "power-loss"};

using EnvPtr = std::shared_ptr<const v1::Envelope>;

// The ledger stand-in: a hash chain over executed requests, with the
// per-client dedup table of the real ledger (docs/storage_format.md).
class MemLedger {
 public:
  struct Outcome {
    std::vector<ExecutedReply> replies;
    std::vector<std::pair<uint64_t, uint64_t>> executed;  // Non-duplicates.
    // Skipped below the client's last number: no result, and no agreement
    // check (an executed request ordered again is skipped too).
    std::vector<ExecutedReply> stale;
  };

  Outcome Apply(const CommittedBatch& b) {
    Outcome out;
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(b.pre_prepare.payload()));
    ledger::crypto::Sha256Hasher h;
    std::string head;
    ledger::codec::Writer w(&head);
    w.PutRaw(state_.view());
    w.PutU64(b.seq.value());
    w.PutRaw(b.batch_digest.view());
    w.PutU64(b.timestamp_ms);
    h.Update(head);
    for (const v1::Envelope& re : pp.requests()) {
      v1::Request r;
      CHECK(r.ParseFromString(re.payload()));
      auto& [last, result] = clients_[r.client_id()];
      if (r.request_number() < last) {  // Stale: the core rejects it.
        out.stale.push_back(
            {ClientId(r.client_id()), RequestNumber(r.request_number()), ""});
        continue;
      }
      if (r.request_number() == last) {  // Duplicate: stored reply.
        out.replies.push_back(
            {ClientId(r.client_id()), RequestNumber(last), result});
        continue;
      }
      last = r.request_number();
      result = Sha256(absl::StrCat(state_.ToHex(), "/", r.client_id(), "/",
                                   last, "/", r.operation()))
                   .ToHex()
                   .substr(0, 16);
      h.Update(re.payload());
      out.replies.push_back(
          {ClientId(r.client_id()), RequestNumber(last), result});
      out.executed.emplace_back(r.client_id(), last);
    }
    state_ = h.Finish();
    ++height_;
    last_timestamp_ms_ = b.timestamp_ms;
    return out;
  }
  const Digest& state() const { return state_; }
  uint64_t height() const { return height_; }
  uint64_t last_timestamp_ms() const { return last_timestamp_ms_; }
  // client -> (last executed request number, its result).
  const std::map<uint64_t, std::pair<uint64_t, std::string>>& clients() const {
    return clients_;
  }

 private:
  uint64_t last_timestamp_ms_ = 0;
  Digest state_;
  uint64_t height_ = 0;
  std::map<uint64_t, std::pair<uint64_t, std::string>> clients_;
};

struct SimReplica {
  uint32_t id = 0;
  bool byzantine = false;
  Behaviour behaviour = Behaviour::kSilent;
  std::unique_ptr<Signer> signer;
  std::unique_ptr<Core> core;
  MemLedger ledger;
  std::vector<CommittedBatch> blocks;  // blocks[i] is seq i+1.
  std::map<uint64_t, v1::CheckpointProof> proofs;
  int64_t clock_offset_ms = 0;
  std::deque<EnvPtr> heard;                          // Byzantine replay buffer.
  std::set<std::pair<uint64_t, uint64_t>> executed;  // Exactly-once.
  // Digests of the envelopes this replica's Readys listed in persist, for
  // the persist-before-send check.
  std::set<Digest> persisted;
  // The in-memory protocol store: exactly what Ready.persist said, with the
  // semantics of replica/storage/protocol_store (entries at or below a new
  // stable checkpoint deleted; only the latest NEW-VIEW kept).
  struct Durable {
    uint64_t view = 0;
    std::optional<v1::CheckpointProof> stable;
    std::map<std::tuple<uint64_t, uint32_t, uint64_t>, v1::Envelope> entries;
    std::optional<v1::Envelope> new_view;
    uint64_t counter = 0;
  } durable;
  bool down = false;
  uint64_t down_until = 0;
  bool crash_mid_ready = false;  // Crash after the next persist.
  // Stalled (SIGSTOP): no ticks; what arrives waits in `held` (at most
  // held_max, the rest lost as by a full stream) until it resumes.
  bool stalled = false;
  std::deque<EnvPtr> held;
  // Rule checkers: the highest VIEW-CHANGE target delivered per sender,
  // the timer expiries and the view seen at the last Drain.
  std::map<uint64_t, uint64_t> view_change_heard;
  // Prepared certificates held when it crashed (checked after restart).
  std::vector<Core::PreparedEntry> certs_at_crash;
  uint64_t timer_expiries_seen = 0;
  uint64_t view_seen = 0;
  bool wipe_on_crash = false;
  std::deque<EnvPtr> own_view_changes;  // kStaleViewChange.
};

struct SimClient {
  uint64_t id = 0;
  std::unique_ptr<Signer> signer;
  uint64_t next_number = 1;
  uint64_t total = 0;
  uint64_t completed = 0;
  bool outstanding = false;
  EnvPtr request;
  uint64_t number = 0;
  uint64_t first_sent_tick = 0;
  uint64_t last_sent_tick = 0;
  uint64_t view_hint = 0;                   // Highest view seen in replies.
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
  void SendToClient(uint64_t to, EnvPtr e);
  void Enqueue(bool to_client, uint64_t to, EnvPtr e, uint64_t extra = 0);
  void Deliver(const Packet& p);

  // Replicas.
  void DeliverToReplica(SimReplica& r, const EnvPtr& e);
  void Drain(SimReplica& r);
  void Route(SimReplica& r, Outbound o);
  void ServeFetch(SimReplica& r, const v1::Envelope& e);
  void Execute(SimReplica& r, const CommittedBatch& b);
  void CheckCertifiedBatch(const SimReplica& r, const CommittedBatch& b);
  void CheckPrepared();
  // Rules of §4.4 restated, checked after every Drain of a correct replica.
  void CheckViewRules(SimReplica& r, const Ready& rd);
  void CheckNewView(const SimReplica& r, const v1::Envelope& e);
  // Crash recovery: every prepared certificate above the stable checkpoint
  // a replica held when it crashed is held again after its restart (the
  // same or a higher view), so its next VIEW-CHANGE still carries it.
  void CheckCertsSurvived(const SimReplica& r);
  void Persist(SimReplica& r, const Persist& p);
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
  // Views reached stay below a bound linear in the faults injected.
  void ViewBoundCheck();
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
  void ByzantineSend(SimReplica& r, Outbound o);
  void ByzantineOnReceive(SimReplica& r, const EnvPtr& e);
  void ByzantineTick(SimReplica& r);
  v1::Envelope Tamper(const SimReplica& r, const v1::Envelope& e,
                      int64_t view_delta, int64_t seq_delta, bool digest);

  // Clients.
  void ClientTick(SimClient& c);
  void ClientReceive(SimClient& c, const v1::Envelope& e);
  // Signs and sends request `number` carrying `op` for client c.
  EnvPtr ClientSend(SimClient& c, uint64_t number, const std::string& op);
  // Scenario stale-numbers: the number of a new request, which may be one
  // below the client's last (clock stepped back) or overtaken by a higher
  // one sent just before it (pipelining).
  uint64_t StaleScenarioNumber(SimClient& c, const std::string& op);
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
  ledger::ProtocolParams params_;
  double drop_ = 0, dup_ = 0;
  uint64_t delay_max_ = 1;
  uint64_t client_timeout_ticks_ = 40;
  uint64_t liveness_ticks_ = 4000;
  // What the shell refuses before the core (common/wire_limits.h), and
  // the bound every certificate and proof a correct replica keeps obeys.
  ledger::WireLimits limits_;
  uint64_t pad_silent_tick_ = 0;
  // Rejoin scenarios: how the victim is taken out, and whether the clients
  // keep sending after it returns.
  bool rejoin_ = false, stall_ = false, busy_ = false;
  // Scenario power-loss: episodes so far and in all; then one forced view
  // change (the primary cut off).
  uint64_t power_losses_ = 0, power_losses_max_ = 0;
  bool view_change_forced_ = false;
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
  std::unique_ptr<SimCrypto> crypto_;
  std::vector<std::unique_ptr<SimReplica>> replicas_;
  std::vector<std::unique_ptr<SimClient>> clients_;
  std::priority_queue<Packet, std::vector<Packet>, std::greater<Packet>> net_;
  uint64_t order_ = 0;
  uint64_t tick_ = 0;
  ledger::crypto::Sha256Hasher trace_;

  // Checker state.
  std::map<uint64_t, Digest> agreed_batch_;  // seq -> batch digest
  std::map<uint64_t, Digest> agreed_state_;  // seq -> state digest
  std::map<std::pair<uint64_t, uint64_t>, Digest> submitted_;  // op hash
  std::map<std::pair<uint64_t, uint64_t>, std::string> results_;
  std::map<std::pair<uint64_t, uint64_t>, Digest> prepared_;  // (v,s) -> d
  // Results clients accepted with f+1 matching replies.
  std::map<std::pair<uint64_t, uint64_t>, std::string> acknowledged_;
};

void Simulation::Setup() {
  n_ = opt_.replicas;
  f_ = (n_ - 1) / 3;
  const std::string& sc = opt_.scenario;
  const bool lossy = sc != "fair" && sc != "queue-full";
  const bool byzantine = sc == "byzantine" || sc == "small-window";
  // corrupt-primary: a lossy network and a Byzantine primary (below).
  uint32_t K = static_cast<uint32_t>(rng_.Pick<uint64_t>({4, 8, 16}));
  if (sc == "small-window") K = static_cast<uint32_t>(rng_.Range(1, 3));
  params_.checkpoint_interval = K;
  params_.watermark_window = K * (rng_.Chance(0.5) ? 2 : 4);
  params_.batch_requests_max =
      static_cast<uint32_t>(rng_.Pick<uint64_t>({1, 2, 5, 10, 32}));
  params_.batch_bytes_max =
      rng_.Chance(0.2) ? 600 : ledger::ProtocolParams::kDefaultBatchBytesMax;
  params_.batch_delay_ticks = static_cast<uint32_t>(rng_.Range(0, 4));
  params_.tick_ms = kTickMs;
  params_.request_queue_max = 1000;
  const uint32_t clients = static_cast<uint32_t>(rng_.Range(1, 8));
  if (sc == "queue-full") {
    params_.request_queue_max = static_cast<uint32_t>(rng_.Range(1, 2));
  }
  stale_numbers_ = sc == "stale-numbers";
  if (lossy) {
    drop_ = static_cast<double>(rng_.Range(0, 20)) / 100.0;
    dup_ = static_cast<double>(rng_.Range(0, 10)) / 100.0;
    delay_max_ = rng_.Range(2, 12);
  } else {
    delay_max_ = rng_.Range(1, 3);
  }
  crypto_ = std::make_unique<SimCrypto>(n_, clients, opt_.real_crypto);
  // Drawn after everything the older scenarios draw, so their seeds keep
  // their set-ups.
  const bool fault_scenario = sc == "crash" || sc == "partition" ||
                              sc == "byzantine-primary" ||
                              sc == "byzantine-view-change" || sc == "padding";
  if (fault_scenario) {
    params_.view_change_timeout_ticks =
        static_cast<uint32_t>(rng_.Range(60, 200));
    serve_latest_proof_ = rng_.Chance(0.5);
    crashes_ = sc == "crash";
    wipes_ = crashes_ && rng_.Chance(0.5);
    partitions_ = sc == "partition" || sc == "byzantine-view-change" ||
                  (sc == "crash" && rng_.Chance(0.3));
    partition_primary_ = sc == "byzantine-view-change";
    // Liveness is owed once faults end: allow for the back-off of the
    // view-change timer (capped at 32x) and a few view changes.
    liveness_ticks_ = 6000 + 3 * 32ull * params_.view_change_timeout_ticks;
  }
  if (sc == "power-loss") {
    params_.view_change_timeout_ticks =
        static_cast<uint32_t>(rng_.Range(60, 200));
    serve_latest_proof_ = rng_.Chance(0.5);
    power_losses_max_ = rng_.Range(2, 5);
    liveness_ticks_ = 6000 + 3 * 32ull * params_.view_change_timeout_ticks;
  }
  rejoin_ =
      sc == "restart-during-view-change" || sc == "stall-through-view-change";
  if (rejoin_) {
    params_.view_change_timeout_ticks =
        static_cast<uint32_t>(rng_.Range(60, 200));
    serve_latest_proof_ = rng_.Chance(0.5);
    stall_ = sc == "stall-through-view-change";
    busy_ = rng_.Chance(0.5);
    held_drop_ = rng_.Chance(0.5) ? 0 : 0.5;
    held_max_ = rng_.Pick<uint64_t>({0, 16, 256, UINT64_MAX});
    liveness_ticks_ = 6000 + 3 * 32ull * params_.view_change_timeout_ticks;
  }
  blocked_.assign(n_, std::vector<bool>(n_, false));

  uint32_t byz = 0;
  if (byzantine)
    byz = rng_.Chance(0.75) ? f_ : static_cast<uint32_t>(rng_.Range(1, f_));
  std::vector<uint32_t> backups;
  for (uint32_t i = 1; i < n_; ++i) backups.push_back(i);
  std::set<uint32_t> byz_ids;
  while (byz_ids.size() < byz) byz_ids.insert(rng_.Pick(backups));
  // A primary that corrupts the batch for one backup at a time: the only
  // Byzantine replica, so the others keep quorums without a view change.
  if (sc == "corrupt-primary") byz_ids = {0};
  // The primary of view 0 is Byzantine (and of views n, 2n, ...); with
  // n >= 7 some backups also lie in view changes.
  std::map<uint32_t, Behaviour> chosen;
  if (sc == "byzantine-primary") {
    byz_ids = {0};
    chosen[0] = rng_.Pick(kPrimaryBehaviours);
    for (uint32_t i = 1; i < f_ && rng_.Chance(0.7); ++i) {
      byz_ids.insert(i);  // Primaries of views 1.. : bad NEW-VIEWs too.
      chosen[i] = rng_.Pick(kViewChangeBehaviours);
    }
  }
  // f backups ask for view changes nobody needs; nothing else goes wrong
  // (apart from a lossy network).
  if (sc == "unprovoked-view-change") {
    byz_ids.clear();
    while (byz_ids.size() < f_) byz_ids.insert(rng_.Pick(backups));
    for (uint32_t i : byz_ids) chosen[i] = Behaviour::kUnprovokedViewChange;
  }
  // Replica 1 (primary of view 1) and others lie in view changes; the
  // honest primary of view 0 is cut off now and then to force them.
  if (sc == "byzantine-view-change") {
    byz_ids.clear();
    for (uint32_t i = 1; i <= f_; ++i) {
      byz_ids.insert(i);
      chosen[i] =
          i == 1 ? Behaviour::kBadNewView : rng_.Pick(kViewChangeBehaviours);
    }
    if (rng_.Chance(0.5)) chosen[1] = rng_.Pick(kViewChangeBehaviours);
  }

  // f replicas, the primary of view 0 possibly among them, pad everything
  // they sign, then fall silent.
  if (sc == "padding") {
    std::vector<uint32_t> all;
    for (uint32_t i = 0; i < n_; ++i) all.push_back(i);
    byz_ids.clear();
    while (byz_ids.size() < f_) byz_ids.insert(rng_.Pick(all));
    for (uint32_t i : byz_ids) chosen[i] = Behaviour::kPadVotes;
    pad_silent_tick_ = rng_.Range(300, 1500);
  }
  limits_ = ledger::WireLimits::For(n_, params_);

  Options o;
  o.n = n_;
  o.f = f_;
  o.params = params_;
  std::string byz_desc;
  for (uint32_t i = 0; i < n_; ++i) {
    auto r = std::make_unique<SimReplica>();
    r->id = i;
    r->signer = crypto_->ReplicaSigner(i);
    o.id = ReplicaId(i);
    r->core = std::make_unique<Core>(o, r->signer.get(), &crypto_->verifier());
    r->clock_offset_ms = static_cast<int64_t>(rng_.Range(0, 100)) - 50;
    if (byz_ids.count(i)) {
      r->byzantine = true;
      if (chosen.count(i)) {
        r->behaviour = chosen[i];
      } else {
        r->behaviour =
            i == 0 ? Behaviour::kCorruptBatch : rng_.Pick(kAllBehaviours);
      }
      absl::StrAppend(&byz_desc, byz_desc.empty() ? "" : ",", i, ":",
                      BehaviourName(r->behaviour));
    }
    replicas_.push_back(std::move(r));
  }
  for (uint32_t c = 1; c <= clients; ++c) {
    auto cl = std::make_unique<SimClient>();
    cl->id = c;
    cl->signer = crypto_->ClientSigner(c);
    cl->total = power_losses_max_ > 0 ? rng_.Range(20, 40) : rng_.Range(4, 16);
    clients_.push_back(std::move(cl));
  }
  result_.setup = absl::StrCat(
      "n=", n_, " K=", K, " L=", params_.watermark_window,
      " batch=", params_.batch_requests_max, "/", params_.batch_bytes_max,
      "B delay=", params_.batch_delay_ticks,
      " queue=", params_.request_queue_max, " clients=", clients,
      " drop=", drop_, " dup=", dup_, " delay_max=", delay_max_, " byzantine=[",
      byz_desc, "]");
  if (power_losses_max_ > 0) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    " power_losses=", power_losses_max_,
                    serve_latest_proof_ ? " latest-proof" : "");
  }
  if (rejoin_) {
    absl::StrAppend(
        &result_.setup, " vc_timeout=", params_.view_change_timeout_ticks,
        busy_ ? " busy" : " idle", " held_drop=", held_drop_,
        " held_max=", held_max_, serve_latest_proof_ ? " latest-proof" : "");
  }
  if (fault_scenario) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    crashes_ ? " crashes" : "", wipes_ ? "+wipes" : "",
                    partitions_ ? " partitions" : "",
                    serve_latest_proof_ ? " latest-proof" : "");
  }
}

// --- Network -----------------------------------------------------------------

void Simulation::Enqueue(bool to_client, uint64_t to, EnvPtr e,
                         uint64_t extra) {
  ++result_.messages_sent;
  if (!to_client && from_ < n_ && blocked_[from_][to]) {
    ++result_.messages_dropped;  // Partitioned.
    return;
  }
  if (rng_.Chance(drop_)) {
    ++result_.messages_dropped;
    return;
  }
  const int copies = rng_.Chance(dup_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Packet p;
    p.at = tick_ + rng_.Range(1, delay_max_) + extra;
    p.order = order_++;
    p.to_client = to_client;
    p.to = to;
    p.envelope = e;
    net_.push(std::move(p));
  }
}

void Simulation::SendToReplica(uint32_t to, EnvPtr e) {
  CHECK_LT(to, n_);
  Enqueue(false, to, std::move(e));
}

void Simulation::SendToClient(uint64_t to, EnvPtr e) {
  Enqueue(true, to, std::move(e));
}

void Simulation::Deliver(const Packet& p) {
  const v1::Envelope& e = *p.envelope;
  std::string head;
  ledger::codec::Writer w(&head);
  w.PutU64(tick_);
  w.PutU8(p.to_client ? 1 : 0);
  w.PutU64(p.to);
  w.PutU32(static_cast<uint32_t>(e.type()));
  w.PutU64(e.sender());
  w.PutU32(static_cast<uint32_t>(e.payload().size()));
  trace_.Update(head);
  trace_.Update(e.payload());
  // The shell verifies every envelope before the core sees it, and
  // refuses what is over its type's limit or not canonical.
  if (!crypto_->verifier().Verify(e)) return;
  if (!p.to_client &&
      ledger::CheckWireMessage(e, limits_) != ledger::WireError::kOk) {
    return;
  }
  if (p.to_client) {
    if (p.to >= 1 && p.to <= clients_.size()) {
      ClientReceive(*clients_[p.to - 1], e);
    }
    return;
  }
  SimReplica& r = *replicas_[p.to];
  if (r.down) return;
  if (r.stalled) {
    if (r.held.size() < held_max_) r.held.push_back(p.envelope);
    return;
  }
  DeliverToReplica(r, p.envelope);
}

// --- Replicas
// -----------------------------------------------------------------

void Simulation::DeliverToReplica(SimReplica& r, const EnvPtr& e) {
  from_ = r.id;
  if (r.byzantine) ByzantineOnReceive(r, e);
  // The shell answers a FETCH_REQUEST from its ledger; the core sees it too
  // (a requester in an older view gets the NEW-VIEW).
  if (e->type() == v1::MESSAGE_TYPE_FETCH_REQUEST) ServeFetch(r, *e);
  if (e->type() == v1::MESSAGE_TYPE_VIEW_CHANGE) {
    v1::ViewChange vc;
    if (vc.ParseFromString(e->payload()) && vc.replica_id() == e->sender()) {
      uint64_t& heard = r.view_change_heard[e->sender()];
      heard = std::max<uint64_t>(heard, vc.new_view());
    }
  }
  r.core->Step(*e);
  Drain(r);
}

void Simulation::ServeFetch(SimReplica& r, const v1::Envelope& e) {
  v1::FetchRequest req;
  if (!req.ParseFromString(e.payload()) || req.replica_id() != e.sender() ||
      e.sender() >= n_) {
    return;
  }
  if (r.byzantine && Pick(r) == Behaviour::kSilent) return;
  v1::FetchResponse resp;
  resp.set_replica_id(r.id);
  const uint64_t from = std::max<uint64_t>(req.from_seq(), 1);
  const uint64_t count = std::min<uint32_t>(req.max_blocks(), 64);
  uint64_t last = 0;
  for (uint64_t s = from; s < from + count && s <= r.blocks.size(); ++s) {
    const CommittedBatch& b = r.blocks[s - 1];
    v1::CertifiedBatch* cb = resp.add_batches();
    *cb->mutable_pre_prepare() = b.pre_prepare;
    *cb->mutable_certificate() = b.certificate;
    last = s;
  }
  if (serve_latest_proof_) {
    // As ledgerd does: the current stable checkpoint, however far ahead.
    if (r.core->stable_checkpoint().seq() > 0) {
      *resp.mutable_stable_checkpoint() = r.core->stable_checkpoint();
    }
  } else {
    // The proof of the highest stable checkpoint the batches reach.
    auto it = r.proofs.upper_bound(std::max(last, from));
    if (it != r.proofs.begin()) {
      --it;
      *resp.mutable_stable_checkpoint() = it->second;
    }
  }
  // A corrupting primary serves honestly: without a view change (next
  // issue) the backups it cheated can only recover through fetching.
  if (r.byzantine && resp.batches_size() > 0 &&
      r.behaviour != Behaviour::kCorruptBatch &&
      Pick(r) != Behaviour::kReplay) {
    // Serve garbage: a certificate with one commit duplicated.
    v1::CommitCertificate* cert =
        resp.mutable_batches(0)->mutable_certificate();
    if (cert->commits_size() > 1) *cert->mutable_commits(1) = cert->commits(0);
  }
  SendToReplica(
      static_cast<uint32_t>(e.sender()),
      std::make_shared<v1::Envelope>(r.signer->Sign(
          v1::MESSAGE_TYPE_FETCH_RESPONSE, resp.SerializeAsString())));
}

// The in-memory protocol store, with protocol_store.cc's semantics.
void Simulation::Persist(SimReplica& r, const struct Persist& p) {
  SimReplica::Durable& d = r.durable;
  if (p.view) d.view = p.view->value();
  for (const v1::Envelope& e : p.entries) {
    if (e.sender() == r.id) r.persisted.insert(Sha256(e.payload()));
    uint64_t seq = 0;
    switch (e.type()) {
      case v1::MESSAGE_TYPE_PRE_PREPARE: {
        v1::PrePrepare m;
        CHECK(m.ParseFromString(e.payload()));
        seq = m.seq();
        break;
      }
      case v1::MESSAGE_TYPE_PREPARE: {
        v1::Prepare m;
        CHECK(m.ParseFromString(e.payload()));
        seq = m.seq();
        break;
      }
      case v1::MESSAGE_TYPE_COMMIT: {
        v1::Commit m;
        CHECK(m.ParseFromString(e.payload()));
        seq = m.seq();
        break;
      }
      case v1::MESSAGE_TYPE_CHECKPOINT: {
        v1::Checkpoint m;
        CHECK(m.ParseFromString(e.payload()));
        seq = m.seq();
        break;
      }
      case v1::MESSAGE_TYPE_NEW_VIEW:
        d.new_view = e;
        continue;
      default:
        Fail(absl::StrCat("replica ", r.id, " persists a ",
                          v1::MessageType_Name(e.type())));
        continue;
    }
    d.entries[{seq, static_cast<uint32_t>(e.type()), d.counter++}] = e;
  }
  if (p.stable_checkpoint) {
    d.stable = *p.stable_checkpoint;
    d.entries.erase(
        d.entries.begin(),
        d.entries.lower_bound({p.stable_checkpoint->seq() + 1, 0, 0}));
  }
}

void Simulation::Drain(SimReplica& r) {
  from_ = r.id;
  while (!r.down && r.core->HasReady()) {
    Ready rd = r.core->TakeReady();
    Persist(r, rd.persist);
    if (!r.byzantine) CheckViewRules(r, rd);  // Before a crash loses it.
    if (r.crash_mid_ready) {  // Durable, but nothing of it left the box.
      Crash(r);
      return;
    }
    // Persist before send. Nothing crashes in this simulator yet, but every
    // vote a correct replica sends must have been listed for persisting in
    // this Ready or an earlier one; keep the proofs to serve fetches.
    if (rd.persist.stable_checkpoint) {
      r.proofs[rd.persist.stable_checkpoint->seq()] =
          *rd.persist.stable_checkpoint;
      const size_t bytes = rd.persist.stable_checkpoint->ByteSizeLong();
      if (!r.byzantine && bytes > limits_.checkpoint_proof_max) {
        Fail(absl::StrCat("replica ", r.id, ": stable checkpoint proof of ",
                          bytes, " bytes, over its bound of ",
                          limits_.checkpoint_proof_max));
      }
    }
    if (!r.byzantine) {
      for (const Outbound& o : rd.messages) {
        const v1::MessageType t = o.envelope.type();
        if (t == v1::MESSAGE_TYPE_VIEW_CHANGE) {
          v1::ViewChange vc;
          CHECK(vc.ParseFromString(o.envelope.payload()));
          if (vc.new_view() > r.durable.view) {
            Fail(absl::StrCat("persist-before-send: replica ", r.id,
                              " sends VIEW-CHANGE for ", vc.new_view(),
                              " with view ", r.durable.view, " durable"));
          }
        }
        if (t == v1::MESSAGE_TYPE_NEW_VIEW &&
            (!r.durable.new_view ||
             r.durable.new_view->payload() != o.envelope.payload())) {
          Fail(absl::StrCat("persist-before-send: replica ", r.id,
                            " sends a NEW-VIEW that is not durable"));
        }
        if ((t == v1::MESSAGE_TYPE_PRE_PREPARE ||
             t == v1::MESSAGE_TYPE_PREPARE || t == v1::MESSAGE_TYPE_COMMIT ||
             t == v1::MESSAGE_TYPE_CHECKPOINT) &&
            !r.persisted.count(Sha256(o.envelope.payload()))) {
          Fail(absl::StrCat("persist-before-send: replica ", r.id, " sends a ",
                            v1::MessageType_Name(t),
                            " it never listed in Ready.persist"));
        }
      }
    }
    for (Outbound& o : rd.messages) Route(r, std::move(o));
    for (const CommittedBatch& b : rd.execute) Execute(r, b);
    for (ClientReply& cr : rd.replies) {
      if (r.byzantine) {
        const Behaviour b = Pick(r);
        if (b == Behaviour::kSilent) continue;
        if (b == Behaviour::kWrongDigest || b == Behaviour::kGarbage) {
          v1::Reply rep;
          if (rep.ParseFromString(cr.envelope.payload())) {
            rep.set_result("forged-result");
            cr.envelope =
                r.signer->Sign(v1::MESSAGE_TYPE_REPLY, rep.SerializeAsString());
          }
        }
      }
      SendToClient(cr.client_id.value(),
                   std::make_shared<v1::Envelope>(std::move(cr.envelope)));
    }
    if (!r.byzantine) {
      absl::Status s = r.core->Invariants();
      if (!s.ok()) Fail(absl::StrCat("replica ", r.id, ": ", s.message()));
    }
  }
}

void Simulation::Route(SimReplica& r, Outbound o) {
  if (r.byzantine) {
    ByzantineSend(r, std::move(o));
    return;
  }
  EnvPtr e = std::make_shared<v1::Envelope>(std::move(o.envelope));
  if (o.broadcast) {
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, e);
    }
  } else {
    SendToReplica(o.to.value(), e);
  }
}

void Simulation::CheckCertifiedBatch(const SimReplica& r,
                                     const CommittedBatch& b) {
  const Verifier& ver = crypto_->verifier();
  const std::string who =
      absl::StrCat("replica ", r.id, " seq ", b.seq.value());
  v1::PrePrepare pp;
  if (!ver.Verify(b.pre_prepare) ||
      b.pre_prepare.type() != v1::MESSAGE_TYPE_PRE_PREPARE ||
      !pp.ParseFromString(b.pre_prepare.payload())) {
    Fail(who + ": executed a batch without a valid pre-prepare");
    return;
  }
  if (b.pre_prepare.sender() != b.view.value() % n_) {
    Fail(absl::StrCat(who, ": pre-prepare signed by ", b.pre_prepare.sender(),
                      ", not the primary of view ", b.view.value()));
  }
  if (pp.view() != b.view.value() || pp.seq() != b.seq.value() ||
      pp.timestamp_ms() != b.timestamp_ms ||
      pp.batch_digest() != b.batch_digest.ToBytes()) {
    Fail(who + ": batch fields differ from its pre-prepare");
  }
  if (ledger::BatchDigest(pp.requests()) != b.batch_digest) {
    Fail(who + ": batch digest does not match the requests");
  }
  std::set<uint64_t> senders;
  for (const v1::Envelope& c : b.certificate.commits()) {
    v1::Commit m;
    if (!ver.Verify(c) || c.type() != v1::MESSAGE_TYPE_COMMIT ||
        !m.ParseFromString(c.payload()) || m.replica_id() != c.sender() ||
        m.view() != b.view.value() || m.seq() != b.seq.value() ||
        m.batch_digest() != b.batch_digest.ToBytes()) {
      Fail(who + ": certificate holds a commit that does not match");
      return;
    }
    senders.insert(c.sender());
  }
  if (senders.size() < 2 * f_ + 1) {
    Fail(absl::StrCat(who, ": certificate has ", senders.size(),
                      " distinct commits"));
  }
  if (b.certificate.ByteSizeLong() > limits_.commit_certificate_max) {
    Fail(absl::StrCat(who, ": certificate of ", b.certificate.ByteSizeLong(),
                      " bytes, over its bound of ",
                      limits_.commit_certificate_max));
  }
  // Validity: only requests that clients submitted execute.
  for (const v1::Envelope& re : pp.requests()) {
    v1::Request req;
    if (!ver.Verify(re) || !req.ParseFromString(re.payload())) {
      Fail(who + ": executes a request without a valid client signature");
      return;
    }
    auto it = submitted_.find({req.client_id(), req.request_number()});
    if (it == submitted_.end() || it->second != Sha256(req.operation())) {
      Fail(absl::StrCat(who, ": executes request (", req.client_id(), ", ",
                        req.request_number(), ") that was never submitted"));
    }
  }
}

void Simulation::Execute(SimReplica& r, const CommittedBatch& b) {
  const uint64_t s = b.seq.value();
  if (s != r.ledger.height() + 1) {
    Fail(absl::StrCat("replica ", r.id, " executes seq ", s, " after ",
                      r.ledger.height()));
    return;
  }
  if (!r.byzantine) {
    CheckCertifiedBatch(r, b);
    auto [it, fresh] = agreed_batch_.emplace(s, b.batch_digest);
    if (!fresh && it->second != b.batch_digest) {
      Fail(absl::StrCat("agreement: replica ", r.id, " executes ",
                        b.batch_digest.ToHex().substr(0, 12), " at seq ", s,
                        ", another correct replica executed ",
                        it->second.ToHex().substr(0, 12)));
    }
  }
  MemLedger::Outcome out = r.ledger.Apply(b);
  std::string head;
  ledger::codec::Writer w(&head);
  w.PutU32(r.id);
  w.PutU64(s);
  w.PutRaw(r.ledger.state().view());
  trace_.Update(head);
  if (!r.byzantine) {
    ++result_.batches_executed;
    auto [it, fresh] = agreed_state_.emplace(s, r.ledger.state());
    if (!fresh && it->second != r.ledger.state()) {
      Fail(absl::StrCat("agreement: replica ", r.id,
                        " has a different state digest after seq ", s));
    }
    for (const auto& key : out.executed) {
      if (!r.executed.insert(key).second) {
        Fail(absl::StrCat("exactly-once: replica ", r.id, " executed (",
                          key.first, ", ", key.second, ") twice"));
      }
    }
    for (const ExecutedReply& rep : out.replies) {
      const auto key =
          std::make_pair(rep.client_id.value(), rep.request_number.value());
      auto [it2, fresh2] = results_.emplace(key, rep.result);
      if (!fresh2 && it2->second != rep.result) {
        Fail(absl::StrCat("agreement: replica ", r.id,
                          " produced another result for (", key.first, ", ",
                          key.second, ")"));
      }
    }
  }
  r.blocks.push_back(b);
  for (ExecutedReply& st : out.stale) out.replies.push_back(std::move(st));
  r.core->OnExecuted(b.seq, r.ledger.state(), std::move(out.replies));
}

// No two correct replicas hold prepared certificates for one (view, seq)
// with different digests (§4.2 safety of the prepare phase).
void Simulation::CheckPrepared() {
  for (const auto& r : replicas_) {
    if (r->byzantine || r->down) continue;
    for (const Core::PreparedEntry& p : r->core->PreparedEntries()) {
      auto [it, fresh] = prepared_.emplace(
          std::make_pair(p.view.value(), p.seq.value()), p.digest);
      if (!fresh && it->second != p.digest) {
        Fail(absl::StrCat("prepared certificates conflict at view ",
                          p.view.value(), " seq ", p.seq.value(), " (replica ",
                          r->id, ")"));
      }
    }
  }
}

// §4.4 restated from the outside, per Ready of a correct replica:
// - it enters a view only through a NEW-VIEW whose O is the one recomputed
//   from its V (a new primary's own included);
// - it moves to a higher view without a NEW-VIEW only on its own timer or
//   on VIEW-CHANGEs for that view or higher from f+1 distinct others;
// - once it has executed a batch of its current view (active), its
//   view-change timeout is back at its base.
void Simulation::CheckViewRules(SimReplica& r, const Ready& rd) {
  const Core& core = *r.core;
  const std::string who = absl::StrCat("replica ", r.id, ": ");
  for (const v1::Envelope& e : rd.persist.entries) {
    if (e.type() == v1::MESSAGE_TYPE_NEW_VIEW) CheckNewView(r, e);
  }
  const uint64_t expiries = core.stats().view_change_timer_expiries;
  const bool timer = expiries > r.timer_expiries_seen;
  r.timer_expiries_seen = expiries;
  const uint64_t view = core.view().value();
  if (view > r.view_seen && !core.view_active() && !timer) {
    uint32_t asking = 0;
    for (const auto& [sender, target] : r.view_change_heard) {
      if (sender != r.id && target >= view) ++asking;
    }
    if (asking < f_ + 1) {
      Fail(absl::StrCat(who, "moved to view ", view, " on ", asking,
                        " VIEW-CHANGEs and no timer expiry (§4.4: f+1)"));
    }
  }
  r.view_seen = std::max(r.view_seen, view);
  const uint64_t base = params_.view_change_timeout_ticks;
  for (const CommittedBatch& b : rd.execute) {
    if (core.view_active() && b.view.value() == view &&
        core.view_change_timeout_ticks() != base) {
      Fail(absl::StrCat(who, "executed a batch of its view ", view,
                        " but its view-change timeout is ",
                        core.view_change_timeout_ticks(), ", base ", base));
    }
  }
}

// The NEW-VIEW a correct replica entered by: signed by primary(v), V holds
// 2f+1 validly signed VIEW-CHANGEs for v from distinct replicas, and O is
// what §4.4 computes from V: min-s the highest s*, and for every seq up to
// the highest certified one the batch of the highest-view certificate
// (timestamp kept), else a null batch with the timestamp before it.
void Simulation::CheckNewView(const SimReplica& r, const v1::Envelope& e) {
  const Verifier& ver = crypto_->verifier();
  const std::string who = absl::StrCat("replica ", r.id, " entered by a ");
  v1::NewView nv;
  if (!ver.Verify(e) || !nv.ParseFromString(e.payload()) ||
      e.sender() != nv.view() % n_) {
    Fail(who + "NEW-VIEW not signed by the primary of its view");
    return;
  }
  std::set<uint64_t> senders;
  uint64_t min_s = 0;
  // seq -> (view, digest, timestamp) of the highest-view certificate.
  std::map<uint64_t, std::tuple<uint64_t, std::string, uint64_t>> best;
  for (const v1::Envelope& ve : nv.view_changes()) {
    v1::ViewChange vc;
    if (!ver.Verify(ve) || !vc.ParseFromString(ve.payload()) ||
        vc.new_view() != nv.view() || vc.replica_id() != ve.sender()) {
      Fail(who + "NEW-VIEW with an invalid VIEW-CHANGE in V");
      return;
    }
    senders.insert(ve.sender());
    min_s = std::max(min_s, vc.stable_checkpoint().seq());
    for (const v1::PreparedCertificate& cert : vc.prepared()) {
      v1::PrePrepare pp;
      CHECK(pp.ParseFromString(cert.pre_prepare().payload()));
      auto it = best.find(pp.seq());
      if (it == best.end() || pp.view() > std::get<0>(it->second)) {
        best[pp.seq()] = {pp.view(), pp.batch_digest(), pp.timestamp_ms()};
      }
    }
  }
  if (senders.size() < 2 * f_ + 1 ||
      senders.size() != static_cast<size_t>(nv.view_changes_size())) {
    Fail(absl::StrCat(who, "NEW-VIEW whose V holds ", senders.size(),
                      " distinct VIEW-CHANGEs"));
    return;
  }
  best.erase(best.begin(), best.upper_bound(min_s));
  const uint64_t max_s = best.empty() ? min_s : best.rbegin()->first;
  if (static_cast<uint64_t>(nv.pre_prepares_size()) != max_s - min_s) {
    Fail(absl::StrCat(who, "NEW-VIEW with ", nv.pre_prepares_size(),
                      " O entries; V gives ", max_s - min_s));
    return;
  }
  uint64_t ts = 0;
  for (uint64_t s = min_s + 1; s <= max_s; ++s) {
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(nv.pre_prepares(s - min_s - 1).payload()));
    auto it = best.find(s);
    std::string digest = ledger::NullBatchDigest().ToBytes();
    if (it != best.end()) {
      digest = std::get<1>(it->second);
      ts = std::max(ts, std::get<2>(it->second));
    }
    const uint64_t want_ts = it != best.end() ? std::get<2>(it->second) : ts;
    if (pp.seq() != s || pp.view() != nv.view() ||
        pp.batch_digest() != digest || pp.timestamp_ms() != want_ts) {
      Fail(absl::StrCat(who, "NEW-VIEW whose O entry at seq ", s,
                        " differs from the one V gives"));
      return;
    }
  }
}

void Simulation::CheckCertsSurvived(const SimReplica& r) {
  std::map<uint64_t, Core::PreparedEntry> now;
  for (const Core::PreparedEntry& p : r.core->PreparedCertificates()) {
    now.emplace(p.seq.value(), p);
  }
  for (const Core::PreparedEntry& p : r.certs_at_crash) {
    if (p.seq <= r.core->low_watermark()) continue;
    auto it = now.find(p.seq.value());
    if (it == now.end() || it->second.view < p.view ||
        (it->second.view == p.view && it->second.digest != p.digest)) {
      Fail(absl::StrCat("replica ", r.id, " lost its prepared certificate at ",
                        "seq ", p.seq.value(), " (view ", p.view.value(),
                        ") in a crash and restart"));
      return;
    }
  }
}

// --- Crashes and partitions
// ---------------------------------------------------

void Simulation::Crash(SimReplica& r) {
  CHECK(!r.down);
  r.down = true;
  r.crash_mid_ready = false;
  r.certs_at_crash = r.core->PreparedCertificates();
  r.core.reset();  // Everything not durable is gone.
  last_disturbance_ = tick_;
  ++crashes_done_;
  if (r.wipe_on_crash) {
    wiped_.insert(r.id);
    // A wiped data dir: no protocol store, no ledger. The replica comes
    // back as a new one and rebuilds everything by state transfer; what it
    // voted before is forgotten (so wipes only run without Byzantine
    // replicas, where that cannot be exploited).
    r.wipe_on_crash = false;
    r.durable = SimReplica::Durable();
    r.ledger = MemLedger();
    r.blocks.clear();
    r.proofs.clear();
    r.executed.clear();
    r.persisted.clear();
    r.certs_at_crash.clear();  // A wiped replica is faulty.
  }
}

void Simulation::Restart(SimReplica& r) {
  CHECK(r.down);
  Options o;
  o.id = ReplicaId(r.id);
  o.n = n_;
  o.f = f_;
  o.params = params_;
  r.core = std::make_unique<Core>(o, r.signer.get(), &crypto_->verifier());
  r.timer_expiries_seen = 0;  // A new core counts from zero.
  for (const auto& [client, rec] : r.ledger.clients()) {
    r.core->RestoreClient(ClientId(client), RequestNumber(rec.first),
                          rec.second);
  }
  RestoreState st;
  st.last_executed = Seq(r.ledger.height());
  st.last_timestamp_ms = r.ledger.last_timestamp_ms();
  st.view = View(r.durable.view);
  st.stable_checkpoint = r.durable.stable;
  for (const auto& [key, e] : r.durable.entries) st.entries.push_back(e);
  if (r.durable.new_view) st.entries.push_back(*r.durable.new_view);
  absl::Status s = r.core->Restore(st);
  if (!s.ok()) {
    Fail(absl::StrCat("replica ", r.id, " cannot restart: ", s.message()));
    return;
  }
  r.down = false;
  last_disturbance_ = tick_;
  CheckCertsSurvived(r);
  Drain(r);
}

// The primary of the highest view a correct, running replica is in.
uint32_t Simulation::CurrentPrimary() const {
  uint64_t v = 0;
  for (const auto& r : replicas_) {
    if (!r->down && !r->byzantine) v = std::max(v, r->core->view().value());
  }
  return static_cast<uint32_t>(v % n_);
}

void Simulation::Heal() {
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  partition_until_ = 0;
  last_disturbance_ = tick_;
}

void Simulation::FaultTick() {
  if (partition_until_ != 0 && tick_ >= partition_until_) Heal();
  for (auto& r : replicas_) {
    if (r->down && tick_ >= r->down_until) Restart(*r);
  }
  if (crashes_) {
    uint32_t down = 0;
    for (const auto& r : replicas_) down += r->down ? 1 : 0;
    if (next_crash_ == 0) next_crash_ = rng_.Range(10, 200);
    if (down < f_ && tick_ >= next_crash_ && tick_ < kFaultsEndTick) {
      next_crash_ = tick_ + rng_.Range(50, 800);
      // The primary half the time: the view change is what is tested.
      uint32_t victim = rng_.Chance(0.5)
                            ? CurrentPrimary()
                            : static_cast<uint32_t>(rng_.Below(n_));
      SimReplica& r = *replicas_[victim];
      if (!r.down && !r.byzantine) {
        r.down_until = tick_ + rng_.Range(30, 1500);
        // A wiped replica forgets its votes: it is a faulty replica, so at
        // most f distinct replicas are ever wiped (PBFT promises nothing
        // beyond f faulty ones; docs/operations.md, lost data directory).
        const bool wipe = wipes_ && rng_.Chance(0.3);
        r.wipe_on_crash =
            wipe && (wiped_.size() < f_ || wiped_.count(r.id) > 0);
        if (rng_.Chance(0.3)) {
          r.crash_mid_ready = true;  // At its next Ready, after persisting.
          r.down_until += 1;
        } else {
          Crash(r);
        }
      }
    }
  }
  if (partitions_ && next_partition_ == 0) {
    next_partition_ = rng_.Range(10, 300);
  }
  if (partitions_ && partition_until_ == 0 && tick_ >= next_partition_ &&
      tick_ < kFaultsEndTick) {
    next_partition_ = tick_ + rng_.Range(100, 1000);
    const uint64_t kind = partition_primary_ ? 0 : rng_.Below(4);
    std::vector<uint32_t> ids;
    for (uint32_t i = 0; i < n_; ++i) ids.push_back(i);
    for (uint32_t i = n_ - 1; i > 0; --i) {  // Shuffle.
      std::swap(ids[i], ids[rng_.Below(i + 1)]);
    }
    std::set<uint32_t> side;
    if (kind == 0) {  // Minority: f replicas, the primary among them.
      side.insert(CurrentPrimary());
      for (uint32_t i = 0; side.size() < f_; ++i) side.insert(ids[i]);
    } else if (kind == 1) {  // Majority lost: two halves, neither a quorum.
      for (uint32_t i = 0; i < n_ / 2; ++i) side.insert(ids[i]);
    } else {  // Minority of random replicas (maybe not the primary).
      for (uint32_t i = 0; i < rng_.Range(1, f_); ++i) side.insert(ids[i]);
    }
    for (uint32_t a = 0; a < n_; ++a) {
      for (uint32_t b = 0; b < n_; ++b) {
        if (side.count(a) == side.count(b)) continue;
        if (kind == 3) {
          // Asymmetric: the cut-off side still hears the others but is not
          // heard (or the reverse).
          blocked_[a][b] = side.count(a) > 0;
        } else {
          blocked_[a][b] = true;
        }
      }
    }
    if (kind == 3 && rng_.Chance(0.5)) {
      for (uint32_t a = 0; a < n_; ++a) {
        for (uint32_t b = 0; b < a; ++b) {
          const bool ab = blocked_[a][b];
          blocked_[a][b] = blocked_[b][a];
          blocked_[b][a] = ab;
        }
      }
    }
    partition_until_ = tick_ + rng_.Range(50, 1500);
    last_disturbance_ = tick_;
    ++partitions_done_;
  }
}

// After the workload: heal everything, restart what is down, and require
// (liveness after healing) one more request to complete and every correct
// replica to catch up; then no acknowledged request may be missing from
// any correct replica's executed history.
void Simulation::FinalCheck() {
  final_phase_ = true;
  Heal();
  drop_ = 0;
  dup_ = 0;
  for (auto& r : replicas_) {
    r->crash_mid_ready = false;
    if (r->down) Restart(*r);
  }
  if (!result_.ok) return;
  SimClient& probe = *clients_[0];
  probe.total = probe.completed + 1;
  const uint64_t bound = liveness_ticks_ + 4000;
  const bool done = TickUntil(bound, true, [&] {
    if (probe.completed < probe.total) return false;
    uint64_t top = 0;
    for (const auto& r : replicas_) {
      if (!r->byzantine) top = std::max(top, r->ledger.height());
    }
    for (const auto& r : replicas_) {
      if (!r->byzantine && r->ledger.height() < top) return false;
    }
    return true;
  });
  if (!result_.ok) return;
  if (!done) {
    std::string heights;
    for (const auto& r : replicas_) {
      absl::StrAppend(&heights, " ", r->id, ":", r->ledger.height());
      if (!r->down) {
        absl::StrAppend(&heights, "/v", r->core->view().value(),
                        r->core->view_active() ? "" : "*");
      }
    }
    Fail(absl::StrCat("liveness after healing: not done within ", bound,
                      " ticks (probe ", probe.completed, "/", probe.total,
                      "; heights", heights, ")"));
    return;
  }
  for (const auto& [key, result] : acknowledged_) {
    for (const auto& r : replicas_) {
      if (r->byzantine) continue;
      if (!r->executed.count(key)) {
        Fail(absl::StrCat("acknowledged request (", key.first, ", ", key.second,
                          ") lost: not executed at replica ", r->id));
        return;
      }
    }
  }
}

// Every correct replica holds the same block hash at every height two of
// them share (docs/storage_format.md "Block header and hash"). Headers are
// built as the ledger builds them, from the batches each replica executed
// (whatever view it committed them in), the agreed state digests, and a
// results root over the stand-in ledger's agreed per-request results.
void Simulation::ChainCheck() {
  std::map<uint64_t, std::pair<uint32_t, Digest>> agreed;  // seq -> by, hash
  for (const auto& r : replicas_) {
    if (r->byzantine) continue;
    Digest previous;  // Zero before seq 1.
    for (const CommittedBatch& b : r->blocks) {
      v1::PrePrepare pp;
      CHECK(pp.ParseFromString(b.pre_prepare.payload()));
      google::protobuf::RepeatedPtrField<std::string> results;
      for (const v1::Envelope& re : pp.requests()) {
        v1::Request req;
        CHECK(req.ParseFromString(re.payload()));
        auto it = results_.find({req.client_id(), req.request_number()});
        *results.Add() = it == results_.end() ? "" : it->second;
      }
      ledger::v1::BlockHeader h;
      h.set_height(b.seq.value());
      h.set_previous_hash(previous.ToBytes());
      h.set_requests_root(ledger::RequestsRoot(pp.requests()).ToBytes());
      h.set_batch_digest(b.batch_digest.ToBytes());
      h.set_results_root(ledger::ResultsRoot(results).ToBytes());
      h.set_state_digest(agreed_state_.at(b.seq.value()).ToBytes());
      h.set_timestamp_ms(b.timestamp_ms);
      previous = ledger::BlockHash(h);
      auto [it, fresh] =
          agreed.emplace(b.seq.value(), std::make_pair(r->id, previous));
      if (!fresh && it->second.second != previous) {
        Fail(absl::StrCat("chain: replicas ", it->second.first, " and ", r->id,
                          " have different block hashes at height ",
                          b.seq.value(), " (this one committed it in view ",
                          b.view.value(), ")"));
        return;
      }
    }
  }
}

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
    for (auto& r : replicas_) {
      if (r->down || r->stalled) continue;
      from_ = r->id;
      r->core->Tick(NowMs(*r));
      if (r->byzantine) ByzantineTick(*r);
      Drain(*r);
    }
    CheckPrepared();
    if (done()) return true;
  }
  return result_.ok && done();
}

// After the final check, without Byzantine replicas: one replica crashes,
// the others order 1-3 more requests, the clients go quiet, and the replica
// restarts a few blocks behind, usually below the next checkpoint, with no
// traffic to tell it so. It must catch up on its own (docs/protocol.md
// "Catching up in an idle cluster").
void Simulation::IdleCatchUpCheck() {
  for (const auto& r : replicas_) {
    if (r->byzantine) return;
  }
  SimReplica& lagging = *replicas_[rng_.Below(n_)];
  lagging.wipe_on_crash = false;
  Crash(lagging);
  SimClient& client = *clients_[rng_.Below(clients_.size())];
  client.total = client.completed + rng_.Range(1, 3);
  auto top = [&] {
    uint64_t h = 0;
    for (const auto& r : replicas_) h = std::max(h, r->ledger.height());
    return h;
  };
  // The others finish the requests and all reach the same height.
  const bool ordered = TickUntil(liveness_ticks_ + 4000, true, [&] {
    if (client.completed < client.total) return false;
    for (const auto& r : replicas_) {
      if (!r->down && r->ledger.height() < top()) return false;
    }
    return true;
  });
  if (!result_.ok) return;
  if (!ordered) {
    Fail(absl::StrCat("idle catch-up: requests not ordered with replica ",
                      lagging.id, " down"));
    return;
  }
  const uint64_t before = lagging.ledger.height();
  Restart(lagging);
  if (!result_.ok) return;
  // No client traffic from here on.
  const uint64_t bound = 8ull * params_.view_change_timeout_ticks + 2000;
  const bool caught_up =
      TickUntil(bound, false, [&] { return lagging.ledger.height() >= top(); });
  if (!result_.ok) return;
  if (!caught_up) {
    Fail(absl::StrCat("idle catch-up: replica ", lagging.id,
                      " restarted at height ", before, " is at ",
                      lagging.ledger.height(), " after ", bound,
                      " idle ticks; the others are at ", top()));
  }
}

// --- Views
// --------------------------------------------------------------------

// A replica whose timer expired while it was cut off moves to the next view
// alone and stays there: f+1 replicas must want a view change before the
// others follow (§4.4 liveness (c)), and it cannot go back (its VIEW-CHANGE
// may still enter a NEW-VIEW). That is allowed; being left behind is not.
bool Simulation::ViewsSettled(uint64_t* ahead) const {
  uint64_t cluster = 0;
  bool any = false;
  for (const auto& r : replicas_) {
    if (r->byzantine || r->down || r->stalled) continue;
    if (r->core->view_active()) {
      cluster = std::max(cluster, r->core->view().value());
      any = true;
    }
  }
  *ahead = 0;
  for (const auto& r : replicas_) {
    if (r->byzantine) continue;
    if (!any || r->down || r->stalled) return false;
    const uint64_t v = r->core->view().value();
    if (!r->core->view_active() && v > cluster) {
      ++*ahead;
    } else if (!r->core->view_active() || v != cluster) {
      return false;
    }
  }
  return true;
}

std::string Simulation::Views() const {
  std::string out;
  for (const auto& r : replicas_) {
    absl::StrAppend(&out, " ", r->id, ":");
    if (r->down) {
      absl::StrAppend(&out, "down");
    } else {
      absl::StrAppend(&out, "v", r->core->view().value(),
                      r->core->view_active() ? "" : "*",
                      r->byzantine ? "(byzantine)" : "");
    }
  }
  return out;
}

// After healing, with no traffic: every correct replica ends active in the
// cluster's view. One that missed a view change must learn it on its own
// (an idle probe names its view; a peer answers with its NEW-VIEW).
void Simulation::ViewCheck() {
  const uint64_t bound = 2ull * Options().idle_probe_interval_ticks +
                         8ull * params_.view_change_timeout_ticks + 1000;
  uint64_t ahead = 0;
  const bool one =
      TickUntil(bound, false, [&] { return ViewsSettled(&ahead); });
  result_.ahead_alone += ahead;
  if (result_.ok && !one) {
    Fail(absl::StrCat("view: a correct replica is behind the cluster's view ",
                      bound, " idle ticks after healing:", Views()));
  }
}

// Each crash, partition or stall may cost a few view changes (a timeout,
// a NEW-VIEW lost, a new primary that is down); nothing else may, in the
// scenarios whose primaries are correct: f replicas asking for view changes
// (unprovoked-view-change) must not move anyone. The bound leaves room for
// a lossy network's timeouts.
void Simulation::ViewBoundCheck() {
  const uint64_t faults = crashes_done_ + partitions_done_ + (rejoin_ ? 2 : 0);
  result_.faults = faults;
  for (const auto& r : replicas_) {
    if (!r->byzantine && !r->down) {
      result_.max_view = std::max(result_.max_view, r->core->view().value());
    }
  }
  const std::string& sc = opt_.scenario;
  // Byzantine primaries cause view changes on purpose (a padding replica's
  // padded PRE-PREPAREs are refused, so every view it leads changes too).
  if (sc == "byzantine-primary" || sc == "byzantine-view-change" ||
      sc == "corrupt-primary" || sc == "padding") {
    return;
  }
  const uint64_t bound = kViewsFree + kViewsPerFault * faults;
  if (result_.max_view > bound) {
    Fail(absl::StrCat("views: a correct replica reached view ",
                      result_.max_view, " with ", faults,
                      " faults injected (bound ", bound, "):", Views()));
  }
}

// Scenario power-loss: every replica, or 2f+1 of them, lose power at once
// (each at a random point: between two steps, or right after persisting a
// Ready whose messages never leave) and restart from their durable state
// 30-500 ticks later; 2-5 times, 200-1,200 ticks apart. Not a Byzantine
// fault: safety must hold whatever the number. Then the primary is cut off
// for 2-4 view timeouts, forcing a view change on the restored state.
void Simulation::PowerLossTick() {
  for (auto& r : replicas_) {
    if (r->down && tick_ >= r->down_until) Restart(*r);
  }
  if (partition_until_ != 0 && tick_ >= partition_until_) Heal();
  if (next_crash_ == 0) next_crash_ = rng_.Range(50, 400);
  if (tick_ < next_crash_ || view_change_forced_) return;
  for (const auto& r : replicas_) {
    if (r->down || r->crash_mid_ready) return;  // Episode still running.
  }
  next_crash_ = tick_ + rng_.Range(200, 1200);
  if (power_losses_ == power_losses_max_) {
    const uint32_t primary = CurrentPrimary();
    for (uint32_t i = 0; i < n_; ++i) {
      blocked_[primary][i] = blocked_[i][primary] = i != primary;
    }
    partition_until_ =
        tick_ + rng_.Range(2, 4) * params_.view_change_timeout_ticks;
    last_disturbance_ = tick_;
    view_change_forced_ = true;
    return;
  }
  ++power_losses_;
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < n_; ++i) ids.push_back(i);
  for (uint32_t i = n_ - 1; i > 0; --i) {
    std::swap(ids[i], ids[rng_.Below(i + 1)]);
  }
  if (rng_.Chance(0.5)) ids.resize(2 * f_ + 1);
  for (uint32_t i : ids) {
    SimReplica& r = *replicas_[i];
    r.down_until = tick_ + rng_.Range(30, 500);
    if (rng_.Chance(0.4)) {
      r.crash_mid_ready = true;
    } else {
      Crash(r);
    }
  }
}

void Simulation::Resume(SimReplica& r) {
  CHECK(r.stalled);
  r.stalled = false;
  last_disturbance_ = tick_;
  std::deque<EnvPtr> held;
  held.swap(r.held);
  for (const EnvPtr& e : held) {
    if (r.down || !result_.ok) break;
    if (rng_.Chance(held_drop_)) continue;  // A stream that overflowed.
    DeliverToReplica(r, e);
  }
}

// A backup victim: the primary is cut off (both ways) so that the backups
// change views, and the victim is taken out at a random point of that.
void Simulation::ForceViewChange(SimReplica& victim) {
  const uint32_t primary = CurrentPrimary();
  if (victim.id != primary) {
    for (uint32_t i = 0; i < n_; ++i) {
      blocked_[primary][i] = blocked_[i][primary] = i != primary;
    }
    last_disturbance_ = tick_;
    TickUntil(rng_.Range(0, 2ull * params_.view_change_timeout_ticks), true,
              [] { return false; });
  }
  if (stall_) {
    victim.stalled = true;
  } else {
    victim.wipe_on_crash = false;
    Crash(victim);
  }
  last_disturbance_ = tick_;
}

// Scenarios restart-during-view-change and stall-through-view-change: a
// replica (the primary most of the time) crashes or stalls while the others
// change views, and returns at a random point (before their NEW-VIEW, or
// long after). The clients keep sending after it returns (busy) or have
// stopped before (idle). It must then be active in the others' view, busy
// or idle, however many fetched batches it executes meanwhile.
bool Simulation::RejoinRun() {
  for (auto& c : clients_) c->total = UINT64_MAX / 2;
  auto stop_clients = [&] {
    for (auto& c : clients_) c->total = c->completed + (c->outstanding ? 1 : 0);
  };
  auto never = [] { return false; };
  TickUntil(rng_.Range(50, 400), true, never);
  const uint32_t primary = CurrentPrimary();
  const uint32_t victim_id =
      rng_.Chance(0.7)
          ? primary
          : (primary + 1 + static_cast<uint32_t>(rng_.Below(n_ - 1))) % n_;
  SimReplica& victim = *replicas_[victim_id];
  if (!result_.ok) return false;
  ForceViewChange(victim);
  const uint64_t away = rng_.Range(30, 1500);
  const uint64_t heal_at =
      tick_ + rng_.Range(0, params_.view_change_timeout_ticks);
  const uint64_t idle_at = busy_ ? UINT64_MAX : tick_ + rng_.Range(0, away);
  TickUntil(away, true, [&] {
    if (tick_ >= heal_at) Heal();
    if (tick_ >= idle_at) stop_clients();
    return false;
  });
  if (!result_.ok) return false;
  Heal();
  if (!busy_) stop_clients();
  if (stall_) {
    Resume(victim);
  } else {
    Restart(victim);
  }
  const uint64_t back = tick_;
  uint64_t ahead = 0;
  const bool joined =
      TickUntil(liveness_ticks_, true, [&] { return ViewsSettled(&ahead); });
  if (!result_.ok) return false;
  if (!joined) {
    Fail(absl::StrCat("rejoin: a correct replica is behind the cluster's view ",
                      tick_ - back, " ticks after replica ", victim.id,
                      " returned (", busy_ ? "busy" : "idle", "):", Views()));
    return false;
  }
  result_.max_rejoin_ticks = std::max(result_.max_rejoin_ticks, tick_ - back);
  stop_clients();
  return true;
}

// --- Byzantine backups ------------------------------------------------------

// Re-signs `e` (one of r's own prepare/commit/checkpoint/pre-prepare) with
// its view and seq shifted and, if `digest`, a random digest.
v1::Envelope Simulation::Tamper(const SimReplica& r, const v1::Envelope& e,
                                int64_t view_delta, int64_t seq_delta,
                                bool digest) {
  const std::string random_digest =
      Sha256(absl::StrCat("bogus", rng_.Next())).ToBytes();
  std::string payload;
  // PRE-PREPARE, PREPARE and COMMIT: view, seq and batch digest.
  auto ordered = [&](auto m) {
    if (!m.ParseFromString(e.payload())) return false;
    auto shift = [](uint64_t v, int64_t d) {
      return static_cast<uint64_t>(
          std::max<int64_t>(0, static_cast<int64_t>(v) + d));
    };
    m.set_view(shift(m.view(), view_delta));
    m.set_seq(shift(m.seq(), seq_delta));
    if (digest) m.set_batch_digest(random_digest);
    payload = m.SerializeAsString();
    return true;
  };
  switch (e.type()) {
    case v1::MESSAGE_TYPE_PREPARE:
      if (!ordered(v1::Prepare())) return e;
      break;
    case v1::MESSAGE_TYPE_COMMIT:
      if (!ordered(v1::Commit())) return e;
      break;
    case v1::MESSAGE_TYPE_PRE_PREPARE:
      if (!ordered(v1::PrePrepare())) return e;
      break;
    case v1::MESSAGE_TYPE_CHECKPOINT: {
      v1::Checkpoint m;
      if (!m.ParseFromString(e.payload())) return e;
      if (digest) m.set_state_digest(random_digest);
      payload = m.SerializeAsString();
      break;
    }
    default:
      return e;
  }
  (void)r;
  return r.signer->Sign(e.type(), std::move(payload));
}

void Simulation::ByzantineSend(SimReplica& r, Outbound o) {
  std::vector<uint32_t> targets;
  if (o.broadcast) {
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) targets.push_back(i);
    }
  } else {
    targets.push_back(o.to.value());
  }
  const bool vote = o.envelope.type() == v1::MESSAGE_TYPE_PREPARE ||
                    o.envelope.type() == v1::MESSAGE_TYPE_COMMIT ||
                    o.envelope.type() == v1::MESSAGE_TYPE_CHECKPOINT;
  const Behaviour b = Pick(r);
  const v1::MessageType type = o.envelope.type();
  const bool pre_prepare = type == v1::MESSAGE_TYPE_PRE_PREPARE && o.broadcast;
  if (type == v1::MESSAGE_TYPE_VIEW_CHANGE &&
      b == Behaviour::kStaleViewChange) {
    r.own_view_changes.push_back(std::make_shared<v1::Envelope>(o.envelope));
    if (r.own_view_changes.size() > 8) r.own_view_changes.pop_front();
    if (r.own_view_changes.size() > 1 && rng_.Chance(0.7)) {
      EnvPtr old =
          r.own_view_changes[rng_.Below(r.own_view_changes.size() - 1)];
      for (uint32_t t : targets) SendToReplica(t, old);
      return;
    }
  }
  if (type == v1::MESSAGE_TYPE_VIEW_CHANGE &&
      b == Behaviour::kForgedViewChange) {
    o.envelope = ForgeViewChange(r, o.envelope);
  }
  if (type == v1::MESSAGE_TYPE_NEW_VIEW && b == Behaviour::kBadNewView) {
    o.envelope = ForgeNewView(r, o.envelope);
  }
  if (pre_prepare &&
      (b == Behaviour::kPrimaryEquivocate ||
       b == Behaviour::kPrimaryBadDigest || b == Behaviour::kPrimarySkipSeq ||
       b == Behaviour::kPrimaryReuseSeq || b == Behaviour::kPrimarySlow)) {
    EnvPtr real = std::make_shared<v1::Envelope>(o.envelope);
    if (b == Behaviour::kPrimarySlow) {
      // Just under the view-change timeout: slow, never slow enough.
      const uint64_t late = params_.view_change_timeout_ticks > 20
                                ? params_.view_change_timeout_ticks - 20
                                : 0;
      for (uint32_t t : targets) {
        ++result_.messages_sent;
        Enqueue(false, t, real, late);
        --result_.messages_sent;
      }
      return;
    }
    if (b == Behaviour::kPrimaryBadDigest) {
      EnvPtr bad =
          std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, 0, true));
      for (uint32_t t : targets) SendToReplica(t, bad);
      return;
    }
    if (b == Behaviour::kPrimarySkipSeq) {
      EnvPtr ahead =
          std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, 1, false));
      for (uint32_t t : targets) SendToReplica(t, ahead);
      return;
    }
    if (b == Behaviour::kPrimaryReuseSeq) {
      EnvPtr again =
          std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, -1, false));
      for (uint32_t t : targets) {
        SendToReplica(t, real);
        SendToReplica(t, again);
      }
      return;
    }
    // Equivocate: another valid batch for the same seq to half the backups.
    v1::PrePrepare pp;
    if (pp.ParseFromString(o.envelope.payload())) {
      if (pp.requests_size() > 1) {
        std::reverse(pp.mutable_requests()->begin(),
                     pp.mutable_requests()->end());
      } else {
        pp.clear_requests();
      }
      pp.set_batch_digest(ledger::BatchDigest(pp.requests()).ToBytes());
      EnvPtr other = std::make_shared<v1::Envelope>(
          r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString()));
      for (size_t i = 0; i < targets.size(); ++i) {
        SendToReplica(targets[i], i % 2 == 0 ? real : other);
      }
      return;
    }
  }
  switch (b) {
    case Behaviour::kSilent:
      return;
    case Behaviour::kCorruptBatch:
      if (o.envelope.type() == v1::MESSAGE_TYPE_PRE_PREPARE && o.broadcast) {
        v1::PrePrepare pp;
        if (pp.ParseFromString(o.envelope.payload())) {
          // Same digest, other requests: reversed, or none at all.
          if (pp.requests_size() > 1) {
            std::reverse(pp.mutable_requests()->begin(),
                         pp.mutable_requests()->end());
          } else {
            pp.clear_requests();
          }
          const uint32_t victim = rng_.Pick(targets);
          EnvPtr bad = std::make_shared<v1::Envelope>(r.signer->Sign(
              v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString()));
          EnvPtr good = std::make_shared<v1::Envelope>(std::move(o.envelope));
          for (uint32_t t : targets) SendToReplica(t, t == victim ? bad : good);
          return;
        }
      }
      break;
    case Behaviour::kWrongDigest:
      if (vote) o.envelope = Tamper(r, o.envelope, 0, 0, true);
      break;
    case Behaviour::kPadVotes: {
      // An unknown length-delimited field (number 15): a few bytes (not
      // canonical) or more than any vote may hold (over its limit).
      const uint64_t pad = rng_.Pick<uint64_t>({1, 2, 100, 3000, 70000});
      std::string payload = o.envelope.payload();
      payload.push_back(static_cast<char>((15 << 3) | 2));
      for (uint64_t len = pad;; len >>= 7) {
        payload.push_back(
            static_cast<char>(len < 0x80 ? len : (len & 0x7f) | 0x80));
        if (len < 0x80) break;
      }
      payload.append(pad, 'p');
      o.envelope = r.signer->Sign(type, std::move(payload));
      break;
    }
    case Behaviour::kEquivocate:
      if (vote) {
        // Conflicting votes: the truth to some, another digest to others.
        EnvPtr honest = std::make_shared<v1::Envelope>(o.envelope);
        EnvPtr lie =
            std::make_shared<v1::Envelope>(Tamper(r, o.envelope, 0, 0, true));
        for (uint32_t t : targets) {
          SendToReplica(t, rng_.Chance(0.5) ? honest : lie);
        }
        return;
      }
      break;
    case Behaviour::kFuture:
      if (vote) {
        const int64_t L = params_.watermark_window;
        const std::vector<std::pair<int64_t, int64_t>> shifts = {
            {1, 0}, {3, 0}, {0, L}, {0, 2 * L}, {0, -L}, {1, L}};
        const auto& [dv, ds] = rng_.Pick(shifts);
        EnvPtr odd = std::make_shared<v1::Envelope>(
            Tamper(r, o.envelope, dv, ds, false));
        for (uint32_t t : targets) SendToReplica(t, odd);
      }
      break;
    default:
      break;
  }
  EnvPtr e = std::make_shared<v1::Envelope>(std::move(o.envelope));
  for (uint32_t t : targets) SendToReplica(t, e);
}

// A VIEW-CHANGE that lies: an unproven s*, a broken certificate, its
// certificates left out (a lie no check can catch), or an absurd view.
v1::Envelope Simulation::ForgeViewChange(SimReplica& r, const v1::Envelope& e) {
  v1::ViewChange vc;
  if (!vc.ParseFromString(e.payload())) return e;
  switch (rng_.Below(4)) {
    case 0:
      vc.mutable_stable_checkpoint()->set_seq(vc.stable_checkpoint().seq() +
                                              params_.checkpoint_interval);
      break;
    case 1:
      if (vc.prepared_size() > 0 && vc.prepared(0).prepares_size() > 1) {
        auto* cert = vc.mutable_prepared(0);
        *cert->mutable_prepares(1) = cert->prepares(0);
      } else {
        vc.mutable_stable_checkpoint()->clear_checkpoints();
        vc.mutable_stable_checkpoint()->set_seq(params_.checkpoint_interval);
      }
      break;
    case 2:
      vc.clear_prepared();
      break;
    default:
      vc.set_new_view(vc.new_view() + 1000);
      break;
  }
  return r.signer->Sign(v1::MESSAGE_TYPE_VIEW_CHANGE, vc.SerializeAsString());
}

// A NEW-VIEW whose O does not match its V: an entry (the first, a middle
// one or the last) made null or given another timestamp, one left out, one
// added, or a VIEW-CHANGE removed from V.
v1::Envelope Simulation::ForgeNewView(SimReplica& r, const v1::Envelope& e) {
  v1::NewView nv;
  if (!nv.ParseFromString(e.payload())) return e;
  const uint64_t how = rng_.Below(4);
  if (how == 0 && nv.pre_prepares_size() > 0) {
    const int last = nv.pre_prepares_size() - 1;
    const int at = rng_.Pick<int>({0, last / 2, last});
    v1::PrePrepare pp;
    CHECK(pp.ParseFromString(nv.pre_prepares(at).payload()));
    if (pp.requests_size() > 0 || rng_.Chance(0.5)) {
      pp.clear_requests();
      pp.set_batch_digest(ledger::NullBatchDigest().ToBytes());
    } else {
      pp.set_timestamp_ms(pp.timestamp_ms() + 1);
    }
    *nv.mutable_pre_prepares(at) =
        r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  } else if (how == 1 && nv.pre_prepares_size() > 0) {
    nv.mutable_pre_prepares()->erase(nv.mutable_pre_prepares()->begin());
  } else if (how == 2) {
    v1::PrePrepare pp;
    pp.set_view(nv.view());
    pp.set_seq(nv.pre_prepares_size() + 1000);
    pp.set_batch_digest(ledger::NullBatchDigest().ToBytes());
    *nv.add_pre_prepares() =
        r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  } else {
    nv.mutable_view_changes()->RemoveLast();
  }
  return r.signer->Sign(v1::MESSAGE_TYPE_NEW_VIEW, nv.SerializeAsString());
}

void Simulation::ByzantineOnReceive(SimReplica& r, const EnvPtr& e) {
  r.heard.push_back(e);
  if (r.heard.size() > 128) r.heard.pop_front();
  if (e->type() != v1::MESSAGE_TYPE_PRE_PREPARE) return;
  const Behaviour b = Pick(r);
  // React only to the real primary's pre-prepares (not to other fakes,
  // which would amplify without bound).
  v1::PrePrepare orig;
  if (!orig.ParseFromString(e->payload()) || e->sender() != orig.view() % n_) {
    return;
  }
  if (b != Behaviour::kFakePrimary) return;
  // Pose as the primary: the same requests in another batch at the same
  // seq, and again at later seqs, signed by this backup.
  v1::PrePrepare pp;
  if (!pp.ParseFromString(e->payload())) return;
  std::vector<v1::PrePrepare> fakes;
  v1::PrePrepare alt = pp;
  if (alt.requests_size() > 1) {
    std::reverse(alt.mutable_requests()->begin(),
                 alt.mutable_requests()->end());
  } else {
    alt.clear_requests();
  }
  alt.set_batch_digest(ledger::BatchDigest(alt.requests()).ToBytes());
  fakes.push_back(alt);
  v1::PrePrepare later = pp;
  later.set_seq(pp.seq() + rng_.Range(1, 3));
  fakes.push_back(later);
  for (const v1::PrePrepare& fake : fakes) {
    EnvPtr fe = std::make_shared<v1::Envelope>(
        r.signer->Sign(v1::MESSAGE_TYPE_PRE_PREPARE, fake.SerializeAsString()));
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, fe);
    }
  }
}

void Simulation::ByzantineTick(SimReplica& r) {
  const Behaviour b = Pick(r);
  if (b == Behaviour::kUnprovokedViewChange && rng_.Chance(0.02)) {
    v1::ViewChange vc;
    const uint64_t view = r.core->view().value();
    vc.set_new_view(rng_.Chance(0.5) ? view + 1 : view + rng_.Range(2, 1000));
    *vc.mutable_stable_checkpoint() = r.core->stable_checkpoint();
    vc.set_replica_id(r.id);
    EnvPtr e = std::make_shared<v1::Envelope>(
        r.signer->Sign(v1::MESSAGE_TYPE_VIEW_CHANGE, vc.SerializeAsString()));
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, e);
    }
  }
  if (b == Behaviour::kReplay && !r.heard.empty() && rng_.Chance(0.3)) {
    // Replay old messages (still validly signed by their senders).
    for (uint64_t i = rng_.Range(1, 3); i > 0; --i) {
      SendToReplica(static_cast<uint32_t>(rng_.Below(n_)),
                    r.heard[rng_.Below(r.heard.size())]);
    }
  }
  if (b == Behaviour::kGarbage && rng_.Chance(0.2)) {
    const std::vector<v1::MessageType> types = {
        v1::MESSAGE_TYPE_PRE_PREPARE, v1::MESSAGE_TYPE_PREPARE,
        v1::MESSAGE_TYPE_COMMIT,      v1::MESSAGE_TYPE_CHECKPOINT,
        v1::MESSAGE_TYPE_VIEW_CHANGE, v1::MESSAGE_TYPE_FETCH_RESPONSE};
    std::string junk;
    for (uint64_t i = rng_.Range(0, 40); i > 0; --i) {
      junk.push_back(static_cast<char>(rng_.Next()));
    }
    SendToReplica(static_cast<uint32_t>(rng_.Below(n_)),
                  std::make_shared<v1::Envelope>(
                      r.signer->Sign(rng_.Pick(types), std::move(junk))));
  }
}

// --- Clients
// -------------------------------------------------------------------

EnvPtr Simulation::ClientSend(SimClient& c, uint64_t number,
                              const std::string& op) {
  v1::Request req;
  req.set_client_id(c.id);
  req.set_request_number(number);
  req.set_operation(op);
  submitted_[{c.id, number}] = Sha256(op);
  c.used.insert(number);
  EnvPtr e = std::make_shared<v1::Envelope>(
      c.signer->Sign(v1::MESSAGE_TYPE_REQUEST, req.SerializeAsString()));
  c.request = e;
  c.number = number;
  c.op = op;
  c.outstanding = true;
  c.replies.clear();
  c.stale.clear();
  c.last_sent_tick = tick_;
  // The primary of the highest view the replies named.
  SendToReplica(static_cast<uint32_t>(c.view_hint % n_), e);
  return e;
}

uint64_t Simulation::StaleScenarioNumber(SimClient& c, const std::string& op) {
  if (c.last_completed > 1 && rng_.Chance(0.3)) {
    // Clock stepped back: an unused number below the last completed one.
    for (int i = 0; i < 8; ++i) {
      const uint64_t t = rng_.Range(1, c.last_completed - 1);
      if (!c.used.count(t)) return t;
    }
  }
  const uint64_t t = c.next_number++;
  if (rng_.Chance(0.3)) {
    // Pipelined: t+1 (its result never awaited) leaves just before t, so
    // t may be ordered after it, and then never executes.
    ClientSend(c, c.next_number++, absl::StrCat(op, "-overtaking"));
  }
  return t;
}

void Simulation::OnStaleRejection(SimClient& c, const v1::Reply& rep) {
  if (rep.last_request_number() <= c.number) {
    Fail(absl::StrCat("replica ", rep.replica_id(), " rejected request ",
                      c.number, " of client ", c.id, " as stale below ",
                      rep.last_request_number()));
    return;
  }
  c.stale[rep.replica_id()] = rep.last_request_number();
  if (c.stale.size() < f_ + 1) return;
  std::vector<uint64_t> lasts;
  for (const auto& [r, last] : c.stale) lasts.push_back(last);
  std::sort(lasts.begin(), lasts.end(), std::greater<uint64_t>());
  const uint64_t last = lasts[f_];
  // Correct replicas name only numbers this client used.
  if (!c.used.count(last)) {
    Fail(absl::StrCat("client ", c.id, " was told its last number is ", last,
                      ", which it never used"));
    return;
  }
  // The SDK's recovery: renumber above it and send the same operation.
  c.next_number = std::max(c.next_number, last + 1);
  ++result_.requests_rejected;
  ClientSend(c, c.next_number++, c.op);
}

void Simulation::ClientTick(SimClient& c) {
  from_ = UINT32_MAX;
  if (!c.outstanding) {
    if (c.completed >= c.total || !rng_.Chance(0.3)) return;
    std::string op = absl::StrCat("op-", c.id, "-", c.next_number, "-");
    for (uint64_t i = rng_.Range(0, 64); i > 0; --i) op.push_back('x');
    const uint64_t number =
        stale_numbers_ ? StaleScenarioNumber(c, op) : c.next_number++;
    c.first_sent_tick = tick_;
    ++result_.requests_submitted;
    ClientSend(c, number, op);
    return;
  }
  // Liveness is owed from submission, or from the end of the last fault
  // (crash, restart, partition, heal) if that came later.
  if (tick_ - std::max(c.first_sent_tick, last_disturbance_) >
      liveness_ticks_) {
    Fail(absl::StrCat("liveness: client ", c.id, " request ", c.number,
                      " not complete after ", liveness_ticks_, " ticks"));
    return;
  }
  if (tick_ - c.last_sent_tick >= client_timeout_ticks_) {
    // Castro–Liskov §4.1: on timeout the client sends to all replicas.
    c.last_sent_tick = tick_;
    for (uint32_t i = 0; i < n_; ++i) SendToReplica(i, c.request);
  }
}

void Simulation::ClientReceive(SimClient& c, const v1::Envelope& e) {
  v1::Reply rep;
  if (e.type() != v1::MESSAGE_TYPE_REPLY || !rep.ParseFromString(e.payload()) ||
      rep.replica_id() != e.sender() || rep.client_id() != c.id) {
    return;
  }
  c.view_hint = std::max(c.view_hint, rep.view());
  if (!c.outstanding || rep.request_number() != c.number) return;
  if (rep.rejected() == v1::REJECT_REASON_STALE_REQUEST_NUMBER) {
    if (!stale_numbers_) {
      Fail(absl::StrCat("client ", c.id, " request ", c.number,
                        " rejected as stale outside stale-numbers"));
      return;
    }
    OnStaleRejection(c, rep);
    return;
  }
  if (rep.rejected() != v1::REJECT_REASON_UNSPECIFIED) {
    ++result_.requests_rejected;
    return;
  }
  c.replies[rep.replica_id()] = rep.result();
  uint32_t matching = 0;
  for (const auto& [replica, result] : c.replies) {
    if (result == rep.result()) ++matching;
  }
  if (matching < f_ + 1) return;
  // Accepted with f+1 matching replies: it must be what correct replicas
  // computed (exactly-once and agreement as the client sees them).
  auto it = results_.find({c.id, c.number});
  if (it == results_.end() || it->second != rep.result()) {
    Fail(absl::StrCat("client ", c.id, " accepted a result for request ",
                      c.number, " that no correct replica produced"));
  }
  acknowledged_[{c.id, c.number}] = rep.result();
  const uint64_t latency = tick_ - c.first_sent_tick;
  result_.max_latency_ticks = std::max(result_.max_latency_ticks, latency);
  ++result_.requests_completed;
  ++c.completed;
  c.last_completed = std::max(c.last_completed, c.number);
  c.outstanding = false;
}

SimResult Simulation::Run() {
  Setup();
  bool done = false;
  tick_ = 1;
  if (rejoin_) done = RejoinRun();
  for (; !rejoin_ && tick_ <= opt_.max_ticks && result_.ok; ++tick_) {
    for (auto& c : clients_) ClientTick(*c);
    while (!net_.empty() && net_.top().at <= tick_ && result_.ok) {
      Packet p = net_.top();
      net_.pop();
      Deliver(p);
    }
    if (crashes_ || partitions_) FaultTick();
    if (power_losses_max_ > 0) PowerLossTick();
    for (auto& r : replicas_) {
      if (r->down || r->stalled) continue;
      from_ = r->id;
      r->core->Tick(NowMs(*r));
      if (r->byzantine) ByzantineTick(*r);
      Drain(*r);
    }
    CheckPrepared();
    done = true;
    for (const auto& c : clients_) {
      if (c->completed < c->total) done = false;
    }
    if (done) break;
  }
  if (result_.ok && !done) {
    Fail(absl::StrCat("liveness: not every request completed within ",
                      opt_.max_ticks, " ticks"));
  }
  if (result_.ok) FinalCheck();
  if (result_.ok) ViewCheck();
  if (result_.ok) IdleCatchUpCheck();
  if (result_.ok) ChainCheck();
  if (result_.ok) ViewBoundCheck();
  result_.ticks = tick_;
  for (const auto& r : replicas_) {
    if (r->down) continue;
    if (opt_.verbose && r->byzantine) {
      std::printf("  byzantine %u: executed=%llu retransmits=%llu pp=%llu\n",
                  r->id, (unsigned long long)r->ledger.height(),
                  (unsigned long long)r->core->stats().retransmissions,
                  (unsigned long long)r->core->stats().pre_prepares_sent);
    }
    if (r->byzantine) continue;
    result_.core_drops += r->core->stats().dropped_total();
    result_.fetches += r->core->stats().fetches_sent;
    if (opt_.verbose) {
      std::string drops;
      for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
        const uint64_t d = r->core->stats().dropped[i];
        if (d > 0) {
          absl::StrAppend(&drops, " ",
                          DropReasonName(static_cast<DropReason>(i)), "=", d);
        }
      }
      std::printf(
          "  replica %u: view=%llu%s executed=%llu h=%llu fetched=%llu "
          "retransmits=%llu queued=%zu vc_timeout=%llu drops:%s\n",
          r->id, static_cast<unsigned long long>(r->core->view().value()),
          r->core->view_active() ? "" : "*",
          static_cast<unsigned long long>(r->ledger.height()),
          static_cast<unsigned long long>(r->core->low_watermark().value()),
          static_cast<unsigned long long>(r->core->stats().batches_fetched),
          static_cast<unsigned long long>(r->core->stats().retransmissions),
          r->core->queued_requests(),
          static_cast<unsigned long long>(r->core->view_change_timeout_ticks()),
          drops.c_str());
    }
  }
  result_.trace_digest = trace_.Finish().ToHex();
  return result_;
}

}  // namespace

std::vector<std::string> ScenarioNames() { return kScenarios; }

bool IsScenario(const std::string& name) {
  return std::find(kScenarios.begin(), kScenarios.end(), name) !=
         kScenarios.end();
}

SimResult RunSimulation(const SimOptions& options) {
  CHECK(IsScenario(options.scenario));
  CHECK_GE(options.replicas, 4u);
  CHECK_EQ((options.replicas - 1) % 3, 0u);
  Simulation sim(options);
  return sim.Run();
}

}  // namespace pbft::sim
