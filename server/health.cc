#include "server/health.h"

#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker {

HealthReporter::HealthReporter(RegistryObserver* next, uint64_t capacity_bytes)
    : next_(next),
      page_(static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))),
      can_allocate_(capacity_bytes >= page_) {}

void HealthReporter::Attach(grpc::HealthCheckServiceInterface* service) {
  {
    absl::MutexLock lock(&mu_);
    service_ = service;
  }
  Publish();
}

void HealthReporter::Stopping() {
  stopping_.store(true);
  Publish();
}

void HealthReporter::AcceptorBlocked(bool blocked) {
  blocked_acceptors_.fetch_add(blocked ? 1 : -1);
  Publish();
}

void HealthReporter::OnAllocate(absl::StatusCode result) {
  next_->OnAllocate(result);
}

void HealthReporter::OnHoldsDropped(ReclaimReason reason, uint64_t holds) {
  next_->OnHoldsDropped(reason, holds);
}

void HealthReporter::OnReclaim(ReclaimReason reason, uint64_t bytes) {
  next_->OnReclaim(reason, bytes);
}

void HealthReporter::OnUsage(uint64_t allocated_bytes,
                             uint64_t capacity_bytes) {
  next_->OnUsage(allocated_bytes, capacity_bytes);
  can_allocate_.store(capacity_bytes - allocated_bytes >= page_);
  Publish();
}

void HealthReporter::Publish() {
  absl::MutexLock lock(&mu_);
  if (service_ == nullptr) return;
  const int serving = can_allocate_.load() && !stopping_.load() &&
                              blocked_acceptors_.load() == 0
                          ? 1
                          : 0;
  // Only transitions reach gRPC: usage changes on every allocation.
  if (published_ == serving) return;
  published_ = serving;
  // Health checkers ask for "" (the whole server) or for the service by
  // name; both get the same answer.
  service_->SetServingStatus("", serving == 1);
  service_->SetServingStatus(v1::Broker::service_full_name(), serving == 1);
}

}  // namespace shmbroker
