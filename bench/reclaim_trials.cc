#include "bench/reclaim_trials.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/spawned_daemon.h"
#include "common/unique_fd.h"

extern char** environ;

namespace shmbroker::bench {
namespace {

// A child with stdout on a pipe; stderr inherited.
struct Child {
  pid_t pid = -1;
  UniqueFd out;
};

absl::StatusOr<Child> Spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  Child child;
  const int rc = ::posix_spawn(&child.pid, argv[0], &actions, nullptr,
                               argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("spawn ", args[0], ": ", std::strerror(rc)));
  }
  child.out = std::move(read_end);
  return child;
}

// Waits for the child's first output (its buffer row): it holds the buffer.
absl::Status WaitForOutput(const Child& child) {
  char byte;
  ssize_t n;
  do {
    n = ::read(child.out.get(), &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return absl::InternalError("the holder exited before holding");
  return absl::OkStatus();
}

int Reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Polls Status until the daemon's allocated bytes are back at `baseline`.
absl::Status WaitForBaseline(client::Client& observer, uint64_t baseline) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    absl::StatusOr<client::DaemonStatus> s = observer.Status();
    if (!s.ok()) return s.status();
    if (s->allocated_bytes == baseline) return absl::OkStatus();
  }
  return absl::DeadlineExceededError("memory was not reclaimed within 30s");
}

}  // namespace

std::string FindCliNextToSelf() {
  return FindNextToSelf("shmbroker", "client");
}

absl::StatusOr<ReclaimReport> RunReclaimTrials(client::Client& observer,
                                               const std::string& cli,
                                               int trials, uint64_t size) {
  ReclaimReport report;
  report.trials = trials;
  report.size_bytes = size;
  const std::string socket = "--socket=" + observer.socket_path();
  const std::string bytes = absl::StrCat(size);
  absl::StatusOr<client::DaemonStatus> start = observer.Status();
  if (!start.ok()) return start.status();
  const uint64_t baseline = start->allocated_bytes;
  std::vector<int64_t> kill_to_free_ns;
  for (int i = 0; i < trials; ++i) {
    absl::StatusOr<Child> holder =
        Spawn({cli, socket, "alloc", bytes, "--hold=1h"});
    if (!holder.ok()) return holder.status();
    if (absl::Status s = WaitForOutput(*holder); !s.ok()) {
      Reap(holder->pid);
      return s;
    }
    const absl::Time killed = absl::Now();
    ::kill(holder->pid, SIGKILL);
    absl::Status freed = WaitForBaseline(observer, baseline);
    kill_to_free_ns.push_back(absl::ToInt64Nanoseconds(absl::Now() - killed));
    Reap(holder->pid);
    if (!freed.ok()) return freed;

    // A buffer left to a detached lease of the minimum TTL (the CLI exits).
    absl::StatusOr<Child> producer =
        Spawn({cli, socket, "alloc", bytes, "--detach", "--ttl=100ms"});
    if (!producer.ok()) return producer.status();
    const int status = Reap(producer->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError("the detached producer failed");
    }
    if (absl::Status s = WaitForBaseline(observer, baseline); !s.ok()) return s;
  }
  report.kill_to_free = Summarize(&kill_to_free_ns);
  absl::StatusOr<client::DaemonStatus> end = observer.Status();
  if (!end.ok()) return end.status();
  report.daemon_close = end->connection_close_reclaim;
  report.daemon_expiry = end->lease_expiry_reclaim;
  return report;
}

std::string FormatReclaimText(const ReclaimReport& r) {
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  return absl::StrFormat(
      "reclaim latency, %d trials of %d bytes:\n"
      "  SIGKILL -> memory free (measured here):  p50 %.3f ms  p99 %.3f ms  "
      "max %.3f ms\n"
      "  close noticed -> free (daemon, last %d): p50 %.3f ms  p99 %.3f ms  "
      "max %.3f ms\n"
      "  lease deadline -> free (daemon, last %d): p50 %.3f ms  p99 %.3f ms  "
      "max %.3f ms\n",
      r.trials, r.size_bytes, r.kill_to_free.p50_us / 1e3,
      r.kill_to_free.p99_us / 1e3, r.kill_to_free.max_us / 1e3,
      r.daemon_close.samples, ms(r.daemon_close.p50), ms(r.daemon_close.p99),
      ms(r.daemon_close.max), r.daemon_expiry.samples, ms(r.daemon_expiry.p50),
      ms(r.daemon_expiry.p99), ms(r.daemon_expiry.max));
}

}  // namespace shmbroker::bench
