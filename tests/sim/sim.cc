#include "tests/sim/sim.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/proto_names.h"
#include "tests/sim/sim_internal.h"

namespace pbft::sim {
namespace internal {
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
                                             "power-loss",
                                             "full-window",
                                             "missing-bodies",
                                             "lying-hint"};

void Simulation::Setup() {
  n_ = opt_.replicas;
  f_ = (n_ - 1) / 3;
  const uint32_t clients = DrawParams();
  crypto_ = std::make_unique<SimCrypto>(n_, clients, opt_.real_crypto);
  DrawFaults();
  blocked_.assign(n_, std::vector<bool>(n_, false));
  const Roles roles = ChooseByzantine();
  DrawMissingBodies();
  limits_ = WireLimits::For(n_, params_);
  cluster_ = MakeCluster(clients);
  const std::string byz_desc = CreateParticipants(clients, roles);
  if (!result_.ok) return;
  DescribeSetup(clients, byz_desc);
}

// The protocol parameters, the workload and the network a seed draws;
// returns the number of clients.
uint32_t Simulation::DrawParams() {
  const std::string& sc = opt_.scenario;
  const bool lossy = sc != "fair" && sc != "queue-full" && sc != "lying-hint";
  // corrupt-primary: a lossy network and a Byzantine primary (below).
  uint32_t K = static_cast<uint32_t>(rng_.Pick<uint64_t>({4, 8, 16}));
  if (sc == "small-window") K = static_cast<uint32_t>(rng_.Range(1, 3));
  params_.checkpoint_interval = K;
  params_.watermark_window = K * (rng_.Chance(0.5) ? 2 : 4);
  params_.batch_requests_max =
      static_cast<uint32_t>(rng_.Pick<uint64_t>({1, 2, 5, 10, 32}));
  full_window_ = sc == "full-window";
  if (full_window_) {
    // One request per batch and more clients than the window has seqs
    // (each has one request outstanding): the primary can fill it.
    K = static_cast<uint32_t>(rng_.Range(1, 4));
    params_.checkpoint_interval = K;
    params_.watermark_window = K * (rng_.Chance(0.5) ? 2 : 4);
    params_.batch_requests_max = 1;
  }
  params_.batch_bytes_max =
      rng_.Chance(0.2) ? 600 : ProtocolParams::kDefaultBatchBytesMax;
  params_.batch_delay_ticks = static_cast<uint32_t>(rng_.Range(0, 4));
  params_.tick_ms = kTickMs;
  params_.request_queue_max = 1000;
  uint32_t clients = static_cast<uint32_t>(rng_.Range(1, 8));
  if (full_window_) {  // Enough for the cut's checkpoint and the window.
    clients =
        K + params_.watermark_window + static_cast<uint32_t>(rng_.Range(1, 4));
  }
  if (sc == "queue-full") {
    params_.request_queue_max = static_cast<uint32_t>(rng_.Range(1, 2));
  }
  stale_numbers_ = sc == "stale-numbers";
  lying_hint_ = sc == "lying-hint";
  // Client 1 tells the truth (odd ids send to all); 2 lies.
  if (lying_hint_) clients = std::max<uint32_t>(clients, 2);
  if (lossy) {
    drop_ = static_cast<double>(rng_.Range(0, 20)) / 100.0;
    dup_ = static_cast<double>(rng_.Range(0, 10)) / 100.0;
    delay_max_ = rng_.Range(2, 12);
  } else {
    delay_max_ = rng_.Range(1, 3);
  }
  return clients;
}

// The faults of the scenario: view timeouts, crashes, partitions, power
// losses, the full-window blackout, the rejoin victim's absence.
void Simulation::DrawFaults() {
  const std::string& sc = opt_.scenario;
  // Drawn after everything the older scenarios draw, so their seeds keep
  // their set-ups.
  if (FaultScenario()) {
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
  if (full_window_) {
    // Long enough for the window to fill before a backup's timer expires.
    params_.view_change_timeout_ticks =
        static_cast<uint32_t>(rng_.Range(200, 400));
    serve_latest_proof_ = rng_.Chance(0.5);
    blackout_tick_ = rng_.Range(1, 50);
    if (rng_.Chance(0.5))
      commit_receiver_ = static_cast<uint32_t>(rng_.Range(1, n_ - 1));
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
}

bool Simulation::FaultScenario() const {
  const std::string& sc = opt_.scenario;
  return sc == "crash" || sc == "partition" || sc == "byzantine-primary" ||
         sc == "byzantine-view-change" || sc == "padding";
}

// Which replicas are Byzantine, and how (a behaviour left unchosen here is
// drawn when the replica is created).
Simulation::Roles Simulation::ChooseByzantine() {
  const std::string& sc = opt_.scenario;
  Roles roles;
  const bool byzantine = sc == "byzantine" || sc == "small-window";
  uint32_t byz = 0;
  if (byzantine)
    byz = rng_.Chance(0.75) ? f_ : static_cast<uint32_t>(rng_.Range(1, f_));
  std::vector<uint32_t> backups;
  for (uint32_t i = 1; i < n_; ++i) backups.push_back(i);
  std::set<uint32_t>& byz_ids = roles.ids;
  while (byz_ids.size() < byz) byz_ids.insert(rng_.Pick(backups));
  // A primary that corrupts the batch for one backup at a time: the only
  // Byzantine replica, so the others keep quorums without a view change.
  if (sc == "corrupt-primary") byz_ids = {0};
  // The primary of view 0 is Byzantine (and of views n, 2n, ...); with
  // n >= 7 some backups also lie in view changes.
  std::map<uint32_t, Behaviour>& chosen = roles.chosen;
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
  return roles;
}

// Scenario missing-bodies: f backups, the primary of view 1 among them,
// get view 0's PRE-PREPAREs without their batches; then primary 0 is cut
// off. The new primary and those backups must fetch the bodies of O.
void Simulation::DrawMissingBodies() {
  if (opt_.scenario != "missing-bodies") return;
  params_.view_change_timeout_ticks =
      static_cast<uint32_t>(rng_.Range(60, 200));
  serve_latest_proof_ = rng_.Chance(0.5);
  liveness_ticks_ = 6000 + 3 * 32ull * params_.view_change_timeout_ticks;
  starved_ = {1};
  while (starved_.size() < f_) {
    starved_.insert(2 + static_cast<uint32_t>(rng_.Below(n_ - 2)));
  }
  cut_primary_at_ = rng_.Range(150, 1200);
}

// The replicas (each with its node) and the clients; returns the
// Byzantine replicas' description.
std::string Simulation::CreateParticipants(uint32_t clients,
                                           const Roles& roles) {
  std::string byz_desc;
  for (uint32_t i = 0; i < n_; ++i) {
    auto r = std::make_unique<SimReplica>();
    r->id = i;
    r->signer = crypto_->ReplicaSigner(i);
    if (!StartNode(*r)) return byz_desc;
    r->clock_offset_ms = static_cast<int64_t>(rng_.Range(0, 100)) - 50;
    if (roles.ids.count(i)) {
      r->byzantine = true;
      if (roles.chosen.count(i)) {
        r->behaviour = roles.chosen.at(i);
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
    cl->to_all = c % 2 == 1;
    cl->lies_about_primary = lying_hint_ && !cl->to_all;
    cl->total = power_losses_max_ > 0 || !starved_.empty() ? rng_.Range(20, 40)
                : full_window_                             ? rng_.Range(8, 12)
                                                           : rng_.Range(4, 16);
    // Scenario lying-hint: the honest clients keep blocks executing, with
    // no pause, while the liars' requests wait (the backups' view-change
    // timers restart at every block and never reach their probe).
    cl->busy = lying_hint_ && cl->to_all;
    if (cl->busy) cl->total += rng_.Range(20, 40);
    clients_.push_back(std::move(cl));
  }
  return byz_desc;
}

void Simulation::DescribeSetup(uint32_t clients, const std::string& byz_desc) {
  result_.setup = absl::StrCat(
      "n=", n_, " K=", params_.checkpoint_interval,
      " L=", params_.watermark_window, " batch=", params_.batch_requests_max,
      "/", params_.batch_bytes_max, "B delay=", params_.batch_delay_ticks,
      " queue=", params_.request_queue_max, " clients=", clients,
      " drop=", drop_, " dup=", dup_, " delay_max=", delay_max_, " byzantine=[",
      byz_desc, "]");
  if (opt_.deferred_execution) {
    absl::StrAppend(&result_.setup, " deferred-execution");
  }
  if (power_losses_max_ > 0) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    " power_losses=", power_losses_max_,
                    serve_latest_proof_ ? " latest-proof" : "");
  }
  if (full_window_) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    " blackout_tick=", blackout_tick_, " commits_to=",
                    commit_receiver_ < n_ ? absl::StrCat(commit_receiver_)
                                          : std::string("none"),
                    serve_latest_proof_ ? " latest-proof" : "");
  }
  if (!starved_.empty()) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    " starved=[", absl::StrJoin(starved_, ","),
                    "] cut_primary_at=", cut_primary_at_,
                    serve_latest_proof_ ? " latest-proof" : "");
  }
  if (rejoin_) {
    absl::StrAppend(
        &result_.setup, " vc_timeout=", params_.view_change_timeout_ticks,
        busy_ ? " busy" : " idle", " held_drop=", held_drop_,
        " held_max=", held_max_, serve_latest_proof_ ? " latest-proof" : "");
  }
  if (FaultScenario()) {
    absl::StrAppend(&result_.setup,
                    " vc_timeout=", params_.view_change_timeout_ticks,
                    crashes_ ? " crashes" : "", wipes_ ? "+wipes" : "",
                    partitions_ ? " partitions" : "",
                    serve_latest_proof_ ? " latest-proof" : "");
  }
}

