// CapacityBudget: the byte capacity the pooled allocator charges its arenas
// to, a whole arena at a time. Capacity (core/capacity.h) implements it, so
// that dedicated segments and arenas draw on one capacity.
//
// The allocator calls it without holding its own lock, on the thread that
// called Allocate, Scavenge or the allocator's destructor. Implementations
// must be thread-safe, must not call back into the allocator, and must not
// take a lock that the allocator's caller may hold around those calls.
#ifndef SHMBROKER_CORE_CAPACITY_BUDGET_H_
#define SHMBROKER_CORE_CAPACITY_BUDGET_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/ids.h"

namespace shmbroker {

class CapacityBudget {
 public:
  virtual ~CapacityBudget() = default;
  // Reserves `bytes` for `tenant`. If that would pass a limit, reserves
  // nothing and returns RESOURCE_EXHAUSTED with a message naming the limit.
  virtual absl::Status TryReserve(TenantId tenant, uint64_t bytes) = 0;
  // Gives back `bytes` that TryReserve reserved for `tenant`.
  virtual void Return(TenantId tenant, uint64_t bytes) = 0;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_CAPACITY_BUDGET_H_
