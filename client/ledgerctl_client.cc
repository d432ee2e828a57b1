#include "client/ledgerctl_client.h"

#include <iostream>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/proto_names.h"
#include "google/protobuf/util/json_util.h"
#include "replica/ledger/block.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(std::string, key);
ABSL_DECLARE_FLAG(bool, json);

ABSL_FLAG(std::string, id, "",
          "Account, transfer or mint id (decimal, 0xHEX or HIGH:LOW).");
ABSL_FLAG(std::string, from, "", "transfer: debit account id.");
ABSL_FLAG(std::string, to, "", "transfer, mint: credit account id.");
ABSL_FLAG(std::string, account, "", "balance, history: account id.");
ABSL_FLAG(uint64_t, amount, 0,
          "transfer, mint: amount in the ledger's smallest unit.");
ABSL_FLAG(uint32_t, ledger, 1, "Ledger (currency) code.");
ABSL_FLAG(uint32_t, code, 0,
          "create-account: application-defined account kind.");
ABSL_FLAG(uint64_t, user_data, 0, "create-account: opaque application data.");
ABSL_FLAG(std::string, memo, "", "transfer, mint: memo (at most 64 bytes).");
ABSL_FLAG(uint32_t, limit, 20, "history: entries per page.");
ABSL_FLAG(std::string, cursor, "",
          "history: continue after this entry (a previous page's "
          "next_cursor, a transfer id).");
ABSL_FLAG(uint64_t, height, 0, "block: height (0: the chain head).");
ABSL_FLAG(double, deadline, 10, "Seconds to wait for the cluster's answer.");
ABSL_FLAG(bool, linearizable, false,
          "Reads: order the query like a transfer (sees every completed write) "
          "instead of the faster 2f+1 read-only query.");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: CA certificate (PEM); default the config's tls.ca_file.");
ABSL_FLAG(std::string, tls_cert, "",
          "TLS: client certificate (PEM); default tls.cert_file.");
ABSL_FLAG(std::string, tls_key, "",
          "TLS: client private key (PEM); default tls.key_file.");

namespace pbft::client {

const char kClientCommandsUsage[] =
    "  create-account --id ID [--ledger L] [--code C]   (owned by --key's "
    "client)\n"
    "  transfer --id ID --from A --to B --amount N [--ledger L] [--memo M]\n"
    "  mint --id ID --to A --amount N [--ledger L]     (issuers only)\n"
    "  balance --account A                             account and balance\n"
    "  get-transfer --id ID                            a transfer and its "
    "block\n"
    "  history --account A [--limit N] [--cursor C]    newest first\n"
    "  block [--height H]                              a block (default: "
    "head)\n"
    "  head                                            the chain head\n"
    "  status                                          every replica's state\n"
    "  (these need --config FILE --key FILE)\n";

namespace {

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok())
    return "{}";
  return out;
}

int Fail(const absl::Status& s) {
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"ok\":false,\"code\":\""
              << absl::StatusCodeToString(s.code()) << "\",\"outcome_unknown\":"
              << (IsOutcomeUnknown(s) ? "true" : "false") << ",\"error\":\""
              << absl::CEscape(s.message()) << "\"}\n";
  } else {
    std::cerr << "ledgerctl: " << s.message() << "\n";
    if (IsOutcomeUnknown(s)) {
      std::cerr << "ledgerctl: the request may or may not have executed; "
                   "resubmitting "
                   "the same --id is safe\n";
    }
  }
  return 1;
}

absl::StatusOr<std::unique_ptr<Client>> Connect() {
  if (absl::GetFlag(FLAGS_config).empty() || absl::GetFlag(FLAGS_key).empty()) {
    return absl::InvalidArgumentError(
        "--config FILE and --key FILE are required");
  }
  ClientOptions o;
  o.config_path = absl::GetFlag(FLAGS_config);
  o.key_path = absl::GetFlag(FLAGS_key);
  o.default_deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline));
  o.linearizable_reads = absl::GetFlag(FLAGS_linearizable);
  o.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  return Client::Create(o);
}

absl::StatusOr<ledger::v1::Uint128> IdFlag(const std::string& value,
                                           const std::string& flag) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat(flag, ": required"));
  return ParseId(value, flag);
}

// Prints one operation's outcome; exit 0 only for OK (or EXISTS: the same
// operation already executed, which is success for a retry).
int PrintResults(const ledger::v1::OperationResults& r,
                 const std::string& what) {
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(r) << "\n";
  } else {
    for (const ledger::v1::OperationResult& res : r.results()) {
      std::cout << what << ": " << ledger::v1::ResultCode_Name(res.code())
                << " (block " << r.seq() << ")\n";
    }
  }
  for (const ledger::v1::OperationResult& res : r.results()) {
    if (res.code() != ledger::v1::RESULT_CODE_OK &&
        res.code() != ledger::v1::RESULT_CODE_EXISTS)
      return 3;
  }
  return 0;
}

