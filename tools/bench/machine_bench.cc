// machine-bench: what this machine charges for the operations the protocol
// is made of, measured now, so that a benchmark run can compare itself with
// the bound the same machine allows (docs/benchmarks.md, "The bound").
//
//   machine-bench [--dir DIR] [--transfers 1,100] [--scale 1.0] [--probe]
//
// Measures, in CPU time of the process that does the work (so a shared,
// loaded machine distorts the figures less than wall time would):
//   - Ed25519 sign and verify of envelopes (domain-separated signing bytes,
//     as common/envelope.cc builds them) at the protocol's message sizes;
//   - SHA-256 per KB (common/crypto, OpenSSL);
//   - gRPC on loopback against a server in a child process: CPU per message
//     on each side of a long-lived ReplicaService stream at several message
//     sizes, the one-way latency of a stream message (ping-pong / 2) and
//     each side's CPU per round trip of that ping-pong (a message on an
//     otherwise idle stream, as at one client), and CPU per unary
//     LedgerService.Submit call on each side;
//   - fdatasync latency of a 512-byte append in DIR (the replicas'
//     directory), with 4 writers at once (one per local replica; used for
//     the floor) and alone; with 4 writers also the syncing thread's CPU
//     per fdatasync, and both for records written over a file of zeros
//     (no size change per sync: what a preallocated log would cost);
//   - a thread hand-off: CPU per turn of two threads passing a turn back
//     and forth through absl::Mutex and CondVar (as the replica's queues
//     hand work between threads), both on one CPU and on two.
// Prints progress on stderr and one JSON line on stdout. With --probe only
// the Ed25519 figures, as a "probe" line: deploy/local/bench.sh takes one
// just before and one just after each cell, since on this host the same
// code's cost moves by up to 60% within an hour (a vote's verification
// 47 to 77 µs).
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/flags.h"
#include "common/proto_names.h"
#include "grpcpp/grpcpp.h"
#include "ledger/v1/ledger.pb.h"
#include "ledger/v1/service.grpc.pb.h"
#include "pbft/v1/pbft.pb.h"
#include "tools/bench/thread_cpu.h"

ABSL_FLAG(std::string, dir, "/tmp", "Directory for the fdatasync probe.");
ABSL_FLAG(std::string, transfers, "1,100",
          "Transfers per request to size requests and replies for.");
ABSL_FLAG(double, scale, 1.0, "Multiplies every iteration count.");
ABSL_FLAG(bool, probe, false,
          "Only Ed25519 sign and verify, as a {\"kind\":\"probe\"} line.");

