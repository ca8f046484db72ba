#include "core/capacity.h"

#include <cassert>

#include "absl/strings/str_format.h"
#include "core/limit.h"

namespace shmbroker {

absl::Status Capacity::TryReserve(TenantId tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (bytes > capacity_ - usage_.committed()) {
    return LimitReached(
        Limit::kCapacity,
        absl::StrFormat("over capacity: a %d-byte arena for uid %d does not "
                        "fit, %d of %d bytes in use",
                        bytes, tenant, usage_.committed(), capacity_));
  }
  usage_.arena_bytes += bytes;
  return absl::OkStatus();
}

void Capacity::Return(TenantId, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  assert(bytes <= usage_.arena_bytes);
  usage_.arena_bytes -= bytes;
}

absl::Status Capacity::ChargeDedicated(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (bytes > capacity_ - usage_.committed()) {
    return LimitReached(
        Limit::kCapacity,
        absl::StrFormat("over capacity: %d bytes requested, %d of %d bytes in "
                        "use (%d of them in pooled arenas)",
                        bytes, usage_.committed(), capacity_,
                        usage_.arena_bytes));
  }
  usage_.dedicated_bytes += bytes;
  return absl::OkStatus();
}

void Capacity::CreditDedicated(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  assert(bytes <= usage_.dedicated_bytes);
  usage_.dedicated_bytes -= bytes;
}

Capacity::Usage Capacity::usage() const {
  absl::MutexLock lock(&mu_);
  return usage_;
}

}  // namespace shmbroker
