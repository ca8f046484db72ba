// LeaseSweeper: the one timer that expires leases (and ends waiting Attach
// calls at their deadline). It sleeps until the
// earliest lease deadline (and never longer than half the shortest TTL, so a
// lease granted meanwhile is never late), then expires what is due in
// batches of --lease_sweep_batch, letting calls in between. Connections whose
// default lease ended are hung up on. Records deadline -> memory-free
// latency. Thread: a TimerThread of its own, from Start() to Stop().
#ifndef SHMBROKER_SERVER_LEASE_SWEEPER_H_
#define SHMBROKER_SERVER_LEASE_SWEEPER_H_

#include "absl/time/time.h"
#include "core/registry.h"
#include "server/fd_channel.h"
#include "server/metrics.h"
#include "server/reclaim_latency.h"
#include "server/timer_thread.h"

namespace shmbroker {

class LeaseSweeper {
 public:
  // Nothing is owned; all must outlive the sweeper.
  LeaseSweeper(Registry* registry, FdChannel* fd_channel, Metrics* metrics,
               ReclaimLatencies* latencies, size_t batch);
  LeaseSweeper(const LeaseSweeper&) = delete;
  LeaseSweeper& operator=(const LeaseSweeper&) = delete;

  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  // A wait with this deadline was added: look again now if the sweeper
  // would otherwise sleep past it.
  void WakeBy(absl::Time deadline) { thread_.WakeBy(deadline); }

 private:
  // Expires what is due; returns when to look again.
  absl::Time SweepDue();

  Registry* const registry_;
  FdChannel* const fd_channel_;
  Metrics* const metrics_;
  ReclaimLatencies* const latencies_;
  const size_t batch_;
  const absl::Duration max_sleep_;
  TimerThread thread_{[this] { return SweepDue(); }};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_LEASE_SWEEPER_H_
