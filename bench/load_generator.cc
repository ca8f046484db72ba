// shmbroker-bench: a load generator for shmbrokerd's end-to-end path.
//
// Reports p50/p99 latency and throughput per mode, and each mode's latency as
// a ratio to Ping's measured in the same run (modes are interleaved, see
// load_runner.h): absolute numbers on shared VMs say little
// (docs/performance.md). Not a test: nothing runs it automatically.
//
//   shmbroker-bench --spawn_daemon --threads=2 --duration=10s --size=1MiB
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench/handoff_peer.h"
#include "bench/load_runner.h"
#include "bench/reclaim_neighbours.h"
#include "bench/reclaim_trials.h"
#include "bench/report.h"
#include "bench/spawned_daemon.h"
#include "common/byte_size.h"
#include "shmbroker/client.h"

ABSL_FLAG(std::string, socket, "",
          "socket of a running daemon (default as the client library: "
          "$SHMBROKER_SOCKET, else the per-user default); ignored with "
          "--spawn_daemon");
ABSL_FLAG(int, threads, 1, "client threads, each with its own connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "measured time per mode, split over --rounds (the whole run takes "
          "about duration x modes + warmup)");
ABSL_FLAG(int, rounds, 5,
          "the modes run in turn this many times (duration/rounds each), so "
          "that they are measured interleaved");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "unmeasured time before the rounds, split over the modes");
ABSL_FLAG(shmbroker::ByteSize, size, shmbroker::ByteSize{4096},
          "bytes per allocation, e.g. 4096, 4KiB, 1MiB");
ABSL_FLAG(std::string, backing, "memfd", "memfd or posix");
ABSL_FLAG(std::vector<std::string>, modes,
          std::vector<std::string>({"ping", "alloc_release",
                                    "alloc_release_rpc",
                                    "alloc_touch_release"}),
          "comma-separated list of: ping (no-op RPC), alloc_release (Allocate "
          "a dedicated buffer, then destroy the Buffer: one call, release by a "
          "one-way message), alloc_release_rpc (Allocate, then "
          "Buffer::Release(): two calls), alloc_touch_release (Allocate, write "
          "one byte per 4 KiB page, destroy), alloc_fill_release (Allocate, "
          "write every byte, destroy); pooled_alloc_release, "
          "pooled_alloc_touch_release, pooled_alloc_fill_release: the same "
          "with a pooled buffer; handoff (a producer allocates a named "
          "buffer of the kind the daemon picks, fills and seals it; a "
          "consumer process, already waiting for it, attaches, reads every "
          "page and acks; both release), pooled_handoff, dedicated_handoff: "
          "the same with a pooled or a dedicated buffer, uninit_handoff: "
          "handoff with the memory asked for uninitialized (not zeroed "
          "first)");
ABSL_FLAG(std::string, handoff_consumer, "",
          "internal: run as the consumer of a handoff mode for buffers "
          "PREFIX-0, PREFIX-1, ... (the bench starts it)");
ABSL_FLAG(bool, json, false, "print the results as JSON");
ABSL_FLAG(int, reclaim_trials, 0,
          "after the modes, this many reclaim-latency trials: SIGKILL a "
          "holder process and time until its memory is free, and leave a "
          "buffer to a detached lease of the minimum TTL (the spawned daemon "
          "runs with --lease_min_ttl=100ms)");
ABSL_FLAG(int, reclaim_neighbours, 0,
          "after the modes, this many trials of other clients' latency while "
          "a holder of --reclaim_neighbour_holds pooled buffers under one "
          "lease is reclaimed: once by the lease's expiry, once by the "
          "holder's SIGKILL, each after an idle phase (the spawned daemon "
          "runs with limits raised to fit)");
ABSL_FLAG(uint64_t, reclaim_neighbour_holds, 100000,
          "buffers the holder of --reclaim_neighbours holds");
ABSL_FLAG(absl::Duration, reclaim_slow_call, absl::ZeroDuration(),
          "with --reclaim_neighbours: list every call in a reclaim window "
          "that took longer than this, with where in the window it started "
          "(0: none)");
ABSL_FLAG(uint64_t, reclaim_holder, 0,
          "internal: run as the holder of --reclaim_neighbours, with this "
          "many buffers (the bench starts it)");
ABSL_FLAG(bool, reclaim_holder_detached, false,
          "internal: the --reclaim_holder's buffers under a detached lease, "
          "left to expire");
ABSL_FLAG(bool, spawn_daemon, false,
          "start a daemon (--daemon) on a temporary socket for this run, and "
          "stop it afterwards");