// --- Network -----------------------------------------------------------------

void Simulation::Enqueue(bool to_client, uint64_t to, EnvPtr e, uint64_t extra,
                         bool from_client,
                         std::optional<uint64_t> primary_view) {
  ++result_.messages_sent;
  if (!to_client && from_ < n_ && blocked_[from_][to]) {
    ++result_.messages_dropped;  // Partitioned.
    return;
  }
  if (full_window_ && !to_client && FullWindowDrops(*e, to)) {
    ++result_.messages_dropped;
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
    p.from_client = from_client;
    p.primary_view = primary_view;
    p.to = to;
    p.envelope = e;
    net_.push(std::move(p));
  }
}

void Simulation::SendToReplica(uint32_t to, EnvPtr e) {
  CHECK_LT(to, n_);
  if (starved_.count(to) && e->type() == v1::MESSAGE_TYPE_PRE_PREPARE &&
      e->sender() == 0 && e->batch_size() > 0) {
    v1::PrePrepare pp;
    if (pp.ParseFromString(e->payload()) && pp.view() == 0) {
      auto header = std::make_shared<v1::Envelope>(*e);
      header->clear_batch();  // The body is lost on the way.
      e = std::move(header);
    }
  }
  Enqueue(false, to, std::move(e));
}

void Simulation::ClientSendTo(uint32_t to, EnvPtr e,
                              std::optional<uint64_t> primary_view) {
  CHECK_LT(to, n_);
  Enqueue(false, to, std::move(e), 0, /*from_client=*/true, primary_view);
}

