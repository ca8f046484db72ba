// Other clients' latency while a big holder is reclaimed, for
// shmbroker-bench (--reclaim_neighbours=N; docs/performance.md, "Reclaim
// in steps").
//
// A holder process (this binary, --reclaim_holder=COUNT) allocates COUNT
// pooled buffers of 64 bytes under one lease:
//   expiry  a detached lease of 1 s; the holder then
//           exits without releasing anything, and the lease runs out with
//           COUNT holds;
//   death   its connection's default lease; the bench SIGKILLs it.
// A probe (another connection of the bench) meanwhile calls Ping, Status
// and pooled Allocate+Release in turn, as fast as it can. The phase's
// samples are the calls that overlapped the reclaim: from the last Status
// reply that saw all COUNT buffers to the first that saw them gone. Before
// each such phase an idle phase of the same probe runs for 1 s, with no
// holder: idle, expiry, idle, death, ... so that noise on these shared
// machines falls on both. Each phase's p50 and p99 are reported as ratios
// to the idle phases' Ping p50 and p99.
#ifndef SHMBROKER_BENCH_RECLAIM_NEIGHBOURS_H_
#define SHMBROKER_BENCH_RECLAIM_NEIGHBOURS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/latency_stats.h"

namespace shmbroker::bench {

// The probe's calls, in the order it makes them.
inline constexpr const char* kNeighbourCalls[] = {"ping", "status",
                                                  "pooled_alloc_release"};
inline constexpr int kNeighbourCallCount = 3;

struct NeighbourPhase {
  std::string name;  // "idle", "expiry", "death"
  LatencySummary calls[kNeighbourCallCount];
  std::vector<double> window_ms;  // reclaim phases: each trial's window
  // Reclaim phases: the calls slower than RunReclaimNeighbours's `slow`,
  // each with where it fell in its trial's window.
  std::vector<std::string> slow_calls;
};

struct NeighbourReport {
  int trials = 0;
  uint64_t holds = 0;
  NeighbourPhase idle, expiry, death;
};

// Runs `trials` rounds of (idle, expiry, idle, death) against the daemon at
// `socket`, which must allow `holds` buffers to one uid and one lease, and
// calls and frames at the rate the holder allocates them (the spawned
// daemon gets the flags: DaemonFlagsForNeighbours). `self` is this binary.
// Calls in a reclaim window that take longer than `slow` (when it is above
// zero) are listed in their phase's slow_calls.
absl::StatusOr<NeighbourReport> RunReclaimNeighbours(
    const std::string& self, const std::string& socket, int trials,
    uint64_t holds, absl::Duration slow = absl::ZeroDuration());

// What a spawned daemon needs for RunReclaimNeighbours.
std::vector<std::string> DaemonFlagsForNeighbours(uint64_t holds);

// The holder process's main (--reclaim_holder=COUNT): allocates, prints
// "holding", then exits at once (detached) or waits to be killed.
int RunReclaimHolder(const std::string& socket, uint64_t count, bool detached);

std::string FormatNeighbourText(const NeighbourReport& report);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_RECLAIM_NEIGHBOURS_H_
