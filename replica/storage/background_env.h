// The leveldb::Envs of a replica's two databases: Env::Default() whose
// background work (memtable writes to level-0 tables and compactions) runs
// on a thread of the Env's own, one per Env and process, instead of the one
// thread Env::Default() has for every database, and whose table files are
// read with pread(2) instead of mapped into the process: mapped, the pages
// read counted in the replica's resident memory and grew with the chain.
//
// The ledger's thread runs at a lower CPU priority than the replica's own
// threads. A memtable write competes with the protocol's threads for the
// CPU: on a shared machine four replicas writing theirs out together
// (memtables of one size fill at the same height;
// ledger::WriteBufferForReplica now staggers them) made every call in
// flight wait for a fraction of a second (docs/benchmarks.md, "LevelDB's
// background work at a lower priority"). At a lower priority the write
// takes the CPU the protocol leaves idle first. Should it fall behind under
// a load that leaves none, LevelDB's own limits on level-0 files slow the
// writers down, as they would on a slow disk.
#ifndef PBFT_LEDGER_REPLICA_STORAGE_BACKGROUND_ENV_H_
#define PBFT_LEDGER_REPLICA_STORAGE_BACKGROUND_ENV_H_

#include "leveldb/env.h"

namespace pbft::storage {

// The Env of a replica's ledger: its thread is named "leveldb-bg" and adds
// `nice_increment` (0-19; 0: unchanged) to its nice value (Linux: per
// thread). The first call decides for the process.
leveldb::Env* BackgroundEnv(int nice_increment);

// The Env of a replica's protocol store: its thread is named "protocol-bg"
// and runs at the process's priority. The store's memtable writes are on
// the ordering path: when a full memtable finds the one before it still
// unwritten, LevelDB stops the writer, the core thread. On the ledger's
// thread they waited behind the ledger's compactions, which take seconds
// on a busy machine (docs/benchmarks.md, "The protocol store's own
// background thread").
leveldb::Env* ProtocolStoreEnv();

}  // namespace pbft::storage

#endif  // PBFT_LEDGER_REPLICA_STORAGE_BACKGROUND_ENV_H_
