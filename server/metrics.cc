#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>

#include <array>
#include <exception>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace shmbroker {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Latencies on this kind of machine run from ~50 µs (an RPC) to seconds.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3,
      5e-3,  10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 1.0};
  return kBuckets;
}

MetricFamily Gauge(std::string name, std::string help) {
  return MetricFamily{std::move(name), std::move(help), MetricType::Gauge, {}};
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

// Reads the registry's state when Prometheus scrapes.
class StateCollector : public prometheus::Collectable {
 public:
  StateCollector(const Registry* registry, size_t max_tenants)
      : registry_(registry), max_tenants_(max_tenants) {}

  std::vector<MetricFamily> Collect() const override {
    const RegistryStats stats = registry_->Stats();
    std::vector<MetricFamily> out;
    out.push_back(Gauge("shmbroker_capacity_bytes",
                        "Bytes the daemon may hand out in all (--capacity)."));
    AddSample(out.back(), static_cast<double>(stats.capacity_bytes));
    out.push_back(Gauge("shmbroker_allocated_bytes",
                        "Bytes charged for live buffers (sizes rounded up to "
                        "pages)."));
    AddSample(out.back(), static_cast<double>(stats.allocated_bytes));
    out.push_back(Gauge("shmbroker_resident_bytes",
                        "Bytes of live buffers backed by memory pages."));
    AddSample(out.back(), static_cast<double>(registry_->ResidentBytes()));
    out.push_back(Gauge("shmbroker_buffers", "Live buffers."));
    AddSample(out.back(), static_cast<double>(stats.memfd_buffers),
              {{"backing", "memfd"}, {"kind", "dedicated"}});
    AddSample(out.back(), static_cast<double>(stats.posix_buffers),
              {{"backing", "posix"}, {"kind", "dedicated"}});
    out.push_back(Gauge("shmbroker_holds", "Holds on live buffers."));
    AddSample(out.back(), static_cast<double>(stats.holds));
    out.push_back(Gauge("shmbroker_client_connections",
                        "Open client connections (fd channels)."));
    AddSample(out.back(), static_cast<double>(stats.clients));
    AddTenants(out);
    out.push_back(Gauge("shmbroker_open_fds", "Open file descriptors."));
    AddSample(out.back(), static_cast<double>(OpenFds()));
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    out.push_back(
        Gauge("shmbroker_max_fds", "Limit on open file descriptors."));
    AddSample(out.back(), static_cast<double>(limit.rlim_cur));
    return out;
  }

 private:
  // The largest tenants by bytes get a series each; the rest add up in
  // uid="other", so a host with many uids cannot blow up the cardinality.
  void AddTenants(std::vector<MetricFamily>& out) const {
    MetricFamily bytes = Gauge("shmbroker_tenant_allocated_bytes",
                               "Bytes charged per owner uid (the largest "
                               "--metrics_max_tenants, then \"other\").");
    MetricFamily buffers = Gauge("shmbroker_tenant_buffers",
                                 "Live buffers per owner uid (as "
                                 "shmbroker_tenant_allocated_bytes).");
    double other_bytes = 0, other_buffers = 0;
    std::vector<TenantUsage> tenants = registry_->Tenants();
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

  const Registry* const registry_;
  const size_t max_tenants_;
};

// One child per ReclaimReason, indexed by it, labelled with core's names.
std::array<prometheus::Counter*, 3> ByReason(
    prometheus::Family<prometheus::Counter>& family) {
  std::array<prometheus::Counter*, 3> out;
  for (ReclaimReason reason :
       {ReclaimReason::kRelease, ReclaimReason::kClientClosed,
        ReclaimReason::kShutdown}) {
    out[static_cast<size_t>(reason)] =
        &family.Add({{"reason", ReclaimReasonName(reason)}});
  }
  return out;
}

std::string CodeLabel(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<StateCollector> state;
  size_t max_tenants = 20;

  prometheus::Family<prometheus::Counter>& allocations =
      prometheus::BuildCounter()
          .Name("shmbroker_allocations_total")
          .Help("Allocate calls by result (ok, or the error code).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& releases =
      prometheus::BuildCounter()
          .Name("shmbroker_releases_total")
          .Help(
              "Holds dropped, by reason (release, client_closed, "
              "shutdown).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& reclaims =
      prometheus::BuildCounter()
          .Name("shmbroker_reclaims_total")
          .Help("Buffers reclaimed (last hold gone), by reason.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& reclaimed_bytes =
      prometheus::BuildCounter()
          .Name("shmbroker_reclaimed_bytes_total")
          .Help("Bytes returned to the capacity by reclaims, by reason.")
          .Register(*registry);
  prometheus::Counter& opened =
      prometheus::BuildCounter()
          .Name("shmbroker_client_connections_opened_total")
          .Help("Client connections (fd channels) opened.")
          .Register(*registry)
          .Add({});
  prometheus::Family<prometheus::Counter>& closed =
      prometheus::BuildCounter()
          .Name("shmbroker_client_connections_closed_total")
          .Help(
              "Client connections closed, by reason (hangup, "
              "protocol_error, shutdown).")
          .Register(*registry);
  prometheus::Counter& deaths =
      prometheus::BuildCounter()
          .Name("shmbroker_client_deaths_total")
          .Help(
              "Client connections that closed while holding buffers (the "
              "process died or exited without releasing).")
          .Register(*registry)
          .Add({});
  prometheus::Histogram& reclaim_latency =
      prometheus::BuildHistogram()
          .Name("shmbroker_reclaim_latency_seconds")
          .Help(
              "From noticing that a client connection closed to its "
              "memory being freed.")
          .Register(*registry)
          .Add({}, LatencyBuckets());
  prometheus::Family<prometheus::Counter>& denials =
      prometheus::BuildCounter()
          .Name("shmbroker_permission_denials_total")
          .Help("Calls answered PERMISSION_DENIED, by method.")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& rpc =
      prometheus::BuildHistogram()
          .Name("shmbroker_rpc_duration_seconds")
          .Help("Time to handle a shmbroker.v1 call, by method and code.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& build =
      prometheus::BuildGauge()
          .Name("shmbroker_build_info")
          .Help("Always 1; the labels say which build is running.")
          .Register(*registry);

  // Children of the hottest series, so the hot path skips a label lookup.
  prometheus::Counter& allocations_ok = allocations.Add({{"result", "ok"}});
  std::array<prometheus::Counter*, 3> releases_by_reason = ByReason(releases);
  std::array<prometheus::Counter*, 3> reclaims_by_reason = ByReason(reclaims);
  std::array<prometheus::Counter*, 3> bytes_by_reason =
      ByReason(reclaimed_bytes);
  // method -> its code="OK" histogram; filled in Create, read-only after, so
  // the common case of RpcDone takes no lock.
  absl::flat_hash_map<std::string, prometheus::Histogram*> rpc_ok;
  std::array<prometheus::Counter*, 3> closed_by_reason = {
      &closed.Add({{"reason", "hangup"}}),
      &closed.Add({{"reason", "protocol_error"}}),
      &closed.Add({{"reason", "shutdown"}})};
};

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(
    const MetricsOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->max_tenants = options.max_tenants;
  impl->build.Add({{"version", options.version}}).Set(1);
  // Every method's series exist from the start, so that rate() and
  // dashboards see zeros rather than nothing before the first call.
  for (const char* method : {"Ping", "Allocate", "Attach", "Release",
                             "Describe", "List", "Status"}) {
    impl->denials.Add({{"method", method}});
    impl->rpc_ok[method] =
        &impl->rpc.Add({{"method", method}, {"code", "OK"}}, LatencyBuckets());
  }
  if (!options.address.empty()) {
    // prometheus-cpp reports a bad or busy address by throwing; keep that
    // inside this module.
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(options.address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(
          "cannot serve metrics on ", options.address, ": ", e.what(),
          " (set --metrics_address, or empty to disable)"));
    }
    impl->exposer->RegisterCollectable(impl->registry);
  }
  return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Metrics::~Metrics() = default;

void Metrics::AddStateSource(const Registry* registry) {
  impl_->state = std::make_shared<StateCollector>(registry, impl_->max_tenants);
  if (impl_->exposer) impl_->exposer->RegisterCollectable(impl_->state);
}

int Metrics::port() const {
  if (!impl_->exposer) return 0;
  std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::StopServing() { impl_->exposer.reset(); }

void Metrics::OnAllocate(absl::StatusCode result) {
  if (result == absl::StatusCode::kOk) {
    impl_->allocations_ok.Increment();
    return;
  }
  impl_->allocations
      .Add(
          {{"result", absl::AsciiStrToLower(absl::StatusCodeToString(result))}})
      .Increment();
}

void Metrics::OnHoldsDropped(ReclaimReason reason, uint64_t holds) {
  impl_->releases_by_reason[static_cast<size_t>(reason)]->Increment(
      static_cast<double>(holds));
}

void Metrics::OnReclaim(ReclaimReason reason, uint64_t bytes) {
  impl_->reclaims_by_reason[static_cast<size_t>(reason)]->Increment();
  impl_->bytes_by_reason[static_cast<size_t>(reason)]->Increment(
      static_cast<double>(bytes));
}

void Metrics::ClientOpened() { impl_->opened.Increment(); }

void Metrics::ClientClosed(CloseReason reason, bool was_holding,
                           absl::Duration reclaim) {
  impl_->closed_by_reason[static_cast<size_t>(reason)]->Increment();
  if (was_holding && reason != CloseReason::kShutdown) {
    impl_->deaths.Increment();
    impl_->reclaim_latency.Observe(absl::ToDoubleSeconds(reclaim));
  }
}

void Metrics::RpcDone(const char* method, absl::StatusCode code,
                      absl::Duration duration) {
  const double seconds = absl::ToDoubleSeconds(duration);
  if (code == absl::StatusCode::kOk) {
    if (auto it = impl_->rpc_ok.find(method); it != impl_->rpc_ok.end()) {
      it->second->Observe(seconds);
      return;
    }
  }
  impl_->rpc
      .Add({{"method", method}, {"code", CodeLabel(code)}}, LatencyBuckets())
      .Observe(seconds);
  if (code == absl::StatusCode::kPermissionDenied) {
    impl_->denials.Add({{"method", method}}).Increment();
  }
}

}  // namespace shmbroker
