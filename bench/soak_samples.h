// What shmbroker-soak samples of the daemon, and the least-squares slope it
// reports for each series (bench/soak.cc, docs/performance.md "Soak").
#ifndef SHMBROKER_BENCH_SOAK_SAMPLES_H_
#define SHMBROKER_BENCH_SOAK_SAMPLES_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shmbroker::bench {

// One look at the daemon process.
struct SoakSample {
  double minutes = 0;          // since the run started
  double rss_kib = 0;          // VmRSS
  double fds = 0;              // entries of /proc/PID/fd
  double threads = 0;          // Threads
  double allocated_bytes = 0;  // Status: charged for live buffers
  double buffers = 0;
};

// Reads /proc/`pid`/status and /proc/`pid`/fd (the byte counts are left
// for the caller to fill from Status). NOT_FOUND when the process is gone.
absl::StatusOr<SoakSample> SampleProcess(pid_t pid);

// The slope of y over x by least squares; 0 with fewer than two points or
// when all x are equal.
double LeastSquaresSlope(const std::vector<double>& x,
                         const std::vector<double>& y);

// Per minute, of each series, over the samples from `from_minutes` on.
struct SoakSlopes {
  int samples = 0;
  double rss_kib = 0;
  double fds = 0;
  double threads = 0;
  double allocated_bytes = 0;
};
SoakSlopes SlopesFrom(const std::vector<SoakSample>& samples,
                      double from_minutes);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_SOAK_SAMPLES_H_
