// Latency samples and their summary for shmbroker-bench.
//
// Every operation's latency is kept (not bucketed) so that percentiles are
// exact: at the rates this tool reaches (tens of thousands of ops/s) a run
// holds a few million samples at most, i.e. tens of MiB.
#ifndef SHMBROKER_BENCH_LATENCY_STATS_H_
#define SHMBROKER_BENCH_LATENCY_STATS_H_

#include <cstdint>
#include <vector>

namespace shmbroker::bench {

struct LatencySummary {
  uint64_t count = 0;
  double mean_us = 0;
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
};

// Summarizes latencies given in nanoseconds; sorts `samples_ns` in place
// (it is the merged copy, so nobody needs the original order). Percentiles
// use the nearest-rank method, so p50 and p99 are latencies some operation
// actually had. An empty input gives a zero summary.
LatencySummary Summarize(std::vector<int64_t>* samples_ns);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_LATENCY_STATS_H_
