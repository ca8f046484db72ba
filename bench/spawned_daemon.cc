#include "bench/spawned_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shmbroker::bench {
namespace {

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by ", strsignal(WTERMSIG(status)));
  }
  return absl::StrCat("wait status ", status);
}

// Polls for the child's exit until `deadline`; true (and *status) if it
// exited.
bool WaitUntil(pid_t pid, absl::Time deadline, int* status) {
  for (;;) {
    pid_t got = ::waitpid(pid, status, WNOHANG);
    if (got == pid) return true;
    if (got < 0 && errno != EINTR) return true;  // not our child any more
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace

std::string FindNextToSelf(const std::string& name,
                           const std::string& build_dir) {
  std::error_code ec;
  std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const std::filesystem::path dir = self.parent_path();
  for (const std::filesystem::path& candidate :
       {dir / name, dir.parent_path() / build_dir / name}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

std::string FindDaemonNextToSelf() {
  return FindNextToSelf("shmbrokerd", "server");
}

absl::StatusOr<std::unique_ptr<SpawnedDaemon>> SpawnedDaemon::Start(
    const std::string& binary, const std::vector<std::string>& extra_args,
    absl::Duration timeout) {
  if (::access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrFormat(
        "--daemon=%s: not an executable (%s)", binary, std::strerror(errno)));
  }
  std::unique_ptr<SpawnedDaemon> daemon(new SpawnedDaemon());
  // The daemon keeps its books in a state directory beside the socket. A
  // deployed daemon keeps them under /run, a tmpfs; /dev/shm is one too,
  // where /tmp may be a disk whose journaled writes no deployment pays.
  const char* tmp = std::getenv("TMPDIR");
  const char* base = tmp != nullptr && *tmp != '\0'    ? tmp
                     : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                       : "/tmp";
  std::string dir_template = absl::StrCat(base, "/shmbroker-bench.XXXXXX");
  if (::mkdtemp(dir_template.data()) == nullptr) {
    return ErrnoError(absl::StrCat("mkdtemp ", dir_template));
  }
  daemon->dir_ = dir_template;
  daemon->socket_path_ = absl::StrCat(daemon->dir_, "/broker.sock");

  // Everything the child needs is built before fork(): after fork in a
  // process that may have threads, only async-signal-safe calls are allowed.
  std::vector<std::string> args = {
      binary, absl::StrCat("--socket=", daemon->socket_path_),
      "--metrics_address=127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return ErrnoError("fork");
  }
  if (pid == 0) {
    // If the bench dies (crash, Ctrl-C), the daemon must not outlive it.
    ::prctl(PR_SET_PDEATHSIG, SIGINT);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(pipe_fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy
    ::execv(binary.c_str(), argv.data());
    const char kMessage[] = "shmbroker-bench: exec of the daemon failed\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  daemon->pid_ = pid;
  daemon->stdout_fd_ = pipe_fds[0];

  // Wait for "shmbrokerd: listening on PATH": only then do both sockets
  // accept connections.
  const absl::Time deadline = absl::Now() + timeout;
  std::string output;
  for (;;) {
    if (absl::StrContains(output, "listening on")) return daemon;
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{daemon->stdout_fd_, POLLIN, 0};
    int ready = wait_ms > 0 ? ::poll(&p, 1, static_cast<int>(wait_ms)) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      daemon->Stop().IgnoreError();
      return absl::DeadlineExceededError(
          absl::StrFormat("%s did not print \"listening on\" within %s", binary,
                          absl::FormatDuration(timeout)));
    }
    char buf[512];
    ssize_t n = ::read(daemon->stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int status = 0;
      WaitUntil(pid, absl::Now() + absl::Seconds(2), &status);
      daemon->pid_ = -1;
      daemon->Stop().IgnoreError();  // removes the directory
      return absl::UnavailableError(absl::StrFormat(
          "%s exited before listening (%s); see its messages above", binary,
          DescribeExit(status)));
    }
    output.append(buf, static_cast<size_t>(n));
  }
}

SpawnedDaemon::~SpawnedDaemon() {
  if (absl::Status s = Stop(); !s.ok()) {
    std::fprintf(stderr, "shmbroker-bench: %s\n",
                 std::string(s.message()).c_str());
  }
}

absl::Status SpawnedDaemon::Stop(absl::Duration timeout) {
  absl::Status result;
  if (pid_ > 0) {
    int status = 0;
    ::kill(pid_, SIGINT);
    if (!WaitUntil(pid_, absl::Now() + timeout, &status)) {
      ::kill(pid_, SIGKILL);
      WaitUntil(pid_, absl::InfiniteFuture(), &status);
      result = absl::DeadlineExceededError(absl::StrFormat(
          "the daemon (pid %d) did not stop within %s of SIGINT; killed it",
          pid_, absl::FormatDuration(timeout)));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      result = absl::InternalError(absl::StrFormat(
          "the daemon (pid %d) stopped with %s", pid_, DescribeExit(status)));
    }
    pid_ = -1;
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  stdout_fd_ = -1;
  if (!dir_.empty()) {
    // The daemon removes its sockets on SIGINT; a killed one leaves them
    // (and its lock file) behind, so remove the whole private directory.
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
  return result;
}

}  // namespace shmbroker::bench
