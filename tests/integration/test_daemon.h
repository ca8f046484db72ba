// TestDaemon: the real shmbrokerd on a socket in a fresh temporary directory,
// stopped with SIGTERM at the end (a test may also stop it and check how it
// exited). However it was stopped, the destructor fails the test if the
// daemon did not exit cleanly: a non-zero status, death by a signal, or a
// sanitizer report on its stderr. Also runs the real CLI against it.
#ifndef SHMBROKER_TESTS_INTEGRATION_TEST_DAEMON_H_
#define SHMBROKER_TESTS_INTEGRATION_TEST_DAEMON_H_

#include <signal.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shmbroker/client.h"
#include "tests/integration/subprocess.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {

class TestDaemon {
 public:
  // How to start it, beyond its flags.
  struct Launch {
    // A command that execs the daemon, e.g. {"/usr/bin/prlimit",
    // "--nofile=64:64", "--"}.
    std::vector<std::string> wrapper;
    // stderr (the log) to this file; the destructor still checks it for
    // sanitizer reports. Empty: a temporary file, removed with the daemon.
    // Never a pipe: nobody reads one while the test runs, and once its
    // 64 KiB filled, every daemon thread that logs would block in write(2).
    std::string log_path;
    // Added to its environment, e.g. "NOTIFY_SOCKET=PATH".
    std::vector<std::string> env;
    // Passed to it at fds 3, 4, ... (Subprocess).
    std::vector<int> pass_fds;
  };

  // `flags` go to shmbrokerd after --socket. With `dir`, reuses that
  // directory (and so that socket) instead of making a new one.
  explicit TestDaemon(const std::vector<std::string>& flags = {},
                      const std::string& dir = "", const Launch& launch = {});
  ~TestDaemon();

  // False when the daemon did not print its "listening on" line; then
  // startup_output() says why. Else it is what the daemon printed up to
  // that line (its metrics address among it).
  bool started() const { return started_; }
  const std::string& startup_output() const { return startup_output_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/run/broker.sock"; }
  pid_t pid() const { return pid_; }

  // SIGTERM and wait. The destructor checks how it ended.
  // SIGINT by default: a stop for good, every hold ends. SIGTERM stops for
  // a restart (the books and POSIX names stay for the next daemon).
  Finished Stop(int signal = SIGINT);
  // SIGKILL and wait: a crash, which the destructor does not hold against
  // it. A new TestDaemon on the same dir() restarts it on the same socket.
  Finished Kill();

  absl::StatusOr<std::unique_ptr<client::Client>> Connect() const;
  // The CLI with --socket set; `args` follow.
  std::vector<std::string> CliArgs(const std::vector<std::string>& args) const;
  Finished Cli(const std::vector<std::string>& args,
               const std::string& input = "") const;

 private:
  std::string dir_;
  std::string log_path_;
  bool owns_log_ = false;  // a temporary file of ours
  bool owns_dir_ = false;
  std::unique_ptr<Subprocess> process_;
  pid_t pid_ = -1;
  bool started_ = false;
  std::string startup_output_;
  std::optional<Finished> finished_;  // set by Stop()
};

// Exit status 0, no signal, and no AddressSanitizer, LeakSanitizer or
// UndefinedBehaviorSanitizer report on stderr. The failure message has the
// tail of stderr.
::testing::AssertionResult ExitedCleanly(const Finished& f);

// Tests that switch uids need root. Run as a user, they fail with this
// rather than pass without testing anything: ASSERT_TRUE(RunningAsRoot()).
::testing::AssertionResult RunningAsRoot();

// SIGSTOPs `pid` and waits until every thread of it has stopped (kill()
// returns before they have). SIGCONT resumes it.
::testing::AssertionResult StopProcess(pid_t pid);

// The counts of a status, for failure messages.
std::string StatusText(const client::DaemonStatus& s);

// Polls `client`'s Status() until `condition` holds (see WaitFor).
::testing::AssertionResult WaitForStatus(
    client::Client& client, const std::string& what,
    const std::function<bool(const client::DaemonStatus&)>& condition);

// A fixture with a started daemon (daemon_) and a connected client (client_).
// Override DaemonFlags() for other flags.
class DaemonTest : public ::testing::Test {
 protected:
  virtual std::vector<std::string> DaemonFlags() { return {}; }
  void SetUp() override {
    daemon_ = std::make_unique<TestDaemon>(DaemonFlags());
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    auto c = daemon_->Connect();
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    daemon_.reset();  // stops it and checks how it exited
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<client::Client> client_;
};

// The second uid tests run clients as: nobody (gid 65534 too, as
// CliArgsAs runs it), a stranger, or a second tenant when the daemon's
// --socket_group lets it in.
inline constexpr uint32_t kNobody = 65534;

// Running the CLI as another uid (needs root). The build tree may sit where
// that uid cannot reach (e.g. under /root), so ShareCliWithOtherUids copies
// the CLI and its library into the daemon's directory first; CliArgsAs is
// then the command line (setpriv to `uid`, gid the same, no supplementary
// groups) and CliEnvAs its environment.
void ShareCliWithOtherUids(const TestDaemon& daemon);
// `command` run as `uid` (gid the same, no supplementary groups) through
// setpriv; `command[0]` must be a path that uid can reach.
std::vector<std::string> AsUid(uint32_t uid,
                               const std::vector<std::string>& command);
std::vector<std::string> CliArgsAs(const TestDaemon& daemon, uint32_t uid,
                                   const std::vector<std::string>& args);
std::vector<std::string> CliEnvAs(const TestDaemon& daemon);
// The CLI as `uid` (after ShareCliWithOtherUids), run to its end.
Finished RunCliAs(const TestDaemon& daemon, uint32_t uid,
                  const std::vector<std::string>& args,
                  const std::string& input = "");

// A raw fd-channel connection to the daemon at `socket`, past the greeting;
// `token` gets the session token when given. The caller closes the fd.
int ConnectRawFdChannel(const std::string& socket, std::string* token);

// A new empty file in /tmp named after `tag` (e.g. for a daemon's log); the
// caller removes it.
std::string NewTempFile(const std::string& tag);
// The whole of a file ("" if it cannot be read).
std::string ReadWholeFile(const std::string& path);

// The value of `series` (a full name with labels) in the metrics of a
// daemon started with --metrics_address=127.0.0.1:0, or -1 when it is
// absent or the endpoint cannot be read.
double Metric(const TestDaemon& daemon, const std::string& series);

inline const char* DaemonPath() { return SHMBROKERD_PATH; }
inline const char* CliPath() { return SHMBROKER_CLI_PATH; }

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_TEST_DAEMON_H_
