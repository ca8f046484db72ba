// Clock: where core takes the time from, so tests can control it
// (ManualClock).
// Implementations must be thread-safe.
#ifndef SHMBROKER_CORE_CLOCK_H_
#define SHMBROKER_CORE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
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

// A clock that moves only when told to: tests never sleep, and benches
// move time past a deadline at once.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_CLOCK_H_
