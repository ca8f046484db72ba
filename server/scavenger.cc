#include "server/scavenger.h"

#include <algorithm>

#include "server/logging.h"

namespace shmbroker {

Scavenger::Scavenger(Registry* registry, absl::Duration scavenge_delay)
    : registry_(registry),
      period_(std::clamp(scavenge_delay / 4, absl::Milliseconds(100),
                         absl::Seconds(30))) {}

absl::Time Scavenger::ScavengeIdle() {
  ScavengeResult total;
  ScavengeResult step;
  do {
    // Each step punches without the allocator's lock, and allocations go
    // on between steps.
    step = registry_->Scavenge();
    total.scavenged_bytes += step.scavenged_bytes;
    total.spans_released += step.spans_released;
    total.arenas_released += step.arenas_released;
  } while (step.more);
  if (total.scavenged_bytes > 0 || total.arenas_released > 0) {
    spdlog::info(
        "scavenger: returned {} idle bytes to the OS, released {} spans "
        "and {} arenas",
        total.scavenged_bytes, total.spans_released, total.arenas_released);
  }
  return absl::Now() + period_;
}

}  // namespace shmbroker