int CreateAccount(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_id), "--id");
  if (!id.ok()) return Fail(id.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  ledger::v1::CreateAccount a;
  *a.mutable_id() = *id;
  a.set_ledger(absl::GetFlag(FLAGS_ledger));
  a.set_code(absl::GetFlag(FLAGS_code));
  a.set_user_data(absl::GetFlag(FLAGS_user_data));
  absl::StatusOr<ledger::v1::OperationResults> r = (*c)->CreateAccounts({a});
  if (!r.ok()) return Fail(r.status());
  return PrintResults(*r, "create-account " + IdToString(*id));
}

int Transfer(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_id), "--id");
  if (!id.ok()) return Fail(id.status());
  absl::StatusOr<ledger::v1::Uint128> from =
      IdFlag(absl::GetFlag(FLAGS_from), "--from");
  if (!from.ok()) return Fail(from.status());
  absl::StatusOr<ledger::v1::Uint128> to =
      IdFlag(absl::GetFlag(FLAGS_to), "--to");
  if (!to.ok()) return Fail(to.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  ledger::v1::Transfer t;
  *t.mutable_id() = *id;
  *t.mutable_debit_account_id() = *from;
  *t.mutable_credit_account_id() = *to;
  t.set_amount(absl::GetFlag(FLAGS_amount));
  t.set_ledger(absl::GetFlag(FLAGS_ledger));
  t.set_memo(absl::GetFlag(FLAGS_memo));
  absl::StatusOr<ledger::v1::OperationResults> r = (*c)->Transfers({t});
  if (!r.ok()) return Fail(r.status());
  return PrintResults(*r, "transfer " + IdToString(*id));
}

int Mint(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_id), "--id");
  if (!id.ok()) return Fail(id.status());
  absl::StatusOr<ledger::v1::Uint128> to =
      IdFlag(absl::GetFlag(FLAGS_to), "--to");
  if (!to.ok()) return Fail(to.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  ledger::v1::Mint m;
  *m.mutable_id() = *id;
  *m.mutable_account_id() = *to;
  m.set_amount(absl::GetFlag(FLAGS_amount));
  m.set_ledger(absl::GetFlag(FLAGS_ledger));
  m.set_memo(absl::GetFlag(FLAGS_memo));
  absl::StatusOr<ledger::v1::OperationResults> r = (*c)->Mint(m);
  if (!r.ok()) return Fail(r.status());
  return PrintResults(*r, "mint " + IdToString(*id));
}

int Balance(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_account), "--account");
  if (!id.ok()) return Fail(id.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<ledger::v1::Account> a = (*c)->GetAccount(*id);
  if (!a.ok()) return Fail(a.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*a) << "\n";
  } else {
    std::cout << "account " << IdToString(a->id()) << ": balance "
              << a->balance() << " on ledger " << a->ledger()
              << " (owner client " << a->owner_client_id() << ", debits "
              << a->debits_posted() << ", credits " << a->credits_posted()
              << ")\n";
  }
  return 0;
}

void PrintTransfer(const ledger::v1::TransferRecord& t) {
  std::cout << (t.is_mint() ? "mint " : "transfer ") << IdToString(t.id())
            << ": "
            << (t.is_mint() ? std::string("")
                            : IdToString(t.debit_account_id()) + " -> ")
            << IdToString(t.credit_account_id()) << " amount " << t.amount()
            << " ledger " << t.ledger() << " "
            << ledger::v1::ResultCode_Name(t.result()) << " block " << t.seq()
            << (t.memo().empty() ? ""
                                 : " memo \"" + absl::CEscape(t.memo()) + "\"")
            << "\n";
}

int GetTransfer(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_id), "--id");
  if (!id.ok()) return Fail(id.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<ledger::v1::TransferRecord> t = (*c)->GetTransfer(*id);
  if (!t.ok()) return Fail(t.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*t) << "\n";
  } else {
    PrintTransfer(*t);
  }
  return 0;
}

