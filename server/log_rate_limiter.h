// LogRateLimiter: lets one log line of a kind through per interval and counts
// the rest, so that a flood of one event (a client sending bogus frames,
// accept failing for want of fds) costs a line every few seconds instead of
// megabytes. The line let through says how many similar ones were
// suppressed. spdlog has no rate limiter of its own. Thread-safe.
#ifndef SHMBROKER_SERVER_LOG_RATE_LIMITER_H_
#define SHMBROKER_SERVER_LOG_RATE_LIMITER_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shmbroker {

class LogRateLimiter {
 public:
  explicit LogRateLimiter(absl::Duration interval) : interval_(interval) {}

  // Whether to log this one. When true, *suppressed is how many were held
  // back since the last one let through.
  bool Allow(uint64_t* suppressed) ABSL_LOCKS_EXCLUDED(mu_) {
    return AllowAt(absl::Now(), suppressed);
  }
  // How many were held back since the last one let through; starts over.
  uint64_t TakeSuppressed() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return std::exchange(suppressed_, 0);
  }
  // As Allow, at `now` (tests).
  bool AllowAt(absl::Time now, uint64_t* suppressed) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (now < next_) {
      ++suppressed_;
      return false;
    }
    next_ = now + interval_;
    *suppressed = std::exchange(suppressed_, 0);
    return true;
  }

 private:
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// The daemon-wide limiters, one per kind of line that a client can cause
// (each client connection has its own besides: ClientConnection::warnings).
struct LogRateLimits {
  // Warnings about one client connection's requests or frames.
  static LogRateLimiter& ClientWarnings() {
    static LogRateLimiter limiter(absl::Seconds(1));
    return limiter;
  }
  // Connections refused before they are client connections.
  static LogRateLimiter& Refusals() {
    static LogRateLimiter limiter(absl::Seconds(1));
    return limiter;
  }
};

// Whether a warning about `per_connection`'s client may be logged now: it
// must pass both its own limiter and the daemon-wide one. *suppressed is
// what both held back.
inline bool AllowClientWarning(LogRateLimiter& per_connection,
                               uint64_t* suppressed) {
  uint64_t mine = 0;
  uint64_t all = 0;
  if (!per_connection.Allow(&mine)) return false;
  if (!LogRateLimits::ClientWarnings().Allow(&all)) return false;
  *suppressed = mine + all;
  return true;
}

// " (K similar suppressed)" for a log line, or nothing when K is 0.
inline std::string SuppressedNote(uint64_t suppressed) {
  return suppressed == 0
             ? std::string()
             : absl::StrCat(" (", suppressed, " similar suppressed)");
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_LOG_RATE_LIMITER_H_