void Simulation::SendToClient(uint64_t to, EnvPtr e) {
  Enqueue(true, to, std::move(e));
}

void Simulation::Deliver(const Packet& p) {
  const v1::Envelope& e = *p.envelope;
  std::string head;
  codec::Writer w(&head);
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
  if (!p.to_client && CheckWireMessage(e, limits_) != WireError::kOk) {
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
  if (p.from_client) {
    v1::Request req;
    if (req.ParseFromString(e.payload())) {
      r.waiting.insert({req.client_id(), req.request_number()});
    }
  }
  if (tick_ < r.deaf_until && e.type() != v1::MESSAGE_TYPE_REQUEST) return;
  if (r.stalled) {
    if (r.held.size() < held_max_) r.held.push_back(p.envelope);
    return;
  }
  DeliverToReplica(r, p.envelope, p.primary_view);
}

// --- Clients
// -------------------------------------------------------------------

std::string Simulation::Operation(const SimClient& c, uint64_t number) {
  ledger::v1::OperationBatch batch;
  ledger::v1::Transfer* t = batch.add_operations()->mutable_transfer();
  t->mutable_id()->set_high(c.id);
  t->mutable_id()->set_low(number);
  t->mutable_debit_account_id()->set_low(c.id);
  t->mutable_credit_account_id()->set_low(c.id % clients_.size() + 1);
  t->set_amount(1);
  t->set_ledger(1);
  t->set_memo(std::string(rng_.Range(0, 64), 'x'));
  return batch.SerializeAsString();
}

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
  if (c.lies_about_primary) {
    LyingSend(c, /*retransmission=*/false);
    return e;
  }
  if (c.to_all) {  // As the SDK's send_to_all: no word about the primary.
    for (uint32_t i = 0; i < n_; ++i) ClientSendTo(i, e);
    return e;
  }
  // The primary of the highest view the replies named, and the f replicas
  // after it: f+1 replicas reply (the SDK's first replicas); the backups
  // are told that the primary has it too (the SDK's word).
  ClientSendTo(static_cast<uint32_t>(c.view_hint % n_), e);
  for (uint32_t i = 1; i <= f_; ++i) {
    ClientSendTo(static_cast<uint32_t>((c.view_hint + i) % n_), e, c.view_hint);
  }
  return e;
}

uint64_t Simulation::StaleScenarioNumber(SimClient& c) {
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
    const uint64_t overtaking = c.next_number++;
    ClientSend(c, overtaking, Operation(c, overtaking));
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
    if (c.completed >= c.total || (!c.busy && !rng_.Chance(0.3))) return;
    const std::string op = Operation(c, c.next_number);
    const uint64_t number =
        stale_numbers_ ? StaleScenarioNumber(c) : c.next_number++;
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
    if (c.lies_about_primary) {
      LyingSend(c, /*retransmission=*/true);
      return;
    }
    for (uint32_t i = 0; i < n_; ++i) ClientSendTo(i, c.request);
  }
}

