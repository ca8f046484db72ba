#include "bench/reclaim_trials.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/child_process.h"
#include "bench/spawned_daemon.h"

namespace shmbroker::bench {
namespace {

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
    if (absl::Status s = WaitForFirstOutput(*holder); !s.ok()) {
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
