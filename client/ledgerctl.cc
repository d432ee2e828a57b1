// ledgerctl: the operator's and developer's command line.
//
//   ledgerctl keygen --out FILE
//   ledgerctl cluster init --replicas N --clients M --out DIR
//                          [--base-port P] [--host H] [--f F]
//   ledgerctl cluster init --k8s --replicas N --clients M --out DIR
//                          [--namespace NS] [--cluster-domain D]
//                          [--external-domain D] [--own-replicas 0,2]
//   ledgerctl --config FILE config check
//   ledgerctl verify --data-dir DIR [--compare DIR2,...] [--config FILE]
//   ledgerctl receipt --data-dir DIR --transfer ID --out FILE
//   ledgerctl --config FILE --key FILE receipt --transfer ID --out FILE
//   ledgerctl verify-receipt FILE --config FILE [--data-dir DIR]
//
// Every command takes --json for machine-readable output. Exit status: 0 on
// success, 1 on failure (the message names the field or file), 2 on usage
// errors.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/cluster_init.h"
#include "client/ledgerctl_client.h"
#include "common/config.h"
#include "common/flags.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "google/protobuf/util/json_util.h"
#include "replica/ledger/ledger.h"
#include "replica/ledger/verify.h"

ABSL_FLAG(std::string, config, "", "Cluster config file (cluster.json).");
ABSL_FLAG(std::string, key, "", "This client's private key file.");
ABSL_FLAG(bool, json, false, "Print machine-readable JSON.");
ABSL_FLAG(std::string, out, "",
          "Output file (keygen) or directory (cluster init).");
ABSL_FLAG(uint32_t, replicas, 4, "cluster init: number of replicas.");
ABSL_FLAG(uint32_t, clients, 1, "cluster init: number of clients.");
ABSL_FLAG(uint32_t, base_port, 7000, "cluster init: first replica port.");
ABSL_FLAG(std::string, host, "127.0.0.1", "cluster init: replicas' host.");
ABSL_FLAG(uint32_t, f, 0,
          "cluster init: faults tolerated (0: largest possible).");
ABSL_FLAG(std::string, cluster_id, "",
          "cluster init: cluster id (default random).");
ABSL_FLAG(uint32_t, checkpoint_interval, 0,
          "cluster init: checkpoint interval K (0: default); window L = 2K.");
ABSL_FLAG(uint64_t, genesis_balance, 1'000'000'000,
          "cluster init: each client's genesis balance on ledger 1.");
ABSL_FLAG(bool, force, false, "Overwrite existing files.");
ABSL_FLAG(bool, k8s, false,
          "cluster init: Kubernetes DNS names and mount paths, plus a "
          "kustomize component for deploy/k8s overlays (docs/operations.md).");
ABSL_FLAG(std::string, namespace, "pbft-ledger",
          "cluster init --k8s: the replicas' Kubernetes namespace.");
ABSL_FLAG(std::string, cluster_domain, "cluster.local",
          "cluster init --k8s: the Kubernetes cluster's DNS domain.");
ABSL_FLAG(std::string, external_domain, "",
          "cluster init --k8s: replica i's address is ledger-<i>.DOMAIN "
          "(organisations in different clusters) instead of its in-cluster "
          "Service name.");
ABSL_FLAG(std::string, own_replicas, "",
          "cluster init --k8s: comma-separated replica ids whose key and TLS "
          "Secrets the component generates (default: all).");
ABSL_FLAG(std::string, data_dir, "",
          "A replica's data directory (verify, receipt).");
ABSL_FLAG(std::string, compare, "",
          "verify: more data directories (comma-separated) to verify and "
          "compare block hash for block hash with --data-dir's.");
ABSL_FLAG(std::string, transfer, "",
          "receipt: transfer id, decimal (low 64 bits) or HIGH:LOW.");