int History(const std::vector<std::string>&) {
  absl::StatusOr<ledger::v1::Uint128> id =
      IdFlag(absl::GetFlag(FLAGS_account), "--account");
  if (!id.ok()) return Fail(id.status());
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  ledger::v1::Uint128 cursor;
  if (!absl::GetFlag(FLAGS_cursor).empty()) {
    absl::StatusOr<ledger::v1::Uint128> parsed =
        ParseId(absl::GetFlag(FLAGS_cursor), "--cursor");
    if (!parsed.ok()) return Fail(parsed.status());
    cursor = *parsed;
  }
  absl::StatusOr<ledger::v1::HistoryPage> h =
      (*c)->History(*id, absl::GetFlag(FLAGS_limit), cursor);
  if (!h.ok()) return Fail(h.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*h) << "\n";
  } else {
    for (const ledger::v1::TransferRecord& t : h->entries()) PrintTransfer(t);
    if (h->has_next_cursor()) {
      std::cout << "more: --cursor " << IdToString(h->next_cursor()) << "\n";
    }
  }
  return 0;
}

int Block(const std::vector<std::string>&) {
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  uint64_t height = absl::GetFlag(FLAGS_height);
  if (height == 0) {
    absl::StatusOr<ledger::v1::ChainHead> head = (*c)->GetHead();
    if (!head.ok()) return Fail(head.status());
    height = head->height();
    if (height == 0)
      return Fail(absl::NotFoundError("the chain has no blocks yet"));
  }
  absl::StatusOr<ledger::v1::Block> b = (*c)->GetBlock(height);
  if (!b.ok()) return Fail(b.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*b) << "\n";
  } else {
    const ledger::v1::BlockHeader& h = b->header();
    std::cout << "block " << h.height() << " (" << b->requests_size()
              << " requests, timestamp_ms " << h.timestamp_ms()
              << ")\n  hash     " << ledger::BlockHash(h).ToHex()
              << "\n  previous " << absl::BytesToHexString(h.previous_hash())
              << "\n  state    " << absl::BytesToHexString(h.state_digest())
              << "\n  results  " << absl::BytesToHexString(h.results_root())
              << "\n";
    if (b->has_certificate()) {
      std::cout << "  commits  " << b->certificate().commits_size()
                << " signatures (view " << b->view() << ", verified)\n";
    } else {
      std::cout << "  commits  none (an ordered answer: certified by f+1 "
                   "matching replies)\n";
    }
  }
  return 0;
}

int Head(const std::vector<std::string>&) {
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  absl::StatusOr<ledger::v1::ChainHead> h = (*c)->GetHead();
  if (!h.ok()) return Fail(h.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << ToJson(*h) << "\n";
  } else {
    std::cout << "head: height " << h->height() << " hash "
              << absl::BytesToHexString(h->block_hash()) << "\n";
  }
  return 0;
}

int Status(const std::vector<std::string>&) {
  auto c = Connect();
  if (!c.ok()) return Fail(c.status());
  bool all = true;
  std::string json = "[";
  for (uint32_t r = 0; r < (*c)->replica_count(); ++r) {
    absl::StatusOr<ledger::v1::StatusResponse> s = (*c)->ReplicaStatus(r);
    if (absl::GetFlag(FLAGS_json)) {
      if (r > 0) json += ",";
      json += s.ok() ? ToJson(*s)
                     : absl::StrCat("{\"replica_id\":", r, ",\"error\":\"",
                                    absl::CEscape(s.status().message()), "\"}");
    } else if (s.ok()) {
      std::cout << "replica " << r << ": view " << s->view()
                << (s->view_changing() ? " (changing)" : "")
                << (s->in_cluster_view()
                        ? ""
                        : absl::StrCat(", cluster view ", s->cluster_view()))
                << ", executed " << s->last_executed_seq() << " ("
                << s->seqs_behind() << " behind), committed "
                << s->last_committed_seq() << ", stable checkpoint "
                << s->stable_checkpoint_seq() << ", peers "
                << s->peers_connected()
                << (s->caught_up() ? ", ready" : ", NOT ready") << "\n";
    } else {
      std::cout << "replica " << r << ": unreachable (" << s.status().message()
                << ")\n";
    }
    all &= s.ok();
  }
  if (absl::GetFlag(FLAGS_json)) std::cout << json << "]\n";
  return all ? 0 : 1;
}

}  // namespace

std::map<std::string, LedgerctlCommand> ClientCommands() {
  return {
      {"create-account", CreateAccount},
      {"transfer", Transfer},
      {"mint", Mint},
      {"balance", Balance},
      {"get-transfer", GetTransfer},
      {"history", History},
      {"block", Block},
      {"head", Head},
      {"status", Status},
  };
}

absl::StatusOr<ledger::v1::Receipt> FetchReceipt(
    const ledger::v1::Uint128& transfer_id) {
  absl::StatusOr<std::unique_ptr<Client>> c = Connect();
  if (!c.ok()) return c.status();
  return (*c)->GetReceipt(transfer_id);
}

}  // namespace pbft::client
