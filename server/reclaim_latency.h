// ReclaimLatencies: how long reclaiming took recently, for Status (the
// metrics keep the full histograms). Two windows: from noticing that a client
// connection closed to its memory being free, and from a lease's deadline to
// its memory being free. Thread-safe.
#ifndef SHMBROKER_SERVER_RECLAIM_LATENCY_H_
#define SHMBROKER_SERVER_RECLAIM_LATENCY_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace shmbroker {

struct LatencySummary {
  uint64_t samples = 0;
  absl::Duration p50;
  absl::Duration p99;
  absl::Duration max;
};

// The most recent `capacity` samples, in a ring.
class LatencyWindow {
 public:
  explicit LatencyWindow(size_t capacity = 1024) : capacity_(capacity) {}
  void Add(absl::Duration sample);
  LatencySummary Summary() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::vector<absl::Duration> ring_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

struct ReclaimLatencies {
  LatencyWindow connection_close;
  LatencyWindow lease_expiry;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_RECLAIM_LATENCY_H_
