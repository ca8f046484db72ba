#include "server/reclaim_latency.h"

#include <algorithm>

namespace shmbroker {

void LatencyWindow::Add(absl::Duration sample) {
  absl::MutexLock lock(&mu_);
  if (ring_.size() < capacity_) {
    ring_.push_back(sample);
  } else {
    ring_[next_] = sample;
    next_ = (next_ + 1) % capacity_;
  }
}

LatencySummary LatencyWindow::Summary() const {
  std::vector<absl::Duration> sorted;
  {
    absl::MutexLock lock(&mu_);
    sorted = ring_;
  }
  LatencySummary summary;
  summary.samples = sorted.size();
  if (sorted.empty()) return summary;
  std::sort(sorted.begin(), sorted.end());
  // Nearest rank: the smallest sample with at least p of them at or below.
  auto rank = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size()));
    if (static_cast<double>(i) < p * static_cast<double>(sorted.size())) ++i;
    return sorted[std::max<size_t>(i, 1) - 1];
  };
  summary.p50 = rank(0.50);
  summary.p99 = rank(0.99);
  summary.max = sorted.back();
  return summary;
}

}  // namespace shmbroker
