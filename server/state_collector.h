// StateCollector: the daemon's state gauges (bytes, buffers, holds, leases,
// connections, tenants, pooled arenas, fds), read from the Registry when
// Prometheus scrapes, so the hot path pays nothing for them. docs/metrics.md
// lists them. Thread-safe (the Registry is).
#ifndef SHMBROKER_SERVER_STATE_COLLECTOR_H_
#define SHMBROKER_SERVER_STATE_COLLECTOR_H_

#include <vector>

#include "core/registry.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/books_journal.h"
#include "server/grpc_connections.h"

namespace shmbroker {

class StateCollector : public prometheus::Collectable {
 public:
  // `registry` and `connections` (may be null) must outlive the collector;
  // series per tenant beyond `max_tenants` add up in uid="other".
  // `books` (may be null): the books journal, whose totals are exported.
  StateCollector(const Registry* registry, size_t max_tenants,
                 GrpcConnections* connections = nullptr,
                 const BooksJournal* books = nullptr)
      : registry_(registry),
        max_tenants_(max_tenants),
        connections_(connections),
        books_(books) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  void AddTenants(const std::vector<TenantUsage>& tenants,
                  std::vector<prometheus::MetricFamily>& out) const;
  void AddPool(const PooledAllocator& pool,
               std::vector<prometheus::MetricFamily>& out) const;

  const Registry* const registry_;
  const size_t max_tenants_;
  GrpcConnections* const connections_;
  const BooksJournal* const books_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_STATE_COLLECTOR_H_
