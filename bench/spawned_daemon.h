// SpawnedDaemon: a shmbrokerd that shmbroker-bench starts for one run, on a
// socket in a fresh temporary directory, so that a measurement is one
// command and never touches a daemon somebody else is using.
#ifndef SHMBROKER_BENCH_SPAWNED_DAEMON_H_
#define SHMBROKER_BENCH_SPAWNED_DAEMON_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shmbroker::bench {

class SpawnedDaemon {
 public:
  // Starts `binary --socket=<tmpdir>/broker.sock <extra_args...>` and waits
  // (up to `timeout`) for its "listening on" line on stdout.
  static absl::StatusOr<std::unique_ptr<SpawnedDaemon>> Start(
      const std::string& binary, const std::vector<std::string>& extra_args,
      absl::Duration timeout);
  // Stops the daemon if Stop() was not called (errors are only logged).
  ~SpawnedDaemon();
  SpawnedDaemon(const SpawnedDaemon&) = delete;
  SpawnedDaemon& operator=(const SpawnedDaemon&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  pid_t pid() const { return pid_; }

  // Sends SIGTERM and waits for the exit (SIGKILL after `timeout`); removes
  // the temporary directory. An error if the daemon did not exit cleanly.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(10));

 private:
  SpawnedDaemon() = default;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;  // kept open so the daemon never writes to a closed pipe
  std::string dir_;
  std::string socket_path_;
};

// The shmbrokerd that belongs with this binary: next to it (installed, both in
// bin/), else in ../server/ (the build tree). Empty if neither exists.
std::string FindDaemonNextToSelf();
// `name` next to this binary (installed), or in the build tree's
// `build_dir` beside bench/; empty if neither is executable.
std::string FindNextToSelf(const std::string& name,
                           const std::string& build_dir);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_SPAWNED_DAEMON_H_
