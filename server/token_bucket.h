// TokenBucket: a rate limit with a burst, e.g. for messages from one client
// connection. Starts full; refills `rate` tokens a second up to `burst`.
// Thread-safe.
#ifndef SHMBROKER_SERVER_TOKEN_BUCKET_H_
#define SHMBROKER_SERVER_TOKEN_BUCKET_H_

#include <algorithm>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shmbroker {

class TokenBucket {
 public:
  TokenBucket(double rate, double burst)
      : rate_(rate), burst_(burst), tokens_(burst) {}

  // Takes one token; false (taking nothing) when none is left.
  bool TryTake(absl::Time now = absl::Now()) {
    absl::MutexLock lock(&mu_);
    if (refilled_ != absl::InfinitePast()) {
      tokens_ = std::min(
          burst_, tokens_ + absl::ToDoubleSeconds(now - refilled_) * rate_);
    }
    refilled_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  double rate() const { return rate_; }

 private:
  const double rate_;
  const double burst_;
  absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time refilled_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_TOKEN_BUCKET_H_
