// The results of one shmbroker-bench run and their text and JSON forms.
#ifndef SHMBROKER_BENCH_REPORT_H_
#define SHMBROKER_BENCH_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/latency_stats.h"

namespace shmbroker::bench {

struct ModeReport {
  std::string name;
  LatencySummary latency;  // over all rounds and threads
  double ops_per_second = 0;
  // CPU time per successful operation, of this process (all threads) and of
  // the daemon (only when the bench spawned it).
  std::optional<double> bench_cpu_us_per_op;
  std::optional<double> daemon_cpu_us_per_op;
  std::vector<double> round_p50_us;  // one per round, all threads merged
};

// What the daemon held; compared before and after a run to find leaks.
struct DaemonCounts {
  uint64_t buffers = 0;
  uint64_t holds = 0;
  uint64_t allocated_bytes = 0;
};

struct RunReport {
  int threads = 0;
  uint64_t size_bytes = 0;
  std::string backing;
  absl::Duration duration;  // measured time per mode
  absl::Duration warmup;
  int rounds = 0;
  std::string socket_path;
  std::string spawned_daemon;     // the binary; empty for a running daemon
  std::vector<ModeReport> modes;  // in the order of --modes
  uint64_t errors = 0;
  std::string first_error;
  std::optional<DaemonCounts> before;
  std::optional<DaemonCounts> after;  // worker connections still open
};

// Ratios are to the "ping" mode of the same run (and, per round, to ping's
// p50 in that round); absent when ping was not measured.
std::string FormatText(const RunReport& report);
std::string FormatJson(const RunReport& report);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_REPORT_H_
