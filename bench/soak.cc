// shmbroker-soak: N client processes run a mixed workload against one daemon
// for a while (bench/soak_workload.h); every --kill_every one of them is
// SIGKILLed and replaced. The daemon's RSS, fd count, threads and allocated
// bytes are sampled, and the least-squares slope of each is reported per
// minute, over the samples after the warm-up (and, for RSS, over the second
// half). At the end every client is killed: the daemon must free every byte,
// and its fds and threads must come back to what they were before the first
// client. With --check, growth beyond the bounds fails the run (exit 1):
// tests/CMakeLists.txt runs a one-minute soak in the test suite.
//
//   shmbroker-soak --clients=16 --duration=3m
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/soak_samples.h"
#include "bench/soak_workload.h"
#include "bench/spawned_daemon.h"
#include "shmbroker/client.h"

ABSL_FLAG(std::string, daemon, "",
          "shmbrokerd to start (default: the one next to this binary or in "
          "its build tree); the soak always starts its own");
ABSL_FLAG(int, clients, 4, "client processes at once");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(1), "how long to run");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(10),
          "samples before this are left out of the slopes");
ABSL_FLAG(absl::Duration, sample_every, absl::Milliseconds(500),
          "time between samples of the daemon");
ABSL_FLAG(absl::Duration, kill_every, absl::Seconds(2),
          "time between SIGKILLs of a random client (0: never)");
ABSL_FLAG(int, rate, 200, "operations per second per client at most");
ABSL_FLAG(uint64_t, seed, 0, "seed of the clients' workloads (0: random)");
ABSL_FLAG(bool, check, false,
          "exit 1 unless: no client failed; every byte, buffer, hold, lease "
          "and client connection gone at the end; fds back to their count "
          "before the first client, threads at most --max_extra_threads "
          "above it; RSS slope over the second half at most "
          "--max_rss_kib_per_min");
ABSL_FLAG(int, max_extra_threads, 16,
          "--check's bound on threads left after the last client (gRPC "
          "grows its thread pool with load and keeps it; a thread leaked per "
          "client connection passes it within a minute of kills)");
ABSL_FLAG(bool, print_samples, false, "print every sample");
ABSL_FLAG(double, max_rss_kib_per_min, 2048,
          "--check's bound on the RSS slope over the second half");
// The client processes: this binary again.
ABSL_FLAG(std::string, worker_socket, "", "internal: run as a client");
ABSL_FLAG(uint64_t, worker_seed, 0, "internal");

