#include "core/capacity_budget.h"

#include <cassert>
#include <utility>

#include "absl/strings/str_format.h"

namespace shmbroker {

FixedCapacity::FixedCapacity(uint64_t capacity_bytes, std::string limit_name)
    : capacity_(capacity_bytes), limit_name_(std::move(limit_name)) {}

absl::Status FixedCapacity::TryReserve(TenantId tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (bytes > capacity_ - reserved_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "over capacity: %d bytes requested for uid %d, %d of %d bytes in use "
        "(%s)",
        bytes, tenant, reserved_, capacity_, limit_name_));
  }
  reserved_ += bytes;
  return absl::OkStatus();
}

void FixedCapacity::Return(TenantId tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  assert(bytes <= reserved_);
  reserved_ -= bytes;
}

uint64_t FixedCapacity::reserved() const {
  absl::MutexLock lock(&mu_);
  return reserved_;
}

}  // namespace shmbroker
