#include "tests/integration/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "absl/time/clock.h"

extern char** environ;

namespace shmbroker::testing {

Subprocess::Subprocess(const std::vector<std::string>& argv,
                       const std::string& input,
                       const std::vector<std::string>& env,
                       const std::string& stderr_path,
                       const std::vector<int>& pass_fds) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
      ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (stderr_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                     stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  // Passed fds go to 3, 4, ... from copies above that range, so that no
  // dup2 overwrites a source a later one needs (dup2 clears FD_CLOEXEC).
  std::vector<int> copies;
  for (size_t i = 0; i < pass_fds.size(); ++i) {
    copies.push_back(::fcntl(pass_fds[i], F_DUPFD_CLOEXEC,
                             static_cast<int>(3 + pass_fds.size())));
    posix_spawn_file_actions_adddup2(&actions, copies.back(),
                                     static_cast<int>(3 + i));
  }
  // Children start with no signals blocked, whatever the test runner did.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  int rc =
      ::posix_spawn(&pid_, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  for (int copy : copies) ::close(copy);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(in[1]);
    throw std::runtime_error(std::string("posix_spawn ") + argv[0] + ": " +
                             std::strerror(rc));
  }
  // Inputs in tests are small: they fit the pipe buffer.
  size_t off = 0;
  while (off < input.size()) {
    ssize_t n = ::write(in[1], input.data() + off, input.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(in[1]);
  out_ = out[0];
  err_ = err[0];
  if (!stderr_path.empty()) {
    ::close(err_);
    err_ = -1;
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_ >= 0) ::close(out_);
  if (err_ >= 0) ::close(err_);
}

void Subprocess::ReadAvailable(int fd, std::string* into, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n > 0) into->append(buf, static_cast<size_t>(n));
}

std::optional<std::string> Subprocess::WaitForOutput(const std::string& needle,
                                                     absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t at = out_buf_.find(needle);
    if (at != std::string::npos &&
        out_buf_.find('\n', at) != std::string::npos) {
      return out_buf_;
    }
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return std::nullopt;
    pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (::poll(p, 2, static_cast<int>(left)) <= 0) continue;
    // Drain stderr too, so a chatty child never blocks on a full pipe.
    if (p[1].revents) ReadAvailable(err_, &err_buf_, 0);
    if (p[0].revents & POLLIN) {
      ReadAvailable(out_, &out_buf_, 0);
    } else if (p[0].revents & (POLLHUP | POLLERR)) {
      return std::nullopt;  // EOF before the line appeared
    }
  }
}

void Subprocess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

Finished Subprocess::Wait(absl::Duration timeout) {
  Finished f;
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = err_ >= 0;
  while (out_open || err_open) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      ::kill(pid_, SIGKILL);
      break;
    }
    pollfd p[2] = {{out_open ? out_ : -1, POLLIN, 0},
                   {err_open ? err_ : -1, POLLIN, 0}};
    if (::poll(p, 2, static_cast<int>(left)) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) continue;
      char buf[65536];
      ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else {
        (i == 0 ? out_buf_ : err_buf_).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (WIFEXITED(status)) f.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) f.signal = WTERMSIG(status);
  f.out = std::move(out_buf_);
  f.err = std::move(err_buf_);
  return f;
}

Finished RunToEnd(const std::vector<std::string>& argv,
                  const std::string& input,
                  const std::vector<std::string>& env) {
  Subprocess p(argv, input, env);
  return p.Wait();
}

}  // namespace shmbroker::testing
