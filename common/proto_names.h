// The wire schemas' C++ names inside pbft's namespaces.
//
// The client API schema (proto package ledger.v1) generates ::ledger::v1.
// Inside namespace pbft, `ledger::` names the ledger layer (pbft::ledger), so
// this alias makes `ledger::v1::Transfer` mean the schema's type from every
// layer, and bare `v1::` mean it inside pbft::ledger. The replica-to-replica
// schema (proto package pbft.v1) generates pbft::v1, visible as `v1::` in
// every other pbft namespace.
#ifndef PBFT_LEDGER_COMMON_PROTO_NAMES_H_
#define PBFT_LEDGER_COMMON_PROTO_NAMES_H_

namespace ledger::v1 {}

namespace pbft::ledger {
namespace v1 = ::ledger::v1;
}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_COMMON_PROTO_NAMES_H_
