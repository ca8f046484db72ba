#include "server/lease_sweeper.h"

#include <algorithm>

#include "server/logging.h"
#include "server/memory_trim.h"

namespace shmbroker {

LeaseSweeper::LeaseSweeper(Registry* registry, FdChannel* fd_channel,
                           Metrics* metrics, ReclaimLatencies* latencies,
                           size_t batch)
    : registry_(registry),
      fd_channel_(fd_channel),
      metrics_(metrics),
      latencies_(latencies),
      batch_(batch),
      max_sleep_(
          std::min(registry->options().leases.min_ttl / 2, absl::Seconds(1))) {}

absl::Time LeaseSweeper::SweepDue() {
  CloseResult step;
  uint64_t records = 0;
  do {
    step = registry_->ExpireLeases(batch_);
    records += step.holds_dropped + step.buffers_reclaimed;
    // The memory of what expired was closed inside ExpireLeases, unlocked.
    const absl::Time freed = absl::Now();
    for (absl::Time deadline : step.expired_deadlines) {
      const absl::Duration latency = freed - deadline;
      latencies_->lease_expiry.Add(latency);
      metrics_->LeaseExpiryReclaimed(latency);
    }
    for (ConnectionId client : step.connections_closed) {
      fd_channel_->Hangup(client,
                          "its default lease expired: the client stopped "
                          "renewing it (hung, stopped, or too slow)");
    }
    if (step.leases_ended > 0) {
      spdlog::info(
          "expired {} leases: dropped {} holds, reclaimed {} buffers ({} "
          "bytes)",
          step.expired_deadlines.size(), step.holds_dropped,
          step.buffers_reclaimed, step.bytes_reclaimed);
    }
  } while (step.more_due);
  TrimAfterReclaim(records);
  // New leases are due at least min_ttl from now, and we look again within
  // max_sleep_ < min_ttl, so no deadline is missed.
  registry_->ExpireWaiters();
  absl::Time next = absl::Now() + max_sleep_;
  for (std::optional<absl::Time> due :
       {registry_->NextLeaseDeadline(), registry_->NextWaiterDeadline()}) {
    if (due) next = std::min(next, *due);
  }
  return next;
}

}  // namespace shmbroker
