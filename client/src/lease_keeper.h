// LeaseKeeper: keeps a connection's leases alive. One background thread
// renews each tracked lease at about a third of its TTL over one KeepAlive
// stream, opens a new stream when one breaks (backing off up to a second),
// and reports a lease the daemon says is gone (expired, revoked, or its
// connection closed) through the loss callback, once, then stops renewing
// it. Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_
#define SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker::client {

using LeaseLossCallback =
    std::function<void(uint64_t lease_id, const absl::Status& why)>;

class LeaseKeeper {
 public:
  // `stub` must outlive the keeper; `prepare` adds the client connection's
  // token to each stream's context. `on_lost` (may be empty) runs on the
  // keeper's thread.
  LeaseKeeper(v1::Broker::Stub* stub,
              std::function<void(grpc::ClientContext*)> prepare,
              LeaseLossCallback on_lost);
  ~LeaseKeeper();  // stops renewing (the leases then run out their TTL)
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Starts renewing `lease_id`. A zero `ttl` (not yet known) renews at once
  // and learns it from the answer.
  void Track(uint64_t lease_id, absl::Duration ttl);
  // Stops renewing it (it was revoked on purpose) without reporting a loss.
  void Forget(uint64_t lease_id);
  // OK while the lease is kept (or unknown to the keeper); else why it was
  // lost, e.g. NOT_FOUND "lease 7 expired ...".
  absl::Status LeaseStatus(uint64_t lease_id) const;

 private:
  struct Entry {
    absl::Duration ttl;
    absl::Time next;
  };
  void Run();
  // Renews the due leases over `stream`; false if the stream broke.
  bool RenewDue(grpc::ClientReaderWriter<v1::KeepAliveRequest,
                                         v1::KeepAliveResponse>& stream);
  void MarkLost(uint64_t lease_id, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);

  v1::Broker::Stub* const stub_;
  const std::function<void(grpc::ClientContext*)> prepare_;
  const LeaseLossCallback on_lost_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, Entry> live_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, absl::Status> lost_ ABSL_GUARDED_BY(mu_);
  // The open stream's context, so that the destructor can cancel it.
  grpc::ClientContext* stream_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_
