// Reclaim-latency trials for shmbroker-bench (--reclaim_trials=N).
//
// Death: a real holder process (the shmbroker CLI holding a buffer) is
// SIGKILLed; the time from kill() to the daemon reporting the bytes free
// (polled through Status on another connection) is one sample. Expiry: a
// CLI leaves a buffer under a detached lease of the daemon's minimum TTL and
// exits; the daemon measures deadline -> free itself. Both daemon-side
// windows (Status) are reported too.
#ifndef SHMBROKER_BENCH_RECLAIM_TRIALS_H_
#define SHMBROKER_BENCH_RECLAIM_TRIALS_H_

#include <string>

#include "absl/status/statusor.h"
#include "bench/latency_stats.h"
#include "shmbroker/client.h"

namespace shmbroker::bench {

struct ReclaimReport {
  int trials = 0;
  uint64_t size_bytes = 0;
  LatencySummary kill_to_free;           // measured here, per trial
  client::LatencySummary daemon_close;   // noticed close -> free
  client::LatencySummary daemon_expiry;  // deadline -> free
};

// `cli` is the shmbroker binary; `observer` a connected client of the same
// daemon. Each holder allocates `size` bytes.
absl::StatusOr<ReclaimReport> RunReclaimTrials(client::Client& observer,
                                               const std::string& cli,
                                               int trials, uint64_t size);

// The shmbroker CLI next to this binary (installed) or in its build tree;
// empty if none.
std::string FindCliNextToSelf();

std::string FormatReclaimText(const ReclaimReport& report);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_RECLAIM_TRIALS_H_