namespace pbft::client {
namespace {

constexpr char kUsage[] =
    "ledgerctl [flags] <command> ...\n"
    "commands:\n"
    "  keygen --out FILE                      write a new Ed25519 key file\n"
    "  cluster init --replicas N --clients M --out DIR [--base-port P] [--host "
    "H]\n"
    "                                         write cluster.json and key "
    "files\n"
    "  cluster init --k8s ... [--namespace NS] [--cluster-domain D]\n"
    "               [--external-domain D] [--own-replicas 0,2]\n"
    "                                         the same for deploy/k8s, plus "
    "a\n"
    "                                         kustomize component "
    "(DIR/kustomization.yaml)\n"
    "  config check --config FILE             load and validate a cluster "
    "config\n"
    "  verify --data-dir DIR [--config FILE]  verify a replica's chain "
    "offline\n"
    "  verify --data-dir DIR --compare DIR2,DIR3 [--config FILE]\n"
    "                                         verify each and check that "
    "their\n"
    "                                         block hashes agree\n"
    "  receipt --data-dir DIR --transfer ID --out FILE\n"
    "                                         write a transfer's receipt\n"
    "  receipt --config FILE --key FILE --transfer ID --out FILE\n"
    "                                         the same from the running "
    "cluster\n"
    "  verify-receipt FILE --config FILE [--data-dir DIR]\n"
    "                                         check a receipt offline (and "
    "its\n"
    "                                         header against DIR's chain)\n";

// Escapes a string for a JSON value.
std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

int Fail(const absl::Status& s) {
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":false,\"code\":"
              << JsonString(absl::StatusCodeToString(s.code()))
              << ",\"error\":" << JsonString(s.message()) << "}\n";
  } else {
    std::cerr << "ledgerctl: " << s.message() << "\n";
  }
  return 1;
}

int Usage(const std::string& why) {
  std::cerr << "ledgerctl: " << why << "\n\n" << kUsage << kClientCommandsUsage;
  return 2;
}

int Keygen(const std::vector<std::string>&) {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Usage("keygen: --out FILE is required");
  crypto::SecretKey key = crypto::SecretKey::Generate();
  absl::Status s = WriteKeyFile(out, key, absl::GetFlag(FLAGS_force));
  if (!s.ok()) return Fail(s);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":true,\"key_file\":" << JsonString(out)
              << ",\"public_key\":" << JsonString(key.public_key().ToBase64())
              << "}\n";
  } else {
    std::cout << "wrote " << out
              << " (mode 0600)\npublic key: " << key.public_key().ToBase64()
              << "\n";
  }
  return 0;
}

int ClusterCmd(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "init")
    return Usage("cluster: expected 'cluster init'");
  ClusterInitOptions o;
  o.replicas = absl::GetFlag(FLAGS_replicas);
  o.clients = absl::GetFlag(FLAGS_clients);
  o.out_dir = absl::GetFlag(FLAGS_out);
  o.host = absl::GetFlag(FLAGS_host);
  o.base_port = absl::GetFlag(FLAGS_base_port);
  o.f = absl::GetFlag(FLAGS_f);
  o.cluster_id = absl::GetFlag(FLAGS_cluster_id);
  o.genesis_balance = absl::GetFlag(FLAGS_genesis_balance);
  o.checkpoint_interval = absl::GetFlag(FLAGS_checkpoint_interval);
  o.force = absl::GetFlag(FLAGS_force);
  o.k8s = absl::GetFlag(FLAGS_k8s);
  o.k8s_namespace = absl::GetFlag(FLAGS_namespace);
  o.k8s_cluster_domain = absl::GetFlag(FLAGS_cluster_domain);
  o.k8s_external_domain = absl::GetFlag(FLAGS_external_domain);
  const std::string own = absl::GetFlag(FLAGS_own_replicas);
  if (!own.empty()) {
    if (!o.k8s) return Usage("cluster init: --own-replicas needs --k8s");
    for (absl::string_view id : absl::StrSplit(own, ',')) {
      uint32_t r = 0;
      if (!absl::SimpleAtoi(id, &r)) {
        return Usage(
            absl::StrCat("--own-replicas: '", id, "' is not a replica id"));
      }
      o.k8s_own_replicas.push_back(r);
    }
  }
  if (o.out_dir.empty()) return Usage("cluster init: --out DIR is required");
  absl::StatusOr<ledger::v1::ClusterConfig> config = InitCluster(o);
  if (!config.ok()) return Fail(config.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":true,\"config\":"
              << JsonString(o.out_dir + "/cluster.json")
              << ",\"cluster_id\":" << JsonString(config->cluster_id())
              << ",\"replicas\":" << config->replicas_size()
              << ",\"clients\":" << config->clients_size()
              << ",\"f\":" << config->f() << "}\n";
  } else {
    std::cout << "cluster " << config->cluster_id() << ": "
              << config->replicas_size() << " replicas (f=" << config->f()
              << "), " << config->clients_size()
              << " clients\n  config: " << o.out_dir
              << "/cluster.json\n  keys:   " << o.out_dir
              << "/keys/ (mode 0600)\n";
    if (o.k8s) {
      std::cout << "  kustomize component: " << o.out_dir
                << "/kustomization.yaml (put the TLS files in " << o.out_dir
                << "/tls/)\n";
    }
    for (const ledger::v1::ReplicaConfig& r : config->replicas()) {
      std::cout << "  replica " << r.id() << " at " << r.address() << "\n";
    }
  }
  return 0;
}

