// CapacityBudget: the byte capacity the pooled allocator charges its arenas
// to, a whole arena at a time. The Registry implements it so that dedicated
// segments and arenas draw on one capacity (and on per-tenant limits);
// FixedCapacity is a plain counter for tests, benchmarks and simple setups.
//
// The allocator calls it without holding its own lock, on the thread that
// called Allocate, Scavenge or the allocator's destructor. Implementations
// must be thread-safe, must not call back into the allocator, and must not
// take a lock that the allocator's caller may hold around those calls.
#ifndef SHMBROKER_CORE_CAPACITY_BUDGET_H_
#define SHMBROKER_CORE_CAPACITY_BUDGET_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace shmbroker {

// Who owns memory and is charged for it (DESIGN.md "Words"): a uid.
using TenantId = uid_t;

class CapacityBudget {
 public:
  virtual ~CapacityBudget() = default;
  // Reserves `bytes` for `tenant`. If that would pass a limit, reserves
  // nothing and returns RESOURCE_EXHAUSTED with a message naming the limit.
  virtual absl::Status TryReserve(TenantId tenant, uint64_t bytes) = 0;
  // Gives back `bytes` that TryReserve reserved for `tenant`.
  virtual void Return(TenantId tenant, uint64_t bytes) = 0;
};

// One global limit, the same for every tenant.
class FixedCapacity final : public CapacityBudget {
 public:
  // `limit_name` names the limit in refusals, e.g. "--capacity".
  explicit FixedCapacity(uint64_t capacity_bytes,
                         std::string limit_name = "capacity");

  absl::Status TryReserve(TenantId tenant, uint64_t bytes) override;
  void Return(TenantId tenant, uint64_t bytes) override;

  uint64_t capacity() const { return capacity_; }
  uint64_t reserved() const;

 private:
  const uint64_t capacity_;
  const std::string limit_name_;
  mutable absl::Mutex mu_;
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_CAPACITY_BUDGET_H_