ABSL_FLAG(std::string, daemon, "",
          "shmbrokerd binary for --spawn_daemon (default: the one installed "
          "next to this binary, or build/server/shmbrokerd in a build tree)");

namespace shmbroker::bench {
namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "shmbroker-bench: %s\n", message.c_str());
  return 2;
}

int Main() {
  if (const std::string prefix = absl::GetFlag(FLAGS_handoff_consumer);
      !prefix.empty()) {
    return RunHandoffConsumer(absl::GetFlag(FLAGS_socket), prefix);
  }
  if (const uint64_t holds = absl::GetFlag(FLAGS_reclaim_holder); holds > 0) {
    return RunReclaimHolder(absl::GetFlag(FLAGS_socket), holds,
                            absl::GetFlag(FLAGS_reclaim_holder_detached));
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration warmup = absl::GetFlag(FLAGS_warmup);
  if (threads < 1 || threads > 1024) return Usage("--threads: 1 to 1024");
  if (rounds < 1) return Usage("--rounds must be at least 1");
  if (duration <= absl::ZeroDuration()) return Usage("--duration must be > 0");
  if (warmup < absl::ZeroDuration()) return Usage("--warmup must be >= 0");
  absl::StatusOr<std::vector<Mode>> modes =
      ParseModes(absl::GetFlag(FLAGS_modes));
  if (!modes.ok()) return Usage(std::string(modes.status().message()));
  absl::StatusOr<client::Backing> backing =
      client::ParseBacking(absl::GetFlag(FLAGS_backing));
  if (!backing.ok()) {
    return Usage(absl::StrCat("--backing: ", backing.status().message()));
  }
  client::AllocateOptions options;
  options.size = absl::GetFlag(FLAGS_size).bytes;
  options.backing = *backing;
  if (options.size == 0) return Usage("--size must be at least 1 byte");

  RunReport report;
  report.threads = threads;
  report.size_bytes = options.size;
  report.backing = client::BackingName(*backing);
  report.duration = duration;
  report.warmup = warmup;
  report.rounds = rounds;
  report.socket_path = absl::GetFlag(FLAGS_socket);

  std::unique_ptr<SpawnedDaemon> daemon;
  if (absl::GetFlag(FLAGS_spawn_daemon)) {
    std::string binary = absl::GetFlag(FLAGS_daemon);
    if (binary.empty()) binary = FindDaemonNextToSelf();
    if (binary.empty()) {
      return Usage(
          "--spawn_daemon: no shmbrokerd next to this binary; pass "
          "--daemon=PATH");
    }
    std::vector<std::string> daemon_args;
    if (absl::GetFlag(FLAGS_reclaim_neighbours) > 0) {
      daemon_args = DaemonFlagsForNeighbours(
          absl::GetFlag(FLAGS_reclaim_neighbour_holds));
    } else if (absl::GetFlag(FLAGS_reclaim_trials) > 0) {
      daemon_args.push_back("--lease_min_ttl=100ms");
    }
    absl::StatusOr<std::unique_ptr<SpawnedDaemon>> spawned =
        SpawnedDaemon::Start(binary, daemon_args, absl::Seconds(10));
    if (!spawned.ok()) {
      std::fprintf(stderr, "shmbroker-bench: %s\n",
                   spawned.status().ToString().c_str());
      return 1;
    }
    daemon = std::move(*spawned);
    report.spawned_daemon = binary;
    report.socket_path = daemon->socket_path();
  }

  std::vector<std::unique_ptr<client::Client>> clients;
  for (int t = 0; t < threads; ++t) {
    client::ClientOptions options;
    options.socket_path = report.socket_path;
    absl::StatusOr<std::unique_ptr<client::Client>> connected =
        client::Client::Connect(options);
    if (!connected.ok()) {
      std::fprintf(stderr, "shmbroker-bench: connect: %s\n",
                   connected.status().ToString().c_str());
      return 1;
    }
    clients.push_back(std::move(*connected));
  }
  report.socket_path = clients.front()->socket_path();
  if (absl::StatusOr<client::DaemonStatus> s = clients.front()->Status();
      s.ok()) {
    report.before = DaemonCounts{s->buffers, s->holds, s->allocated_bytes};
  }

  LoadRunner runner(std::move(clients), *modes, rounds, options,
                    daemon != nullptr ? daemon->pid() : 0);
  if (absl::Status s = runner.StartHandoffPeers("/proc/self/exe"); !s.ok()) {
    std::fprintf(stderr, "shmbroker-bench: %s\n", s.ToString().c_str());
    return 1;
  }
  runner.Run(warmup, duration);
  bool failed = false;
  if (absl::StatusOr<DaemonCounts> after = runner.Settle(); after.ok()) {
    report.after = *after;
    // Our own daemon serves nobody else: anything it still holds with every
    // Buffer gone leaked.
    if (daemon != nullptr && (after->buffers != 0 || after->holds != 0 ||
                              after->allocated_bytes != 0)) {
      std::fprintf(stderr,
                   "shmbroker-bench: the daemon still holds memory after the "
                   "run (leak)\n");
      failed = true;
    }
  } else {
    std::fprintf(stderr, "shmbroker-bench: status after the run: %s\n",
                 after.status().ToString().c_str());
    failed = true;
  }

  for (size_t m = 0; m < modes->size(); ++m) {
    ModeReport mode;
    mode.name = ModeName((*modes)[m]);
    std::vector<int64_t> all;
    for (int r = 0; r < rounds; ++r) {
      std::vector<int64_t> round;
      for (const ThreadResult& result : runner.results()) {
        round.insert(round.end(), result.samples[m][r].begin(),
                     result.samples[m][r].end());
      }
      all.insert(all.end(), round.begin(), round.end());
      mode.round_p50_us.push_back(Summarize(&round).p50_us);
    }
    mode.latency = Summarize(&all);
    const ModeTotals& totals = runner.totals()[m];
    if (mode.latency.count > 0) {
      mode.ops_per_second = mode.latency.count / totals.wall_seconds;
      mode.bench_cpu_us_per_op =
          totals.bench_cpu_seconds * 1e6 / mode.latency.count;
      if (daemon != nullptr) {
        mode.daemon_cpu_us_per_op =
            totals.daemon_cpu_seconds * 1e6 / mode.latency.count;
      }
    }
    report.modes.push_back(std::move(mode));
  }
  for (const ThreadResult& result : runner.results()) {
    if (report.errors == 0) report.first_error = result.first_error;
    report.errors += result.errors;
  }
  if (runner.aborted()) {
    std::fprintf(stderr,
                 "shmbroker-bench: stopped early after %d consecutive errors\n",
                 LoadRunner::kMaxConsecutiveErrors);
  }

  runner.Disconnect();
  std::string text =
      absl::GetFlag(FLAGS_json) ? FormatJson(report) : FormatText(report);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);

  if (const int trials = absl::GetFlag(FLAGS_reclaim_trials); trials > 0) {
    const std::string cli = FindCliNextToSelf();
    client::ClientOptions observer_options;
    observer_options.socket_path = report.socket_path;
    absl::StatusOr<std::unique_ptr<client::Client>> observer =
        client::Client::Connect(observer_options);
    absl::StatusOr<ReclaimReport> reclaim =
        cli.empty()
            ? absl::NotFoundError("no shmbroker CLI next to this binary")
        : !observer.ok()
            ? observer.status()
            : RunReclaimTrials(**observer, cli, trials, options.size);
    if (reclaim.ok()) {
      std::fputs(FormatReclaimText(*reclaim).c_str(), stdout);
    } else {
      std::fprintf(stderr, "shmbroker-bench: reclaim trials: %s\n",
                   reclaim.status().ToString().c_str());
      failed = true;
    }
  }

  if (const int trials = absl::GetFlag(FLAGS_reclaim_neighbours); trials > 0) {
    absl::StatusOr<NeighbourReport> neighbours =
        RunReclaimNeighbours("/proc/self/exe", report.socket_path, trials,
                             absl::GetFlag(FLAGS_reclaim_neighbour_holds),
                             absl::GetFlag(FLAGS_reclaim_slow_call));
    if (neighbours.ok()) {
      std::fputs(FormatNeighbourText(*neighbours).c_str(), stdout);
    } else {
      std::fprintf(stderr, "shmbroker-bench: reclaim neighbours: %s\n",
                   neighbours.status().ToString().c_str());
      failed = true;
    }
  }

  if (daemon != nullptr) {
    if (absl::Status s = daemon->Stop(); !s.ok()) {
      std::fprintf(stderr, "shmbroker-bench: %s\n",
                   std::string(s.message()).c_str());
      failed = true;
    }
  }
  return failed || report.errors > 0 ? 1 : 0;
}

}  // namespace
}  // namespace shmbroker::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "load runner for shmbrokerd: p50/p99 latency and throughput of Ping, "
      "Allocate+Release and Allocate+touch+Release, as ratios to Ping.\n"
      "Usage: shmbroker-bench [--spawn_daemon | --socket=PATH] [--threads=N] "
      "[--duration=10s] [--size=4KiB] [--backing=memfd|posix] [--modes=...]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "shmbroker-bench: unexpected argument \"%s\"\n",
                 rest[1]);
    return 2;
  }
  return shmbroker::bench::Main();
}
