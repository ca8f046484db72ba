// Metrics: the daemon's Prometheus metrics (docs/metrics.md lists them).
//
// Events are counted as they happen: the registry reports through the
// RegistryObserver interface (core knows nothing of Prometheus), the fd
// channel reports client connections, the service reports every RPC. State
// (bytes, buffers, tenants, fds) is read from the Registry when Prometheus
// scrapes, so the hot path pays nothing for it. Served by prometheus-cpp's
// exposer on --metrics_address; with an empty address nothing is served but
// the counting still works (it is cheap). Thread-safe.
#ifndef SHMBROKER_SERVER_METRICS_H_
#define SHMBROKER_SERVER_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fd_channel_protocol.h"
#include "core/limit.h"
#include "core/registry.h"
#include "core/registry_observer.h"
#include "server/books_journal.h"
#include "server/client_connection.h"
#include "server/grpc_connections.h"

namespace shmbroker {

struct MetricsOptions {
  std::string address;      // host:port; empty: do not serve
  size_t max_tenants = 20;  // per-tenant series beyond these go to "other"
  std::string version;
};

class Metrics : public RegistryObserver {
 public:
  // INVALID_ARGUMENT / UNAVAILABLE when the address cannot be served.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(
      const MetricsOptions& options);
  ~Metrics() override;

  // Starts reporting the registry's state at scrape time. `registry` must
  // outlive this object.
  // `connections` (may be null) too: the open gRPC connections.
  // `books` (may be null) too: the books journal.
  void AddStateSource(const Registry* registry,
                      GrpcConnections* connections = nullptr,
                      const BooksJournal* books = nullptr);
  // The port being served (after an ephemeral :0), or 0.
  int port() const;
  // Stops serving scrapes (waits for one in progress). Call before the state
  // sources go away.
  void StopServing();

  // RegistryObserver.
  void OnAllocate(absl::StatusCode result) override;
  void OnHoldsDropped(ReclaimReason reason, uint64_t holds) override;
  void OnReclaim(ReclaimReason reason, uint64_t bytes) override;
  void OnLeaseGranted(bool detached) override;
  void OnLeaseEnded(ReclaimReason reason) override;
  void OnKeepAlive() override;
  void OnSeal() override;
  void OnWaiters(size_t waiting) override;
  void OnRoomWaiters(size_t waiting) override;
  void OnRoomWaited(absl::Duration waited) override;
  void OnReclaimStep(uint64_t buffers) override;
  void OnWatchers(size_t watching) override;

  // Watch streams (server/broker_service_watch.cc): an event sent, and a
  // watcher ended with a lost event.
  void WatchEventSent();
  void WatcherLost();
  // A client connection was paused for sending frames over its rate.
  void FramesThrottled();

  // A call made on the fd channel (Allocate or Attach).
  void FdChannelCall(fdchannel::CallMethod method);

  // A one-way frame (kRelease or kSeal) the daemon could not apply.
  void OneWayFailed(fdchannel::FrameType frame);

  // Restart (server/restart.h): what this daemon took from its
  // predecessor's books, each buffer given its memory back or refused, and
  // what the end of the grace dropped.
  void Restored(const RestoreResult& restored);
  // `buffers` readopted at once (an arena from the fd store holds several).
  void Readopted(uint64_t bytes, uint64_t buffers = 1);
  void PresentRefused();
  void GraceEnded(const CloseResult& dropped);

  // From a lease's deadline to its memory being free (the lease sweeper).
  void LeaseExpiryReclaimed(absl::Duration latency);

  // Client connections (fd channel).
  void ClientOpened();
  // `was_holding`: it closed while still holding buffers (a death, or an
  // exit without releasing). `reclaim` is the time from noticing the close
  // to its memory being freed.
  void ClientClosed(CloseReason reason, bool was_holding,
                    absl::Duration reclaim);

  // A connection accepted only to be refused: the daemon was out of file
  // descriptors. `socket` is "fd_channel" or "grpc".
  void ConnectionRefused(const char* socket);

  // The --tenant_limits file was read: at start or on SIGHUP (`reload`),
  // giving `uids` their own limits; or refused on SIGHUP (`applied` false,
  // the limits in force kept).
  void TenantLimitsRead(bool reload, bool applied, size_t uids);

  // A call or connection refused because `limit` was reached (a status
  // carrying it, core/limit.h).
  void LimitRefused(Limit limit);
  // LimitRefused for `status` if it carries a limit.
  void CountRefusal(const absl::Status& status);

  // One finished RPC.
  void RpcDone(const char* method, absl::StatusCode code,
               absl::Duration duration);

 private:
  struct Impl;
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_METRICS_H_
