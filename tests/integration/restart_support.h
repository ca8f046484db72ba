// Shared by the restart and fault tests (restart_matrix_test.cc,
// restart_books_test.cc, fault_matrix_test.cc, reconnect_faults_test.cc)
// and the restart worker (restart_worker.cc): the pattern the clients
// write, and what the tests read of the daemon from outside (/dev/shm,
// /proc; its metrics: Metric in test_daemon.h).
#ifndef SHMBROKER_TESTS_INTEGRATION_RESTART_SUPPORT_H_
#define SHMBROKER_TESTS_INTEGRATION_RESTART_SUPPORT_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/common/proc_fds.h"  // CountFds

namespace shmbroker::testing {

class TestDaemon;

// Byte i of the buffer with handle `handle`.
inline uint8_t RestartPattern(uint64_t handle, size_t i) {
  return static_cast<uint8_t>((handle * 131 + i * 7 + 1) & 0xff);
}

// "" when every byte is the pattern's; else where it differs.
std::string RestartMismatch(const uint8_t* data, size_t size, uint64_t handle);

// The names in /dev/shm that start with `prefix`, sorted.
std::vector<std::string> ShmNames(const std::string& prefix);

// The number in the environment variable `name` (a seed, a trial count),
// or `fallback` when it is unset or not a number.
uint64_t EnvOr(const char* name, uint64_t fallback);

// What the fds of `pid` are ("7 -> memfd:... (deleted)", ...), for failure
// messages; CountFds (tests/common/proc_fds.h) counts them.
std::string DescribeFds(pid_t pid);

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_RESTART_SUPPORT_H_