int ConfigCmd(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "check")
    return Usage("config: expected 'config check'");
  const std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) return Usage("config check: --config FILE is required");
  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(path);
  if (!cluster.ok()) return Fail(cluster.status());
  if (!absl::GetFlag(FLAGS_key).empty()) {
    absl::StatusOr<crypto::SecretKey> key =
        ReadKeyFile(absl::GetFlag(FLAGS_key));
    if (!key.ok()) return Fail(key.status());
    if (cluster->client_by_key(key->public_key()) == nullptr &&
        cluster->replica_by_key(key->public_key()) < 0) {
      return Fail(absl::NotFoundError(absl::StrCat(
          absl::GetFlag(FLAGS_key), ": its public key is registered in ", path,
          " neither as a client nor as a replica")));
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":true,\"cluster_id\":"
              << JsonString(cluster->cluster_id())
              << ",\"replicas\":" << cluster->n() << ",\"f\":" << cluster->f()
              << ",\"quorum\":" << cluster->quorum()
              << ",\"clients\":" << cluster->config().clients_size() << "}\n";
  } else {
    std::cout << path << ": ok: cluster " << cluster->cluster_id() << ", "
              << cluster->n() << " replicas, f=" << cluster->f() << ", quorum "
              << cluster->quorum() << ", " << cluster->config().clients_size()
              << " clients\n";
  }
  return 0;
}

// verify: the chain of a data directory against a trust root (the config
// given with --config, else the copy stored in the data directory).
// A replica's data directory holds its ledger in ledger/ (and its protocol
// state in protocol/); a bare ledger directory is accepted as well.
std::string LedgerDir(const std::string& data_dir) {
  if (data_dir.empty()) return data_dir;
  const std::filesystem::path nested =
      std::filesystem::path(data_dir) / "ledger";
  std::error_code ec;
  if (std::filesystem::exists(nested / "CURRENT", ec)) return nested.string();
  return data_dir;
}

// One verified data directory, as a JSON object.
std::string VerifyJson(const ledger::ChainVerifyReport& r,
                       const std::string& dir, const std::string& trust_root,
                       double seconds) {
  std::ostringstream o;
  o << "{\"ok\":" << (r.ok ? "true" : "false")
    << ",\"data_dir\":" << JsonString(dir)
    << ",\"trust_root\":" << JsonString(trust_root)
    << ",\"cluster_id\":" << JsonString(r.cluster_id)
    << ",\"head_height\":" << r.head_height
    << ",\"blocks_verified\":" << r.blocks_verified
    << ",\"requests\":" << r.requests;
  if (r.ok) {
    o << ",\"head_hash\":" << JsonString(r.head_hash.ToHex())
      << ",\"state_digest\":" << JsonString(r.state_digest.ToHex());
  } else {
    o << ",\"failed_height\":" << r.failed_height
      << ",\"failed_check\":" << JsonString(r.failed_check)
      << ",\"error\":" << JsonString(r.error);
  }
  o << ",\"seconds\":" << seconds << "}";
  return o.str();
}

