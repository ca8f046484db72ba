// HealthReporter: keeps grpc.health.v1 (service "" and
// "shmbroker.v1.Broker") SERVING only while the
// daemon can allocate: at least one page of capacity free, able to accept
// connections (not out of file descriptors), and not stopping.
// It sits between the Registry and the Metrics as a RegistryObserver that
// forwards every event, and touches the gRPC health service only when the
// answer changes. Thread-safe.
#ifndef SHMBROKER_SERVER_HEALTH_H_
#define SHMBROKER_SERVER_HEALTH_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/registry_observer.h"

namespace grpc {
class HealthCheckServiceInterface;
}

namespace shmbroker {

class HealthReporter : public RegistryObserver {
 public:
  // `next` (not owned) receives every event.
  HealthReporter(RegistryObserver* next, uint64_t capacity_bytes);

  // Starts reporting to `service` (not owned), which exists only once the
  // gRPC server runs.
  void Attach(grpc::HealthCheckServiceInterface* service);
  // From now on NOT_SERVING.
  void Stopping();
  // An acceptor cannot accept (out of file descriptors) or can again: NOT
  // SERVING while any cannot.
  void AcceptorBlocked(bool blocked);

  void OnAllocate(absl::StatusCode result) override;
  void OnHoldsDropped(ReclaimReason reason, uint64_t holds) override;
  void OnReclaim(ReclaimReason reason, uint64_t bytes) override;
  void OnUsage(uint64_t allocated_bytes, uint64_t capacity_bytes) override;
  void OnLeaseGranted(bool detached) override {
    next_->OnLeaseGranted(detached);
  }
  void OnLeaseEnded(ReclaimReason reason) override {
    next_->OnLeaseEnded(reason);
  }
  void OnKeepAlive() override { next_->OnKeepAlive(); }
  void OnSeal() override { next_->OnSeal(); }
  void OnWaiters(size_t waiting) override { next_->OnWaiters(waiting); }
  void OnRoomWaiters(size_t waiting) override { next_->OnRoomWaiters(waiting); }
  void OnRoomWaited(absl::Duration waited) override {
    next_->OnRoomWaited(waited);
  }
  void OnWatchers(size_t watching) override { next_->OnWatchers(watching); }
  void OnReclaimStep(uint64_t buffers) override {
    next_->OnReclaimStep(buffers);
  }

 private:
  void Publish() ABSL_LOCKS_EXCLUDED(mu_);

  RegistryObserver* const next_;
  const uint64_t page_;
  std::atomic<bool> can_allocate_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> blocked_acceptors_{0};
  absl::Mutex mu_;  // orders what reaches gRPC
  grpc::HealthCheckServiceInterface* service_ ABSL_GUARDED_BY(mu_) = nullptr;
  int published_ ABSL_GUARDED_BY(mu_) = -1;  // last status sent: -1 none
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_HEALTH_H_
