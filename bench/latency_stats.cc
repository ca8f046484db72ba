#include "bench/latency_stats.h"

#include <algorithm>
#include <cmath>

namespace shmbroker::bench {
namespace {

// Nearest rank: the smallest sample with at least q of all samples at or
// below it.
int64_t Percentile(const std::vector<int64_t>& sorted, double q) {
  size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

}  // namespace

LatencySummary Summarize(std::vector<int64_t>* samples) {
  std::vector<int64_t>& samples_ns = *samples;
  LatencySummary summary;
  if (samples_ns.empty()) return summary;
  std::sort(samples_ns.begin(), samples_ns.end());
  double total_ns = 0;
  for (int64_t ns : samples_ns) total_ns += static_cast<double>(ns);
  summary.count = samples_ns.size();
  summary.mean_us = total_ns / samples_ns.size() / 1e3;
  summary.p50_us = Percentile(samples_ns, 0.50) / 1e3;
  summary.p99_us = Percentile(samples_ns, 0.99) / 1e3;
  summary.max_us = samples_ns.back() / 1e3;
  return summary;
}

}  // namespace shmbroker::bench