void PrintVerifyText(const ledger::ChainVerifyReport& r, const std::string& dir,
                     const std::string& trust_root, double seconds,
                     bool name_dir) {
  const std::string who = name_dir ? "verify " + dir : "verify";
  if (r.ok) {
    std::cout << who << ": ok: " << r.blocks_verified << " blocks, "
              << r.requests << " requests, head " << r.head_hash.ToHex()
              << ", state " << r.state_digest.ToHex()
              << " (trust root: " << trust_root << ", " << seconds << " s)\n";
  } else {
    std::cout << who << ": FAILED at height " << r.failed_height << " ("
              << r.failed_check << "): " << r.error
              << " (trust root: " << trust_root << ")\n";
  }
}

// verify --compare: do the verified chains agree block hash for block hash?
bool ReportComparison(const std::vector<ledger::ChainVerifyReport>& reports,
                      const std::vector<std::string>& dirs, std::string* json) {
  const ledger::ChainComparison c = ledger::CompareChains(reports);
  std::ostringstream o;
  o << "{\"agree\":" << (c.agree ? "true" : "false")
    << ",\"common_height\":" << c.common_height;
  if (c.agree) {
    o << ",\"common_hash\":" << JsonString(c.common_hash.ToHex()) << "}";
    if (!absl::GetFlag(FLAGS_json)) {
      std::cout << "compare: ok: " << dirs.size()
                << " chains agree up to height " << c.common_height << " (hash "
                << c.common_hash.ToHex() << ")\n";
    }
  } else {
    o << ",\"fork_height\":" << c.fork_height << ",\"fork\":["
      << JsonString(dirs[c.fork_first]) << ","
      << JsonString(dirs[c.fork_second]) << "]}";
    if (!absl::GetFlag(FLAGS_json)) {
      std::cout << "compare: FAILED: " << dirs[c.fork_first] << " and "
                << dirs[c.fork_second] << " differ from height "
                << c.fork_height << " on\n";
    }
  }
  *json = o.str();
  return c.agree;
}

int VerifyCmd(const std::vector<std::string>&) {
  std::vector<std::string> dirs;
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    dirs.push_back(LedgerDir(absl::GetFlag(FLAGS_data_dir)));
  }
  const std::string compare = absl::GetFlag(FLAGS_compare);
  for (absl::string_view d : absl::StrSplit(compare, ',', absl::SkipEmpty())) {
    dirs.push_back(LedgerDir(std::string(d)));
  }
  if (dirs.empty()) return Usage("verify: --data-dir DIR is required");
  const std::string config_path = absl::GetFlag(FLAGS_config);
  std::optional<Cluster> trust;
  if (!config_path.empty()) {
    absl::StatusOr<Cluster> c = Cluster::LoadFile(config_path);
    if (!c.ok()) return Fail(c.status());
    trust = std::move(*c);
  }
  std::vector<ledger::ChainVerifyReport> reports;
  std::vector<std::string> json;
  bool ok = true;
  for (const std::string& dir : dirs) {
    const std::string trust_root =
        trust ? config_path : "stored config in " + dir;
    const auto start = std::chrono::steady_clock::now();
    reports.push_back(ledger::VerifyDataDir(dir, trust ? &*trust : nullptr,
                                            ledger::ChainVerifyOptions{}));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    const ledger::ChainVerifyReport& r = reports.back();
    ok = ok && r.ok;
    json.push_back(VerifyJson(r, dir, trust_root, seconds));
    if (!absl::GetFlag(FLAGS_json)) {
      PrintVerifyText(r, dir, trust_root, seconds, dirs.size() > 1);
    }
  }
  if (compare.empty()) {
    if (absl::GetFlag(FLAGS_json)) std::cout << json[0] << "\n";
    return ok ? 0 : 1;
  }
  std::string comparison = "null";
  if (ok) ok = ReportComparison(reports, dirs, &comparison);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":" << (ok ? "true" : "false") << ",\"data_dirs\":["
              << absl::StrJoin(json, ",") << "],\"compare\":" << comparison
              << "}\n";
  }
  return ok ? 0 : 1;
}

