// Clock: where core takes the time from, so tests can control it.
// Implementations must be thread-safe.
#ifndef SHMBROKER_CORE_CLOCK_H_
#define SHMBROKER_CORE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shmbroker {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The wall clock. The returned object lives forever.
inline const Clock* RealClock() {
  class Real final : public Clock {
   public:
    absl::Time Now() const override { return absl::Now(); }
  };
  static const Real kClock;
  return &kClock;
}

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_CLOCK_H_
