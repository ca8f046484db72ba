#include "bench/soak_samples.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shmbroker::bench {

absl::StatusOr<SoakSample> SampleProcess(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid);
  FILE* f = std::fopen((dir + "/status").c_str(), "r");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("no process ", pid));
  }
  SoakSample sample;
  char line[256];
  unsigned long value = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %lu kB", &value) == 1) {
      sample.rss_kib = static_cast<double>(value);
    } else if (std::sscanf(line, "Threads: %lu", &value) == 1) {
      sample.threads = static_cast<double>(value);
    }
  }
  std::fclose(f);
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++sample.fds;
  }
  if (ec) return absl::NotFoundError(absl::StrCat("no fds of ", pid));
  return sample;
}

double LeastSquaresSlope(const std::vector<double>& x,
                         const std::vector<double>& y) {
  const size_t n = std::min(x.size(), y.size());
  if (n < 2) return 0;
  double mean_x = 0, mean_y = 0;
  for (size_t i = 0; i < n; ++i) {
    mean_x += x[i];
    mean_y += y[i];
  }
  mean_x /= n;
  mean_y /= n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mean_x) * (y[i] - mean_y);
    sxx += (x[i] - mean_x) * (x[i] - mean_x);
  }
  return sxx == 0 ? 0 : sxy / sxx;
}

SoakSlopes SlopesFrom(const std::vector<SoakSample>& samples,
                      double from_minutes) {
  std::vector<double> t, rss, fds, threads, bytes;
  for (const SoakSample& s : samples) {
    if (s.minutes < from_minutes) continue;
    t.push_back(s.minutes);
    rss.push_back(s.rss_kib);
    fds.push_back(s.fds);
    threads.push_back(s.threads);
    bytes.push_back(s.allocated_bytes);
  }
  SoakSlopes slopes;
  slopes.samples = static_cast<int>(t.size());
  slopes.rss_kib = LeastSquaresSlope(t, rss);
  slopes.fds = LeastSquaresSlope(t, fds);
  slopes.threads = LeastSquaresSlope(t, threads);
  slopes.allocated_bytes = LeastSquaresSlope(t, bytes);
  return slopes;
}

}  // namespace shmbroker::bench