absl::StatusOr<ledger::v1::Uint128> ParseTransferId(absl::string_view text) {
  ledger::v1::Uint128 id;
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  uint64_t high = 0, low = 0;
  const bool ok = parts.size() == 1   ? absl::SimpleAtoi(parts[0], &low)
                  : parts.size() == 2 ? absl::SimpleAtoi(parts[0], &high) &&
                                            absl::SimpleAtoi(parts[1], &low)
                                      : false;
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("--transfer: '", text, "' is not a number or HIGH:LOW"));
  }
  id.set_high(high);
  id.set_low(low);
  return id;
}

// A receipt from a local data directory.
absl::StatusOr<ledger::v1::Receipt> LocalReceipt(
    const std::string& dir, const ledger::v1::Uint128& id) {
  absl::StatusOr<std::unique_ptr<ledger::Ledger>> ledger =
      ledger::Ledger::OpenExisting(dir, ledger::LedgerOptions{});
  if (!ledger.ok()) return ledger.status();
  return (*ledger)->BuildReceipt(id);
}

// receipt: built from a local data directory, or (without --data-dir)
// fetched from the running cluster with --config and --key.
int ReceiptCmd(const std::vector<std::string>&) {
  const std::string dir = LedgerDir(absl::GetFlag(FLAGS_data_dir));
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty() || absl::GetFlag(FLAGS_transfer).empty()) {
    return Usage(
        "receipt: --transfer ID --out FILE and --data-dir DIR (or --config "
        "FILE --key FILE) required");
  }
  absl::StatusOr<ledger::v1::Uint128> id =
      ParseTransferId(absl::GetFlag(FLAGS_transfer));
  if (!id.ok()) return Fail(id.status());
  absl::StatusOr<ledger::v1::Receipt> receipt =
      dir.empty() ? FetchReceipt(*id) : LocalReceipt(dir, *id);
  if (!receipt.ok()) return Fail(receipt.status());
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(*receipt, &json, opts)
           .ok()) {
    return Fail(absl::InternalError("receipt: cannot encode as JSON"));
  }
  std::ofstream f(out, std::ios::trunc);
  f << json;
  f.close();
  if (!f) return Fail(absl::UnavailableError(out + ": cannot write"));
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":true,\"receipt\":" << JsonString(out)
              << ",\"height\":" << receipt->header().height()
              << ",\"bytes\":" << json.size() << "}\n";
  } else {
    std::cout << "wrote " << out << ": transfer in block "
              << receipt->header().height() << " (" << json.size()
              << " bytes)\n";
  }
  return 0;
}

// Is the receipt's header the block at its height in `dir`'s chain?
absl::Status ReceiptInChain(const ledger::ReceiptSummary& s,
                            const std::string& dir) {
  absl::StatusOr<std::unique_ptr<ledger::Ledger>> ledger =
      ledger::Ledger::OpenExisting(dir, ledger::LedgerOptions{});
  if (!ledger.ok()) return ledger.status();
  absl::StatusOr<ledger::v1::Block> block = (*ledger)->GetStoredBlock(s.height);
  if (!block.ok()) return block.status();
  if (ledger::BlockHash(block->header()) != s.block_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat("receipt: its header is not block ", s.height, " of ", dir,
                     "'s chain (hash ", s.block_hash.ToHex(), ")"));
  }
  return absl::OkStatus();
}