// Scenario lying-hint: first the f+1 replicas after the primary the client
// believes in, on a retransmission every backup, each told that the
// primary has the request too; the primary never gets it from the client.
// Only the backups' view-change timer probes forward it: the request is
// delayed, nothing else.
void Simulation::LyingSend(SimClient& c, bool retransmission) {
  const uint32_t backups = retransmission ? n_ - 1 : f_ + 1;
  for (uint32_t i = 1; i <= backups; ++i) {
    ClientSendTo(static_cast<uint32_t>((c.view_hint + i) % n_), c.request,
                 c.view_hint);
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
  if (c.lies_about_primary && !faults_after_traffic_ &&
      latency > params_.view_change_timeout_ticks + max_execution_lag_) {
    // The word holds a request at a backup a little over half a timeout
    // (docs/protocol.md "The client's word"), whatever else executes; an
    // executor's lag (deferred_execution) comes on top.
    Fail(absl::StrCat("lying-hint: client ", c.id, " request ", c.number,
                      " took ", latency, " ticks, over the view-change ",
                      "timeout of ", params_.view_change_timeout_ticks,
                      " plus the executor's lag of ", max_execution_lag_));
  }
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
    if (full_window_) FullWindowTick();
    if (!starved_.empty()) MissingBodiesTick();
    TickReplicas();
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
  if (full_window_ && full_window_phase_ == 4) {
    result_.full_window_missed = 1;
  } else if (result_.ok && full_window_ &&
             (full_window_phase_ != 3 || max_o_ < params_.watermark_window)) {
    Fail(absl::StrCat("full-window: no view change with a full window (phase ",
                      full_window_phase_, ", largest O ", max_o_, ", L ",
                      params_.watermark_window, ")"));
  }
  if (result_.ok) FinalCheck();
  if (result_.ok) ViewCheck();
  if (result_.ok) LyingHintCheck();
  if (result_.ok) IdleCatchUpCheck();
  if (result_.ok) ChainCheck();
  if (result_.ok) ViewBoundCheck();
  result_.ticks = tick_;
  for (const auto& r : replicas_) {
    if (r->down) continue;
    if (opt_.verbose && r->byzantine) {
      std::printf("  byzantine %u: executed=%llu retransmits=%llu pp=%llu\n",
                  r->id, (unsigned long long)r->height(),
                  (unsigned long long)r->core().stats().retransmissions,
                  (unsigned long long)r->core().stats().pre_prepares_sent);
    }
    if (r->byzantine) continue;
    result_.core_drops += r->core().stats().dropped_total();
    result_.fetches += r->core().stats().fetches_sent;
    result_.forwarded += r->core().stats().requests_forwarded;
    result_.primary_has_copy += r->core().stats().requests_primary_has_copy;
    result_.bodies_fetched += r->core().stats().bodies_fetched;
    if (opt_.verbose) {
      std::string drops;
      for (size_t i = 0; i < static_cast<size_t>(core::DropReason::kCount);
           ++i) {
        const uint64_t d = r->core().stats().dropped[i];
        if (d > 0) {
          absl::StrAppend(
              &drops, " ",
              core::DropReasonName(static_cast<core::DropReason>(i)), "=", d);
        }
      }
      std::printf(
          "  replica %u: view=%llu%s executed=%llu h=%llu fetched=%llu "
          "retransmits=%llu queued=%zu vc_timeout=%llu drops:%s\n",
          r->id, static_cast<unsigned long long>(r->core().view().value()),
          r->core().view_active() ? "" : "*",
          static_cast<unsigned long long>(r->height()),
          static_cast<unsigned long long>(r->core().low_watermark().value()),
          static_cast<unsigned long long>(r->core().stats().batches_fetched),
          static_cast<unsigned long long>(r->core().stats().retransmissions),
          r->core().queued_requests(),
          static_cast<unsigned long long>(
              r->core().view_change_timeout_ticks()),
          drops.c_str());
    }
  }
  result_.trace_digest = trace_.Finish().ToHex();
  return result_;
}

void Simulation::TickReplicas() {
  for (auto& r : replicas_) {
    if (r->down || r->stalled) continue;
    ExecuteDue(*r);
    if (r->down) continue;
    from_ = r->id;
    r->node->Tick();
    if (r->byzantine) ByzantineTick(*r);
    Drain(*r);
  }
  CheckPrepared();
}

}  // namespace internal

using internal::kScenarios;
using internal::Simulation;

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
