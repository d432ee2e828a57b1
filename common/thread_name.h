// Names the calling thread (at most 15 characters show), so that top -H,
// perf and gdb tell a replica's threads apart.
#ifndef PBFT_LEDGER_COMMON_THREAD_NAME_H_
#define PBFT_LEDGER_COMMON_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace pbft {

inline void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_THREAD_NAME_H_