void PrintReceiptSummary(const ledger::ReceiptSummary& s,
                         const std::string& config, const std::string& dir) {
  const std::string result = ledger::v1::ResultCode_Name(s.transfer.result());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":true,\"height\":" << s.height
              << ",\"view\":" << s.view
              << ",\"transfer_low\":" << s.transfer.id().low()
              << ",\"transfer_high\":" << s.transfer.id().high()
              << ",\"amount\":" << s.transfer.amount()
              << ",\"result\":" << JsonString(result)
              << ",\"block_hash\":" << JsonString(s.block_hash.ToHex())
              << ",\"in_chain_of\":" << (dir.empty() ? "null" : JsonString(dir))
              << ",\"result_certified\":"
              << (s.result_certified ? "true" : "false")
              << ",\"trust_root\":" << JsonString(config) << "}\n";
    return;
  }
  std::cout << "verify-receipt: ok: transfer " << s.transfer.id().high() << ":"
            << s.transfer.id().low() << " committed at height " << s.height
            << " (view " << s.view << ") by a quorum of " << config
            << "; result " << result << " in block " << s.block_hash.ToHex()
            << (dir.empty() ? " (compare that hash with a replica's block "
                              "at this height, or pass --data-dir)"
                            : ", which is block " + std::to_string(s.height) +
                                  " of " + dir + "'s chain")
            << (s.result_certified ? "; result certified by f+1 replies" : "")
            << "\n";
}

// verify-receipt: checks a receipt file (JSON or binary) against a config.
int VerifyReceiptCmd(const std::vector<std::string>& args) {
  if (args.size() != 1) return Usage("verify-receipt: expected one FILE");
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    return Usage("verify-receipt: --config FILE (the trust root) is required");
  }
  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(config_path);
  if (!cluster.ok()) return Fail(cluster.status());
  std::ifstream in(args[0], std::ios::binary);
  if (!in) return Fail(absl::NotFoundError(args[0] + ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  ledger::v1::Receipt receipt;
  if (!google::protobuf::util::JsonStringToMessage(text, &receipt).ok() &&
      !receipt.ParseFromString(text)) {
    return Fail(absl::InvalidArgumentError(
        args[0] + ": not a receipt (neither JSON nor binary)"));
  }
  absl::StatusOr<ledger::ReceiptSummary> s =
      ledger::VerifyReceipt(*cluster, receipt);
  if (!s.ok()) {
    if (absl::GetFlag(FLAGS_json)) return Fail(s.status());
    std::cout << "verify-receipt: FAILED: " << s.status().message() << "\n";
    return 1;
  }
  // The header against a replica's chain: its hash must be that replica's
  // block hash at the height (every correct replica has the same).
  const std::string dir = LedgerDir(absl::GetFlag(FLAGS_data_dir));
  if (!dir.empty()) {
    absl::Status c = ReceiptInChain(*s, dir);
    if (!c.ok()) {
      if (absl::GetFlag(FLAGS_json)) return Fail(c);
      std::cout << "verify-receipt: FAILED: " << c.message() << "\n";
      return 1;
    }
  }
  PrintReceiptSummary(*s, config_path, dir);
  return 0;
}

}  // namespace
}  // namespace pbft::client

int main(int argc, char** argv) {
  std::vector<std::string> args =
      pbft::ParseFlags(argc, argv, pbft::client::kUsage);
  if (args.size() < 2) return pbft::client::Usage("no command given");
  std::map<std::string, std::function<int(const std::vector<std::string>&)>>
      commands = {
          {"keygen", pbft::client::Keygen},
          {"cluster", pbft::client::ClusterCmd},
          {"config", pbft::client::ConfigCmd},
          {"verify", pbft::client::VerifyCmd},
          {"receipt", pbft::client::ReceiptCmd},
          {"verify-receipt", pbft::client::VerifyReceiptCmd},
      };
  for (auto& [name, fn] : pbft::client::ClientCommands())
    commands.emplace(name, fn);
  auto it = commands.find(args[1]);
  if (it == commands.end())
    return pbft::client::Usage("unknown command '" + args[1] + "'");
  return it->second(std::vector<std::string>(args.begin() + 2, args.end()));
}