namespace pbft::bench {
namespace {

constexpr char kClusterId[] = "machine-bench";
constexpr size_t kMessageBytesMax = 64 << 20;
// The stream sizes: a vote, then the request sizes, then a large batch.
constexpr size_t kLargeBatchBytes = 64 << 10;

double WallSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int Iterations(int base) {
  return std::max(10, static_cast<int>(base * absl::GetFlag(FLAGS_scale)));
}

void CheckGrpc(const grpc::Status& s) {
  if (!s.ok()) std::fprintf(stderr, "gRPC: %s\n", s.error_message().c_str());
  CHECK(s.ok());
}

// --- Typical messages ------------------------------------------------------

struct Keys {
  crypto::SecretKey key = crypto::SecretKey::Generate();
  EnvelopeSigner signer{kClusterId, 0, key};
  EnvelopeVerifier verifier{
      kClusterId, {key.public_key()}, {}, kMessageBytesMax};
};

ledger::v1::Uint128 Id(uint64_t high, uint64_t low) {
  ledger::v1::Uint128 id;
  id.set_high(high);
  id.set_low(low);
  return id;
}

// A request of `transfers` transfers as ledger-bench builds them.
std::string RequestPayload(uint32_t transfers) {
  ledger::v1::OperationBatch batch;
  for (uint32_t i = 0; i < transfers; ++i) {
    ledger::v1::Transfer* t = batch.add_operations()->mutable_transfer();
    *t->mutable_id() = Id(7, 0x0000123456789abcull + i);
    *t->mutable_debit_account_id() = Id(0, 7);
    *t->mutable_credit_account_id() = Id(0, 8);
    t->set_amount(1);
    t->set_ledger(1);
  }
  pbft::v1::Request r;
  r.set_client_id(7);
  r.set_request_number(1'000'000);
  batch.SerializeToString(r.mutable_operation());
  return r.SerializeAsString();
}

std::string ReplyPayload(uint32_t transfers) {
  ledger::v1::OperationResults results;
  results.set_seq(1'000'000);
  for (uint32_t i = 0; i < transfers; ++i) {
    results.add_results()->set_code(ledger::v1::RESULT_CODE_OK);
  }
  pbft::v1::Reply r;
  r.set_view(3);
  r.set_request_number(1'000'000);
  r.set_client_id(7);
  r.set_replica_id(2);
  results.SerializeToString(r.mutable_result());
  return r.SerializeAsString();
}

std::string VotePayload() {
  pbft::v1::Prepare p;
  p.set_view(3);
  p.set_seq(1'000'000);
  p.set_batch_digest(std::string(32, 'd'));
  p.set_replica_id(2);
  return p.SerializeAsString();
}

size_t EnvelopeBytes(const Keys& k, const std::string& payload) {
  return k.signer.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, payload).ByteSizeLong();
}

// The middle value of `v` (not empty).
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// --- Crypto ----------------------------------------------------------------

struct SignCost {
  size_t bytes;  // Of the signed envelope.
  double sign_us;
  double verify_us;
};

// One round of sign and verify of `payload`: µs of CPU each, into `sign`
// and `verify`; the envelope's size into `bytes`.
void MeasureSignRound(const Keys& k, const std::string& payload, int n,
                      size_t* bytes, std::vector<double>* sign,
                      std::vector<double>* verify) {
  pbft::v1::Envelope e;
  double t0 = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; ++i) {
    e = k.signer.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, payload);
  }
  sign->push_back((CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - t0) / n * 1e6);
  t0 = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; ++i) CHECK(k.verifier.Check(e) == EnvelopeError::kOk);
  verify->push_back((CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - t0) / n * 1e6);
  *bytes = e.ByteSizeLong();
}

double MeasureSha256UsPerKb() {
  const std::string data(16 << 10, 'x');
  const int n = Iterations(3000);
  const double t0 = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < n; ++i) {
    Digest d = crypto::Sha256(data);
    CHECK(!d.ToBytes().empty());
  }
  const double s = CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - t0;
  return s / n / 16 * 1e6;
}

// --- fdatasync -------------------------------------------------------------

struct SyncCost {
  double p50_ms;
  double mean_ms;
  double cpu_us;  // CPU of the syncing thread per fdatasync (kernel's too).
};

