// Scavenger: the timer that returns idle pooled memory to the OS
// (Registry::Scavenge, after Go's background scavenger). It looks every
// quarter of --scavenge_delay (between 100 ms and 30 s), so freed memory is
// returned between 1 and 1.25 delays after it went idle, and repeats at
// once while a step was cut short by --scavenge_max_bytes. Thread: a
// TimerThread of its own, from Start() to Stop().
#ifndef SHMBROKER_SERVER_SCAVENGER_H_
#define SHMBROKER_SERVER_SCAVENGER_H_

#include "absl/time/time.h"
#include "core/registry.h"
#include "server/timer_thread.h"

namespace shmbroker {

class Scavenger {
 public:
  // `registry` is not owned and must outlive the scavenger.
  Scavenger(Registry* registry, absl::Duration scavenge_delay);
  Scavenger(const Scavenger&) = delete;
  Scavenger& operator=(const Scavenger&) = delete;

  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }

 private:
  // Returns idle memory; returns when to look again.
  absl::Time ScavengeIdle();

  Registry* const registry_;
  const absl::Duration period_;
  TimerThread thread_{[this] { return ScavengeIdle(); }};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_SCAVENGER_H_