namespace shmbroker::bench {
namespace {

pid_t SpawnWorker(const std::string& socket, uint64_t seed, int rate) {
  std::vector<std::string> args = {
      "/proc/self/exe", "--worker_socket=" + socket,
      absl::StrCat("--worker_seed=", seed), absl::StrCat("--rate=", rate)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(),
                    environ) != 0) {
    return -1;
  }
  return pid;
}

void PrintSlopes(const char* what, const SoakSlopes& s) {
  std::printf(
      "%-22s %3d samples  RSS %+9.1f KiB/min  fds %+7.2f/min  threads "
      "%+6.2f/min  allocated %+12.0f B/min\n",
      what, s.samples, s.rss_kib, s.fds, s.threads, s.allocated_bytes);
}

int Soak() {
  const int clients = absl::GetFlag(FLAGS_clients);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration kill_every = absl::GetFlag(FLAGS_kill_every);
  const int rate = absl::GetFlag(FLAGS_rate);
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = std::random_device{}();
  std::string binary = absl::GetFlag(FLAGS_daemon);
  if (binary.empty()) binary = FindDaemonNextToSelf();
  // Short lease bounds and a quick scavenger, so that what the clients
  // leave (detached leases, idle arenas) is gone soon after them.
  absl::StatusOr<std::unique_ptr<SpawnedDaemon>> daemon = SpawnedDaemon::Start(
      binary,
      {"--lease_min_ttl=100ms", "--scavenge_delay=1s", "--log_level=warning"},
      absl::Seconds(20));
  if (!daemon.ok()) {
    std::fprintf(stderr, "shmbroker-soak: %s\n",
                 daemon.status().ToString().c_str());
    return 1;
  }
  const pid_t daemon_pid = (*daemon)->pid();
  client::ClientOptions options;
  options.socket_path = (*daemon)->socket_path();
  options.open_client_connection = false;  // no lease of its own
  absl::StatusOr<std::unique_ptr<client::Client>> observer =
      client::Client::Connect(options);
  if (!observer.ok()) {
    std::fprintf(stderr, "shmbroker-soak: %s\n",
                 observer.status().ToString().c_str());
    return 1;
  }
  (void)(*observer)->Status();  // the observer's own gRPC connection
  absl::StatusOr<SoakSample> baseline = SampleProcess(daemon_pid);
  if (!baseline.ok()) return 1;
  std::printf(
      "shmbroker-soak: %d clients for %s, seed %lu; daemon pid %d before "
      "the first client: RSS %.0f KiB, %.0f fds, %.0f threads\n",
      clients, absl::FormatDuration(duration).c_str(), seed, daemon_pid,
      baseline->rss_kib, baseline->fds, baseline->threads);
  std::fflush(stdout);

  std::mt19937_64 random(seed);
  std::vector<pid_t> workers;
  for (int i = 0; i < clients; ++i) {
    workers.push_back(SpawnWorker(options.socket_path, random(), rate));
  }
  std::vector<SoakSample> samples;
  int kills = 0, failed = 0;
  const absl::Time start = absl::Now();
  absl::Time next_kill = start + kill_every;
  for (absl::Time now = start; now - start < duration; now = absl::Now()) {
    absl::SleepFor(absl::GetFlag(FLAGS_sample_every));
    absl::StatusOr<SoakSample> s = SampleProcess(daemon_pid);
    absl::StatusOr<client::DaemonStatus> status = (*observer)->Status();
    if (!s.ok() || !status.ok()) {
      std::fprintf(stderr, "shmbroker-soak: the daemon is gone\n");
      return 1;
    }
    s->minutes = absl::ToDoubleMinutes(absl::Now() - start);
    s->allocated_bytes = static_cast<double>(status->allocated_bytes);
    s->buffers = static_cast<double>(status->buffers);
    samples.push_back(*s);
    // A client that exited by itself failed (its stderr says why).
    for (pid_t& w : workers) {
      int st = 0;
      if (::waitpid(w, &st, WNOHANG) == w) {
        ++failed;
        w = SpawnWorker(options.socket_path, random(), rate);
      }
    }
    if (kill_every > absl::ZeroDuration() && absl::Now() >= next_kill) {
      pid_t& victim = workers[random() % workers.size()];
      ::kill(victim, SIGKILL);
      ::waitpid(victim, nullptr, 0);
      ++kills;
      victim = SpawnWorker(options.socket_path, random(), rate);
      next_kill += kill_every;
    }
  }
  for (pid_t w : workers) ::kill(w, SIGKILL);
  for (pid_t w : workers) ::waitpid(w, nullptr, 0);

  // Everything freed, and the fds (and threads, within their bound) back,
  // within a deadline.
  const double max_threads =
      baseline->threads + absl::GetFlag(FLAGS_max_extra_threads);
  absl::StatusOr<client::DaemonStatus> end;
  absl::StatusOr<SoakSample> last;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool settled = false;
  while (!settled && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    end = (*observer)->Status();
    last = SampleProcess(daemon_pid);
    settled = end.ok() && last.ok() && end->buffers == 0 &&
              end->allocated_bytes == 0 && end->holds == 0 &&
              end->leases == 0 && end->clients == 0 &&
              last->fds == baseline->fds && last->threads <= max_threads;
  }
  const double minutes = absl::ToDoubleMinutes(duration);
  const double warmup = absl::ToDoubleMinutes(absl::GetFlag(FLAGS_warmup));
  const SoakSlopes after_warmup = SlopesFrom(samples, warmup);
  const SoakSlopes second_half = SlopesFrom(samples, minutes / 2);
  std::printf(
      "%d client kills, %d clients failed by themselves, %d clients "
      "in all\n",
      kills, failed, clients + kills + failed);
  if (absl::GetFlag(FLAGS_print_samples)) {
    for (const SoakSample& s : samples) {
      std::printf(
          "sample %6.3f min: RSS %.0f KiB, %.0f fds, %.0f threads, "
          "%.0f bytes in %.0f buffers\n",
          s.minutes, s.rss_kib, s.fds, s.threads, s.allocated_bytes, s.buffers);
    }
  }
  PrintSlopes("after the warm-up", after_warmup);
  PrintSlopes("second half", second_half);
  if (!samples.empty()) {
    const SoakSample& peak = samples.back();
    std::printf(
        "last sample: RSS %.0f KiB, %.0f fds, %.0f threads, %.0f "
        "bytes in %.0f buffers\n",
        peak.rss_kib, peak.fds, peak.threads, peak.allocated_bytes,
        peak.buffers);
  }
  if (end.ok() && last.ok()) {
    std::printf(
        "after the last client: %lu buffers, %lu bytes, %lu holds, %lu "
        "leases, %lu clients; RSS %.0f KiB, %.0f fds (before: %.0f), %.0f "
        "threads (before: %.0f)\n",
        end->buffers, end->allocated_bytes, end->holds, end->leases,
        end->clients, last->rss_kib, last->fds, baseline->fds, last->threads,
        baseline->threads);
  }
  absl::Status stopped = (*daemon)->Stop();
  if (!stopped.ok()) {
    std::printf("the daemon did not stop cleanly: %s\n",
                stopped.ToString().c_str());
  }
  if (!absl::GetFlag(FLAGS_check)) return 0;
  const double bound = absl::GetFlag(FLAGS_max_rss_kib_per_min);
  bool ok = true;
  auto fail = [&](const std::string& why) {
    std::printf("FAIL: %s\n", why.c_str());
    ok = false;
  };
  if (failed > 0) fail(absl::StrCat(failed, " clients failed"));
  if (!settled) {
    fail(
        "the daemon did not come back: bytes, buffers, holds, leases and "
        "clients 0, fds as before, threads within the bound");
  }
  if (second_half.rss_kib > bound) {
    fail(absl::StrCat("RSS grew ", second_half.rss_kib,
                      " KiB/min over the second half (bound ", bound, ")"));
  }
  if (!stopped.ok()) fail("the daemon did not stop cleanly");
  if (ok) std::printf("PASS\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace shmbroker::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string socket = absl::GetFlag(FLAGS_worker_socket);
  if (!socket.empty()) {
    return shmbroker::bench::RunSoakWorker(
        socket, absl::GetFlag(FLAGS_worker_seed), absl::GetFlag(FLAGS_rate));
  }
  return shmbroker::bench::Soak();
}