double ThreadCpuUs() {
  timespec ts{};
  CHECK_EQ(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
  return static_cast<double>(ts.tv_sec) * 1e6 +
         static_cast<double>(ts.tv_nsec) / 1e3;
}

struct SyncSample {
  double ms;
  double cpu_us;
};

// Records of a small size (a vote's), each followed by fdatasync: appended
// to a new file (as a LevelDB log grows), or with `overwrite` written over
// a file of zeros written and synced first, so that no sync changes the
// file's size (the inode is not written again each time).
std::vector<SyncSample> SyncSamples(const std::string& path, int n,
                                    bool overwrite) {
  const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  CHECK_GE(fd, 0);
  const std::string record(512, 's');
  if (overwrite) {
    const std::string zeros(record.size() * static_cast<size_t>(n), '\0');
    CHECK_EQ(write(fd, zeros.data(), zeros.size()),
             static_cast<ssize_t>(zeros.size()));
    CHECK_EQ(fsync(fd), 0);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
  }
  std::vector<SyncSample> out;
  for (int i = 0; i < n; ++i) {
    CHECK_EQ(write(fd, record.data(), record.size()),
             static_cast<ssize_t>(record.size()));
    const double t0 = WallSeconds();
    const double c0 = ThreadCpuUs();
    CHECK_EQ(fdatasync(fd), 0);
    out.push_back({(WallSeconds() - t0) * 1e3, ThreadCpuUs() - c0});
  }
  close(fd);
  unlink(path.c_str());
  return out;
}

// `writers` threads syncing their own files at once, as the replicas of a
// local cluster do: ext4 commits concurrent syncs together, so a lone
// writer on a busy machine waits longer than each of several.
SyncCost MeasureFdatasync(const std::string& dir, int writers,
                          bool overwrite = false) {
  std::vector<std::vector<SyncSample>> samples(writers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      samples[w] =
          SyncSamples(absl::StrCat(dir, "/machine-bench-", getpid(), "-", w),
                      Iterations(200), overwrite);
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<double> ms;
  double sum = 0, cpu = 0;
  for (const auto& v : samples) {
    for (const SyncSample& x : v) {
      ms.push_back(x.ms);
      sum += x.ms;
      cpu += x.cpu_us;
    }
  }
  const double n = static_cast<double>(ms.size());
  return {Median(std::move(ms)), sum / n, cpu / n};
}

// --- gRPC: the server child --------------------------------------------------

// Reads a stream to its end; in "ping" mode answers every message.
class StreamServer final : public ledger::v1::ReplicaService::Service {
  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                               ledger::v1::StreamRequest>* stream) override {
    const auto& md = ctx->client_metadata();
    const bool ping = md.find("x-ping") != md.end();
    ledger::v1::StreamRequest req;
    const ledger::v1::StreamResponse pong;
    while (stream->Read(&req)) {
      if (ping && !stream->Write(pong)) break;
    }
    return grpc::Status::OK;
  }
};

// Answers every Submit with a reply envelope of a one-transfer request.
class SubmitServer final : public ledger::v1::LedgerService::Service {
 public:
  explicit SubmitServer(pbft::v1::Envelope reply) {
    *answer_.mutable_reply() = std::move(reply);
  }
  grpc::Status Submit(grpc::ServerContext*,
                      const ledger::v1::SubmitRequest* req,
                      ledger::v1::SubmitResponse* resp) override {
    CHECK(req->has_request());
    *resp = answer_;
    return grpc::Status::OK;
  }

 private:
  ledger::v1::SubmitResponse answer_;
};

// Runs in the child: serves until the parent closes `control`.
[[noreturn]] void ServeChild(int port_pipe, int control) {
  Keys k;
  StreamServer stream;
  SubmitServer submit(
      k.signer.Sign(pbft::v1::MESSAGE_TYPE_REPLY, ReplyPayload(1)));
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.SetMaxReceiveMessageSize(static_cast<int>(kMessageBytesMax));
  b.RegisterService(&stream);
  b.RegisterService(&submit);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  CHECK(server != nullptr);
  CHECK_EQ(write(port_pipe, &port, sizeof(port)),
           static_cast<ssize_t>(sizeof(port)));
  char c;
  while (read(control, &c, 1) > 0) {
  }
  server->Shutdown(std::chrono::system_clock::now());
  _exit(0);
}

struct Child {
  pid_t pid = -1;
  int control = -1;
  int port = 0;
  clockid_t clock{};
};

// Forks the server before this process starts any gRPC machinery.
Child StartChild() {
  int port_pipe[2], control[2];
  CHECK_EQ(pipe(port_pipe), 0);
  CHECK_EQ(pipe(control), 0);
  Child c;
  c.pid = fork();
  CHECK_GE(c.pid, 0);
  if (c.pid == 0) {
    close(port_pipe[0]);
    close(control[1]);
    ServeChild(port_pipe[1], control[0]);
  }
  close(port_pipe[1]);
  close(control[0]);
  c.control = control[1];
  CHECK_EQ(read(port_pipe[0], &c.port, sizeof(c.port)),
           static_cast<ssize_t>(sizeof(c.port)));
  close(port_pipe[0]);
  CHECK_EQ(clock_getcpuclockid(c.pid, &c.clock), 0);
  return c;
}

void StopChild(Child* c) {
  close(c->control);
  int status = 0;
  CHECK_EQ(waitpid(c->pid, &status, 0), c->pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// --- gRPC: the client side -------------------------------------------------

struct StreamCost {
  size_t bytes;
  double send_us;  // CPU of the sending process per message.
  double recv_us;  // CPU of the receiving process per message.
  double wall_us;
};

StreamCost MeasureStream(ledger::v1::ReplicaService::Stub* stub,
                         const Child& child, const pbft::v1::Envelope& e) {
  ledger::v1::StreamRequest msg;
  *msg.add_envelopes() = e;
  const size_t bytes = msg.ByteSizeLong();
  // About 64 MB per size, between 500 and 20,000 messages.
  const int n = Iterations(
      static_cast<int>(std::clamp<size_t>((64 << 20) / bytes, 500, 20'000)));
  grpc::ClientContext ctx;
  auto stream = stub->Stream(&ctx);
  CHECK(stream->Write(msg));  // Connected and warm before the clock starts.
  const double c0 = CpuSeconds(child.clock);
  const double p0 = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  const double w0 = WallSeconds();
  for (int i = 0; i < n; ++i) CHECK(stream->Write(msg));
  CHECK(stream->WritesDone());
  CheckGrpc(stream->Finish());
  const double p = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - p0;
  const double c = CpuSeconds(child.clock) - c0;
  const double w = WallSeconds() - w0;
  return {bytes, p / n * 1e6, c / n * 1e6, w / n * 1e6};
}

struct HopCost {
  double hop_us = 0;     // Half the median round trip.
  double client_us = 0;  // CPU per round trip of the side that pings.
  double server_us = 0;  // CPU per round trip of the side that answers.
};

// A small message on an idle stream: half a ping-pong round trip (median of
// many) and each process's CPU per round trip (a vote one way, an empty
// answer back) with nothing else in flight. Against MeasureStream's figures,
// this is what a message costs when it travels alone: each one its own system
// calls and thread wake-ups.
HopCost MeasureHop(ledger::v1::ReplicaService::Stub* stub, const Child& child,
                   const pbft::v1::Envelope& vote) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-ping", "1");
  auto stream = stub->Stream(&ctx);
  ledger::v1::StreamRequest msg;
  *msg.add_envelopes() = vote;
  ledger::v1::StreamResponse pong;
  std::vector<double> rtt;
  const int n = Iterations(1000);
  constexpr int kWarm = 20;
  double c0 = 0, p0 = 0;
  for (int i = 0; i < n + kWarm; ++i) {
    if (i == kWarm) {
      c0 = CpuSeconds(child.clock);
      p0 = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
    }
    const double t0 = WallSeconds();
    CHECK(stream->Write(msg));
    CHECK(stream->Read(&pong));
    if (i >= kWarm) rtt.push_back((WallSeconds() - t0) * 1e6);
  }
  HopCost h;
  h.client_us = (CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - p0) / n * 1e6;
  h.server_us = (CpuSeconds(child.clock) - c0) / n * 1e6;
  CHECK(stream->WritesDone());
  CheckGrpc(stream->Finish());
  h.hop_us = Median(std::move(rtt)) / 2;
  return h;
}

struct UnaryCost {
  double client_us;  // CPU per call, calls from 4 threads at once.
  double server_us;
  double rtt_us;  // Median round trip with one call in flight.
};

UnaryCost MeasureUnary(ledger::v1::LedgerService::Stub* stub,
                       const Child& child, const pbft::v1::Envelope& request) {
  ledger::v1::SubmitRequest req;
  *req.mutable_request() = request;
  auto call = [&] {
    grpc::ClientContext ctx;
    ledger::v1::SubmitResponse resp;
    CheckGrpc(stub->Submit(&ctx, req, &resp));
  };
  std::vector<double> rtt;
  const int n = Iterations(1000);
  for (int i = 0; i < n; ++i) {
    const double t0 = WallSeconds();
    call();
    rtt.push_back((WallSeconds() - t0) * 1e6);
  }
  constexpr int kThreads = 4;
  const double c0 = CpuSeconds(child.clock);
  const double p0 = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < n; ++i) call();
    });
  }
  for (std::thread& t : threads) t.join();
  const double calls = static_cast<double>(kThreads) * n;
  return {(CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - p0) / calls * 1e6,
          (CpuSeconds(child.clock) - c0) / calls * 1e6, Median(std::move(rtt))};
}

// --- Thread hand-offs -----------------------------------------------------

// CPU of the whole process per hand-off while two threads, pinned to
// `cpu_a` and `cpu_b`, pass a turn back and forth `n` times each.
double MeasureHandoffUs(int cpu_a, int cpu_b, int n) {
  absl::Mutex mu;
  absl::CondVar cv;
  int turn = 0;
  auto play = [&](int me, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECK_EQ(pthread_setaffinity_np(pthread_self(), sizeof(set), &set), 0);
    for (int i = 0; i < n; ++i) {
      absl::MutexLock l(&mu);
      while (turn != me) cv.Wait(&mu);
      turn = 1 - me;
      cv.Signal();
    }
  };
  const double c0 = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  std::thread a(play, 0, cpu_a);
  std::thread b(play, 1, cpu_b);
  a.join();
  b.join();
  return (CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e6 / (2.0 * n);
}

// On one CPU and on two of those this process may run on (-1 for two when
// it may run on one only).
struct HandoffCost {
  double same_cpu_us = 0;
  double other_cpu_us = -1;
};

HandoffCost MeasureHandoff() {
  cpu_set_t allowed;
  CHECK_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  const int n = Iterations(20000);
  HandoffCost h;
  h.same_cpu_us = MeasureHandoffUs(cpus[0], cpus[0], n);
  if (cpus.size() > 1) h.other_cpu_us = MeasureHandoffUs(cpus[0], cpus[1], n);
  return h;
}

// --- Output ------------------------------------------------------------------

std::string Fmt(double x) { return absl::StrFormat("%.3f", x); }

std::string SignJson(const std::vector<SignCost>& v) {
  std::vector<std::string> parts;
  for (const SignCost& s : v) {
    parts.push_back(absl::StrCat("{\"bytes\":", s.bytes,
                                 ",\"sign_us\":", Fmt(s.sign_us),
                                 ",\"verify_us\":", Fmt(s.verify_us), "}"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::string StreamJson(const std::vector<StreamCost>& v) {
  std::vector<std::string> parts;
  for (const StreamCost& s : v) {
    parts.push_back(absl::StrCat(
        "{\"bytes\":", s.bytes, ",\"send_us\":", Fmt(s.send_us),
        ",\"recv_us\":", Fmt(s.recv_us), ",\"wall_us\":", Fmt(s.wall_us), "}"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::vector<uint32_t> TransferCounts() {
  std::vector<uint32_t> out;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_transfers), ',', absl::SkipEmpty())) {
    uint32_t b = 0;
    CHECK(absl::SimpleAtoi(s, &b) && b > 0);
    out.push_back(b);
  }
  CHECK(!out.empty());
  return out;
}

// The protocol's typical payloads: a vote, and a request and a reply for
// each --transfers count.
struct Payloads {
  std::vector<uint32_t> transfers;
  std::string vote = VotePayload();
  std::vector<std::string> requests, replies;
};

Payloads MakePayloads() {
  Payloads p;
  p.transfers = TransferCounts();
  for (uint32_t b : p.transfers) {
    p.requests.push_back(RequestPayload(b));
    p.replies.push_back(ReplyPayload(b));
  }
  return p;
}

// Every size in each of several short rounds, and each size's median
// round: on this host the same code's cost rises by up to 60% for
// stretches of the run, and one long loop per size would report such a
// stretch for whichever size it fell on.
std::vector<SignCost> MeasureSignatures(const Keys& k, const Payloads& p) {
  std::vector<std::string> payloads = {p.vote};
  payloads.insert(payloads.end(), p.requests.begin(), p.requests.end());
  payloads.insert(payloads.end(), p.replies.begin(), p.replies.end());
  constexpr int kRounds = 7;
  const int n = std::max(1, Iterations(1500) / kRounds);
  std::vector<size_t> bytes(payloads.size());
  std::vector<std::vector<double>> sign(payloads.size()),
      verify(payloads.size());
  for (int r = 0; r < kRounds; ++r) {
    for (size_t i = 0; i < payloads.size(); ++i) {
      MeasureSignRound(k, payloads[i], n, &bytes[i], &sign[i], &verify[i]);
    }
  }
  std::vector<SignCost> out;
  for (size_t i = 0; i < payloads.size(); ++i) {
    out.push_back({bytes[i], Median(sign[i]), Median(verify[i])});
  }
  std::sort(out.begin(), out.end(), [](const SignCost& a, const SignCost& b) {
    return a.bytes < b.bytes;
  });
  return out;
}

struct GrpcCosts {
  std::vector<StreamCost> stream;
  HopCost hop;
  UnaryCost unary{};
};

GrpcCosts MeasureGrpc(const Child& child, const Keys& k, const Payloads& p) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(static_cast<int>(kMessageBytesMax));
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", child.port),
                                grpc::InsecureChannelCredentials(), args);
  auto stream_stub = ledger::v1::ReplicaService::NewStub(channel);
  auto unary_stub = ledger::v1::LedgerService::NewStub(channel);
  auto sign = [&k](const std::string& payload) {
    return k.signer.Sign(pbft::v1::MESSAGE_TYPE_PREPARE, payload);
  };
  GrpcCosts g;
  g.stream.push_back(MeasureStream(stream_stub.get(), child, sign(p.vote)));
  for (const std::string& r : p.requests) {
    g.stream.push_back(MeasureStream(stream_stub.get(), child, sign(r)));
  }
  g.stream.push_back(MeasureStream(stream_stub.get(), child,
                                   sign(std::string(kLargeBatchBytes, 'b'))));
  std::sort(g.stream.begin(), g.stream.end(),
            [](const StreamCost& a, const StreamCost& b) {
              return a.bytes < b.bytes;
            });
  g.hop = MeasureHop(stream_stub.get(), child, sign(p.vote));
  g.unary = MeasureUnary(
      unary_stub.get(), child,
      k.signer.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, p.requests.front()));
  return g;
}

// What Run measured, for PrintJson.
struct Measured {
  std::vector<SignCost> sign;
  double sha_us_per_kb = 0;
  GrpcCosts g;
  SyncCost sync, alone, overwrite;
  HandoffCost handoff;
};

void PrintJson(const Keys& k, const Payloads& p, const Measured& m) {
  const GrpcCosts& g = m.g;
  std::vector<std::string> sizes;
  for (size_t i = 0; i < p.transfers.size(); ++i) {
    sizes.push_back(
        absl::StrCat("{\"transfers\":", p.transfers[i],
                     ",\"request_bytes\":", EnvelopeBytes(k, p.requests[i]),
                     ",\"reply_bytes\":", EnvelopeBytes(k, p.replies[i]), "}"));
  }
  std::printf(
      "{\"kind\":\"machine\",\"nproc\":%u,\"ed25519\":%s,"
      "\"sha256_us_per_kb\":%s,\"vote_bytes\":%zu,\"sizes\":[%s],"
      "\"grpc_stream\":%s,\"grpc_stream_hop_us\":%s,"
      "\"grpc_stream_idle_cpu_us\":{\"client\":%s,\"server\":%s},"
      "\"grpc_unary\":{\"client_us\":%s,\"server_us\":%s,\"rtt_us\":%s},"
      "\"fdatasync_ms_p50\":%s,\"fdatasync_ms_mean\":%s,"
      "\"fdatasync_alone_ms_p50\":%s,\"fdatasync_alone_ms_mean\":%s,"
      "\"fdatasync_cpu_us\":%s,\"fdatasync_overwrite_ms_p50\":%s,"
      "\"fdatasync_overwrite_ms_mean\":%s,"
      "\"fdatasync_overwrite_cpu_us\":%s,"
      "\"handoff_us\":{\"same_cpu\":%s,\"other_cpu\":%s}}\n",
      std::thread::hardware_concurrency(), SignJson(m.sign).c_str(),
      Fmt(m.sha_us_per_kb).c_str(), EnvelopeBytes(k, p.vote),
      absl::StrJoin(sizes, ",").c_str(), StreamJson(g.stream).c_str(),
      Fmt(g.hop.hop_us).c_str(), Fmt(g.hop.client_us).c_str(),
      Fmt(g.hop.server_us).c_str(), Fmt(g.unary.client_us).c_str(),
      Fmt(g.unary.server_us).c_str(), Fmt(g.unary.rtt_us).c_str(),
      Fmt(m.sync.p50_ms).c_str(), Fmt(m.sync.mean_ms).c_str(),
      Fmt(m.alone.p50_ms).c_str(), Fmt(m.alone.mean_ms).c_str(),
      Fmt(m.sync.cpu_us).c_str(), Fmt(m.overwrite.p50_ms).c_str(),
      Fmt(m.overwrite.mean_ms).c_str(), Fmt(m.overwrite.cpu_us).c_str(),
      Fmt(m.handoff.same_cpu_us).c_str(),
      m.handoff.other_cpu_us < 0 ? "null"
                                 : Fmt(m.handoff.other_cpu_us).c_str());
}

int Run() {
  if (absl::GetFlag(FLAGS_probe)) {
    const std::vector<SignCost> sign =
        MeasureSignatures(Keys(), MakePayloads());
    std::printf("{\"kind\":\"probe\",\"ed25519\":%s}\n",
                SignJson(sign).c_str());
    return 0;
  }
  // Fork first: the child's gRPC server must not inherit this process's.
  Child child = StartChild();
  const Keys k;
  const Payloads p = MakePayloads();
  Measured m;
  std::fprintf(stderr, "machine-bench: Ed25519, SHA-256\n");
  m.sign = MeasureSignatures(k, p);
  m.sha_us_per_kb = MeasureSha256UsPerKb();
  std::fprintf(stderr, "machine-bench: gRPC on loopback (port %d)\n",
               child.port);
  m.g = MeasureGrpc(child, k, p);
  StopChild(&child);
  std::fprintf(stderr, "machine-bench: thread hand-offs\n");
  m.handoff = MeasureHandoff();
  const std::string dir = absl::GetFlag(FLAGS_dir);
  std::fprintf(stderr, "machine-bench: fdatasync in %s\n", dir.c_str());
  m.alone = MeasureFdatasync(dir, 1);
  m.sync = MeasureFdatasync(dir, 4);
  m.overwrite = MeasureFdatasync(dir, 4, /*overwrite=*/true);
  PrintJson(k, p, m);
  return 0;
}

}  // namespace
}  // namespace pbft::bench

int main(int argc, char** argv) {
  pbft::ParseFlags(argc, argv,
                   "machine-bench [--dir DIR] [--transfers 1,100] "
                   "[--scale 1.0] [--probe]");
  pbft::crypto::EnsureInitialized();
  return pbft::bench::Run();
}
