// RegistryObserver: how the registry reports what happens to memory, so that
// metrics and health can follow it without core depending on them. Called
// with the registry's mutex held: implementations must be quick, must not
// block, and must not call back into the Registry. Thread-safe as called
// from any thread.
#ifndef SHMBROKER_CORE_REGISTRY_OBSERVER_H_
#define SHMBROKER_CORE_REGISTRY_OBSERVER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace shmbroker {

// Why holds were dropped and buffers reclaimed.
enum class ReclaimReason {
  kRelease,       // a holder released it
  kClientClosed,  // the holder's client connection closed (exit or death)
  kShutdown,      // the daemon is stopping
  kLeaseExpired,  // the lease it was held under was not renewed in time
  kLeaseRevoked,  // the lease it was held under was revoked
  // After a daemon restart, nobody presented its memory within the grace
  // (the memory is gone, or its holders did not come back).
  kNotResumed,
};
inline constexpr int kReclaimReasonCount = 6;

const char* ReclaimReasonName(ReclaimReason reason);

class RegistryObserver {
 public:
  virtual ~RegistryObserver() = default;
  // Every Allocate, with its outcome.
  virtual void OnAllocate(absl::StatusCode result) {}
  virtual void OnHoldsDropped(ReclaimReason reason, uint64_t holds) {}
  // One buffer whose last hold went.
  virtual void OnReclaim(ReclaimReason reason, uint64_t bytes) {}
  // Bytes charged changed (an allocation reserved or a buffer reclaimed).
  virtual void OnUsage(uint64_t allocated_bytes, uint64_t capacity_bytes) {}
  virtual void OnLeaseGranted(bool detached) {}
  // A lease ended, for `reason` (kClientClosed, kLeaseExpired,
  // kLeaseRevoked or kShutdown).
  virtual void OnLeaseEnded(ReclaimReason reason) {}
  virtual void OnKeepAlive() {}
  // A buffer was sealed.
  virtual void OnSeal() {}
  // The number of waiting Attach calls changed to `waiting`.
  virtual void OnWaiters(size_t waiting) {}
  // Allocate calls waiting for room (core/room_waiters.h), and how long one
  // waited before it was served, refused or ran out of time.
  virtual void OnRoomWaiters(size_t waiting) {}
  virtual void OnRoomWaited(absl::Duration waited) {}
  // The number of watchers changed to `watching`.
  virtual void OnWatchers(size_t watching) {}
  // A step of dropping ended leases' holds let go of `buffers` buffers (at
  // most LeaseOptions::reclaim_batch). The one call made WITHOUT the
  // registry's mutex: between steps, so it may call the Registry.
  virtual void OnReclaimStep(uint64_t buffers) {}
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_REGISTRY_OBSERVER_H_
