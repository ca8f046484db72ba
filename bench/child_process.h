// A child process of shmbroker-bench (a CLI holder, a bench holder) with
// its stdout on a pipe, so that the bench can wait for its first line.
// Started with posix_spawn: the bench has threads. Not thread-safe.
#ifndef SHMBROKER_BENCH_CHILD_PROCESS_H_
#define SHMBROKER_BENCH_CHILD_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace shmbroker::bench {

struct Child {
  pid_t pid = -1;
  UniqueFd out;  // the read end of its stdout; stderr is inherited
};

// Starts `args` (args[0] a path).
absl::StatusOr<Child> Spawn(const std::vector<std::string>& args);

// Waits for the child's first byte of output: it says it is ready.
// INTERNAL if it exits first.
absl::Status WaitForFirstOutput(const Child& child);

// Waits for `pid` to end; its wait status.
int Reap(pid_t pid);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_CHILD_PROCESS_H_
