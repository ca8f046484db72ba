// Subprocess: a real child process (posix_spawn, safe in a threaded test) with
// its stdin, stdout and stderr on pipes. Tests use it to run the daemon and
// the CLI exactly as a user would.
#ifndef SHMBROKER_TESTS_INTEGRATION_SUBPROCESS_H_
#define SHMBROKER_TESTS_INTEGRATION_SUBPROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace shmbroker::testing {

struct Finished {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

class Subprocess {
 public:
  // Starts argv[0] (a path) with `env` added to the environment. `input` is
  // written to stdin, which is then closed. With `stderr_path`, stderr goes
  // to that file (created or truncated) instead of a pipe, and Finished.err
  // stays empty. The child gets `pass_fds` at fds 3, 4, ... (as a service
  // manager passes LISTEN_FDS); the caller keeps its own.
  Subprocess(const std::vector<std::string>& argv,
             const std::string& input = "",
             const std::vector<std::string>& env = {},
             const std::string& stderr_path = "",
             const std::vector<int>& pass_fds = {});
  ~Subprocess();  // SIGKILLs and reaps a child still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stdout until it holds a complete line containing `needle`; returns
  // everything read so far, or nullopt on EOF or timeout.
  std::optional<std::string> WaitForOutput(const std::string& needle,
                                           absl::Duration timeout);
  void Signal(int signal);
  // Waits for exit (SIGKILL after `timeout`) and collects the output.
  Finished Wait(absl::Duration timeout = absl::Seconds(30));

 private:
  void ReadAvailable(int fd, std::string* into, int timeout_ms);

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string out_buf_;
  std::string err_buf_;
};

// Runs to completion.
Finished RunToEnd(const std::vector<std::string>& argv,
                  const std::string& input = "",
                  const std::vector<std::string>& env = {});

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_SUBPROCESS_H_
