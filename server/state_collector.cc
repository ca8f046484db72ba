#include "server/state_collector.h"

#include <dirent.h>
#include <sys/resource.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace shmbroker {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Gauge(std::string name, std::string help) {
  return MetricFamily{std::move(name), std::move(help), MetricType::Gauge, {}};
}

MetricFamily Counter(std::string name, std::string help) {
  return MetricFamily{
      std::move(name), std::move(help), MetricType::Counter, {}};
}

void AddCount(MetricFamily& family, double value) {
  ClientMetric m;
  m.counter.value = value;
  family.metric.push_back(std::move(m));
}

void AddSample(MetricFamily& family, double value,
               std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  family.metric.push_back(std::move(m));
}

uint64_t OpenFds() {
  uint64_t n = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    --n;  // the directory stream's own fd
  }
  return n;
}

}  // namespace

std::vector<MetricFamily> StateCollector::Collect() const {
  // Both from one hold of the Registry's lock.
  std::vector<TenantUsage> tenants;
  const RegistryStats stats = registry_->Stats(&tenants);
  std::vector<MetricFamily> out;
  out.push_back(Gauge("shmbroker_capacity_bytes",
                      "Bytes the daemon may hand out in all (--capacity)."));
  AddSample(out.back(), static_cast<double>(stats.capacity_bytes));
  out.push_back(Gauge("shmbroker_allocated_bytes",
                      "Bytes charged for live buffers (sizes rounded up to "
                      "pages)."));
  AddSample(out.back(), static_cast<double>(stats.allocated_bytes));
  out.push_back(Gauge("shmbroker_restore_awaiting_buffers",
                      "Restored buffers whose memory no client has presented "
                      "yet; dropped when --restart_grace ends."));
  AddSample(out.back(), static_cast<double>(stats.awaiting_memory));
  if (books_ != nullptr) {
    const BooksJournal::Stats books = books_->stats();
    out.push_back(Counter("shmbroker_books_records_total",
                          "Records written to the books journal in "
                          "--state_dir, by result; an error makes the next "
                          "change rewrite the journal whole."));
    for (const auto& [result, n] : {std::pair{"ok", books.records_written},
                                    std::pair{"error", books.write_errors}}) {
      ClientMetric m;
      m.label = {{"result", result}};
      m.counter.value = static_cast<double>(n);
      out.back().metric.push_back(std::move(m));
    }
    out.push_back(Counter("shmbroker_books_rewrites_total",
                          "Times the books journal was rewritten from a "
                          "snapshot of the live books."));
    AddCount(out.back(), static_cast<double>(books.rewrites));
    out.push_back(
        Gauge("shmbroker_books_bytes", "Size of the books journal file."));
    AddSample(out.back(), static_cast<double>(books.bytes));
  }
  out.push_back(Gauge("shmbroker_committed_bytes",
                      "Bytes counted against the capacity: dedicated "
                      "buffers plus whole pooled arenas."));
  AddSample(out.back(), static_cast<double>(stats.committed_bytes));
  out.push_back(Gauge("shmbroker_resident_bytes",
                      "Bytes of live buffers backed by memory pages."));
  AddSample(out.back(), static_cast<double>(registry_->ResidentBytes()));
  out.push_back(Gauge("shmbroker_buffers", "Live buffers."));
  AddSample(out.back(),
            static_cast<double>(stats.memfd_buffers - stats.pooled_buffers),
            {{"backing", "memfd"}, {"kind", "dedicated"}});
  AddSample(out.back(), static_cast<double>(stats.pooled_buffers),
            {{"backing", "memfd"}, {"kind", "pooled"}});
  AddSample(out.back(), static_cast<double>(stats.posix_buffers),
            {{"backing", "posix"}, {"kind", "dedicated"}});
  out.push_back(Gauge("shmbroker_holds", "Holds on live buffers."));
  AddSample(out.back(), static_cast<double>(stats.holds));
  out.push_back(Gauge("shmbroker_leases",
                      "Live leases (connection defaults included), by "
                      "whether they are detached."));
  AddSample(out.back(),
            static_cast<double>(stats.leases - stats.detached_leases),
            {{"detached", "false"}});
  AddSample(out.back(), static_cast<double>(stats.detached_leases),
            {{"detached", "true"}});
  out.push_back(Gauge("shmbroker_client_connections",
                      "Open client connections (fd channels)."));
  AddSample(out.back(), static_cast<double>(stats.clients));
  if (connections_ != nullptr) {
    out.push_back(Gauge("shmbroker_grpc_connections",
                        "Open gRPC connections (each holds a daemon fd; at "
                        "most --max_connections_per_uid per uid)."));
    AddSample(out.back(), static_cast<double>(connections_->Open()));
  }
  AddTenants(tenants, out);
  if (const PooledAllocator* pool = registry_->pool()) AddPool(*pool, out);
  out.push_back(Gauge("shmbroker_open_fds", "Open file descriptors."));
  AddSample(out.back(), static_cast<double>(OpenFds()));
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  out.push_back(Gauge("shmbroker_max_fds", "Limit on open file descriptors."));
  AddSample(out.back(), static_cast<double>(limit.rlim_cur));
  return out;
}

