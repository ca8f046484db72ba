// Capacity: the daemon-wide byte capacity that dedicated buffers and pooled
// arenas draw on. The Registry charges a dedicated buffer's pages itself;
// the pooled allocator charges whole arenas through the CapacityBudget
// interface. What is charged is "committed"; nothing is committed past the
// capacity. Thread-safe; its lock is a leaf (it calls nothing), so it may be
// called with the Registry's or anyone's lock held.
#ifndef SHMBROKER_CORE_CAPACITY_H_
#define SHMBROKER_CORE_CAPACITY_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/capacity_budget.h"

namespace shmbroker {

class Capacity final : public CapacityBudget {
 public:
  explicit Capacity(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Arenas (the pooled allocator's budget).
  absl::Status TryReserve(TenantId tenant, uint64_t bytes) override;
  void Return(TenantId tenant, uint64_t bytes) override;

  // A dedicated buffer's pages; RESOURCE_EXHAUSTED (Limit::kCapacity) when
  // they do not fit.
  absl::Status ChargeDedicated(uint64_t bytes);
  void CreditDedicated(uint64_t bytes);

  struct Usage {
    uint64_t dedicated_bytes = 0;
    uint64_t arena_bytes = 0;
    uint64_t committed() const { return dedicated_bytes + arena_bytes; }
  };
  Usage usage() const;
  uint64_t capacity() const { return capacity_; }
  uint64_t committed() const { return usage().committed(); }

 private:
  const uint64_t capacity_;
  mutable absl::Mutex mu_;
  Usage usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_CAPACITY_H_