// The largest tenants by bytes get a series each; the rest add up in
// uid="other", so a host with many uids cannot blow up the cardinality.
void StateCollector::AddTenants(const std::vector<TenantUsage>& tenants,
                                std::vector<MetricFamily>& out) const {
  MetricFamily bytes = Gauge("shmbroker_tenant_allocated_bytes",
                             "Bytes charged per owner uid (the largest "
                             "--metrics_max_tenants, then \"other\").");
  MetricFamily buffers = Gauge("shmbroker_tenant_buffers",
                               "Live buffers per owner uid (as "
                               "shmbroker_tenant_allocated_bytes).");
  double other_bytes = 0, other_buffers = 0;
  for (size_t i = 0; i < tenants.size(); ++i) {
    if (i < max_tenants_) {
      std::vector<ClientMetric::Label> uid = {
          {"uid", absl::StrCat(tenants[i].uid)}};
      AddSample(bytes, static_cast<double>(tenants[i].allocated_bytes), uid);
      AddSample(buffers, static_cast<double>(tenants[i].buffers), uid);
    } else {
      other_bytes += static_cast<double>(tenants[i].allocated_bytes);
      other_buffers += static_cast<double>(tenants[i].buffers);
    }
  }
  AddSample(bytes, other_bytes, {{"uid", "other"}});
  AddSample(buffers, other_buffers, {{"uid", "other"}});
  out.push_back(std::move(bytes));
  out.push_back(std::move(buffers));
}

void StateCollector::AddPool(const PooledAllocator& pool,
                             std::vector<MetricFamily>& out) const {
  const PooledAllocatorStats stats = pool.Stats();
  out.push_back(Gauge("shmbroker_arenas", "Pooled arenas."));
  AddSample(out.back(), static_cast<double>(stats.arenas));
  out.push_back(Gauge("shmbroker_arena_bytes",
                      "Bytes of pooled arenas by state: in_use (live "
                      "buffers' slots and runs), free, span_tail (unusable "
                      "ends of spans)."));
  AddSample(out.back(), static_cast<double>(stats.in_use_bytes),
            {{"state", "in_use"}});
  AddSample(out.back(), static_cast<double>(stats.free_bytes),
            {{"state", "free"}});
  AddSample(out.back(), static_cast<double>(stats.span_tail_bytes),
            {{"state", "span_tail"}});
  out.push_back(Gauge("shmbroker_arena_largest_free_run_bytes",
                      "The longest run of free pages in any one arena "
                      "(fragmentation: compare with shmbroker_arena_bytes"
                      "{state=\"free\"})."));
  AddSample(out.back(), static_cast<double>(stats.largest_free_run_bytes));
  out.push_back(Counter("shmbroker_arena_scavenged_bytes_total",
                        "Idle pooled bytes returned to the OS (punched)."));
  AddCount(out.back(), static_cast<double>(stats.scavenged_bytes_total));
  out.push_back(Counter("shmbroker_arena_zeroed_bytes_total",
                        "Recycled pooled bytes zeroed before reuse."));
  AddCount(out.back(), static_cast<double>(stats.zeroed_bytes_total));
  out.push_back(Counter("shmbroker_arenas_created_total", "Arenas created."));
  AddCount(out.back(), static_cast<double>(stats.arenas_created_total));
  out.push_back(Counter("shmbroker_arenas_released_total",
                        "Arenas released (unused, scavenged or retired for "
                        "another uid)."));
  AddCount(out.back(), static_cast<double>(stats.arenas_released_total));
}

}  // namespace shmbroker
