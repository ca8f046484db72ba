#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <exception>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/unique_fd.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/state_collector.h"

namespace shmbroker {
namespace {

// Latencies on this kind of machine run from ~50 µs (an RPC) to seconds.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3,
      5e-3,  10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 1.0};
  return kBuckets;
}

// One child per ReclaimReason, indexed by it, labelled with core's names.
using ByReasonArray = std::array<prometheus::Counter*, kReclaimReasonCount>;
ByReasonArray ByReason(prometheus::Family<prometheus::Counter>& family,
                       bool leases_only = false) {
  ByReasonArray out{};
  for (int i = 0; i < kReclaimReasonCount; ++i) {
    const auto reason = static_cast<ReclaimReason>(i);
    // A lease ends for any reason but a release.
    if (leases_only && reason == ReclaimReason::kRelease) continue;
    out[i] = &family.Add({{"reason", ReclaimReasonName(reason)}});
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
  std::string address;  // what the exposer listens on
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
              "lease_expired, lease_revoked, shutdown).")
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
              "protocol_error, lease_ended, shutdown).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& refused =
      prometheus::BuildCounter()
          .Name("shmbroker_connections_refused_total")
          .Help(
              "Connections refused because the daemon was out of file "
              "descriptors, by socket (fd_channel, grpc).")
          .Register(*registry);
  prometheus::Counter& refused_fd_channel =
      refused.Add({{"socket", "fd_channel"}});
  prometheus::Counter& refused_grpc = refused.Add({{"socket", "grpc"}});
  prometheus::Family<prometheus::Counter>& limit_refusals =
      prometheus::BuildCounter()
          .Name("shmbroker_limit_refusals_total")
          .Help(
              "Calls and connections refused because a limit was reached, "
              "by limit (the flag that sets it).")
          .Register(*registry);
  std::array<prometheus::Counter*, kLimitCount> refusals_by_limit{};
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
  prometheus::Histogram& lease_expiry_latency =
      prometheus::BuildHistogram()
          .Name("shmbroker_lease_expiry_reclaim_latency_seconds")
          .Help(
              "From a lease's deadline passing to the memory held under it "
              "being freed.")
          .Register(*registry)
          .Add({}, LatencyBuckets());
  prometheus::Family<prometheus::Counter>& leases_granted =
      prometheus::BuildCounter()
          .Name("shmbroker_leases_granted_total")
          .Help(
              "Leases granted (connection defaults included), by whether "
              "they are detached.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& leases_ended =
      prometheus::BuildCounter()
          .Name("shmbroker_leases_ended_total")
          .Help(
              "Leases ended, by reason (lease_expired, lease_revoked, "
              "client_closed, shutdown).")
          .Register(*registry);
  prometheus::Counter& keepalives =
      prometheus::BuildCounter()
          .Name("shmbroker_keepalives_total")
          .Help("Lease renewals (KeepAlive messages answered with a TTL).")
          .Register(*registry)
          .Add({});
  prometheus::Counter& seals =
      prometheus::BuildCounter()
          .Name("shmbroker_seals_total")
          .Help("Buffers sealed (made immutable by their producer).")
          .Register(*registry)
          .Add({});
  prometheus::Family<prometheus::Counter>& one_way_failures =
      prometheus::BuildCounter()
          .Name("shmbroker_one_way_failures_total")
          .Help(
              "One-way fd-channel frames (release, seal) the daemon could "
              "not apply; the client was not waiting to be told.")
          .Register(*registry);
  prometheus::Gauge& waiters =
      prometheus::BuildGauge()
          .Name("shmbroker_waiters")
          .Help("Attach calls waiting for a buffer to be created or sealed.")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& watchers = prometheus::BuildGauge()
                                    .Name("shmbroker_watchers")
                                    .Help("Open Watch streams.")
                                    .Register(*registry)
                                    .Add({});
  prometheus::Counter& watch_events_sent =
      prometheus::BuildCounter()
          .Name("shmbroker_watch_events_sent_total")
          .Help("Events sent on Watch streams.")
          .Register(*registry)
          .Add({});
  prometheus::Counter& watchers_lost =
      prometheus::BuildCounter()
          .Name("shmbroker_watchers_lost_total")
          .Help(
              "Watch streams ended with a lost event: their queue was "
              "full (--watch_queue_events).")
          .Register(*registry)
          .Add({});
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
  ByReasonArray releases_by_reason = ByReason(releases);
  ByReasonArray reclaims_by_reason = ByReason(reclaims);
  ByReasonArray bytes_by_reason = ByReason(reclaimed_bytes);
  ByReasonArray leases_ended_by_reason =
      ByReason(leases_ended, /*leases_only=*/true);
  prometheus::Counter& granted_attached =
      leases_granted.Add({{"detached", "false"}});
  prometheus::Counter& granted_detached =
      leases_granted.Add({{"detached", "true"}});
  // method -> its code="OK" histogram; filled in Create, read-only after, so
  // the common case of RpcDone takes no lock.
  absl::flat_hash_map<std::string, prometheus::Histogram*> rpc_ok;
  prometheus::Counter& release_failed =
      one_way_failures.Add({{"frame", "release"}});
  prometheus::Counter& seal_failed = one_way_failures.Add({{"frame", "seal"}});
  // Indexed by CloseReason.
  std::array<prometheus::Counter*, 4> closed_by_reason = {
      &closed.Add({{"reason", "hangup"}}),
      &closed.Add({{"reason", "protocol_error"}}),
      &closed.Add({{"reason", "shutdown"}}),
      &closed.Add({{"reason", "lease_ended"}})};
};

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(
    const MetricsOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->max_tenants = options.max_tenants;
  impl->build.Add({{"version", options.version}}).Set(1);
  for (int i = 0; i < kLimitCount; ++i) {
    std::string flag = FlagFor(static_cast<Limit>(i));  // "--name[=value]"
    flag = flag.substr(2, flag.find('=') - 2);
    impl->refusals_by_limit[i] = &impl->limit_refusals.Add({{"limit", flag}});
  }
  // Every method's series exist from the start, so that rate() and
  // dashboards see zeros rather than nothing before the first call.
  for (const char* method :
       {"Ping", "Allocate", "Attach", "Release", "Describe", "List", "Status",
        "GrantLease", "KeepAlive", "RevokeLease", "LeaseTimeToLive",
        "ListLeases"}) {
    impl->denials.Add({{"method", method}});
    impl->rpc_ok[method] =
        &impl->rpc.Add({{"method", method}, {"code", "OK"}}, LatencyBuckets());
  }
  if (!options.address.empty()) {
    // prometheus-cpp reports a bad or busy address by throwing; keep that
    // inside this module.
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(options.address);
      impl->address = options.address;
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

void Metrics::AddStateSource(const Registry* registry,
                             GrpcConnections* connections) {
  impl_->state = std::make_shared<StateCollector>(registry, impl_->max_tenants,
                                                  connections);
  if (impl_->exposer) impl_->exposer->RegisterCollectable(impl_->state);
}

int Metrics::port() const {
  if (!impl_->exposer) return 0;
  std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void Metrics::StopServing() {
  if (!impl_->exposer) return;
  // prometheus-cpp stops civetweb, whose listener thread notices the stop
  // only when its poll() returns, which it does every 2 s
  // (SOCKET_TIMEOUT_QUANTUM) or when a connection arrives. Connecting to
  // our own port while it stops makes that at once, so the daemon exits in
  // milliseconds instead of seconds.
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port()));
  const std::string host = impl_->address.substr(0, impl_->address.rfind(':'));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      addr.sin_addr.s_addr == htonl(INADDR_ANY)) {
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // a wildcard or a name
  }
  std::atomic<bool> stopped{false};
  std::thread poke([addr, &stopped] {
    while (!stopped.load()) {
      UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr),
                sizeof(addr));
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  impl_->exposer.reset();
  stopped.store(true);
  poke.join();
}

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

void Metrics::OnLeaseGranted(bool detached) {
  (detached ? impl_->granted_detached : impl_->granted_attached).Increment();
}

void Metrics::OnLeaseEnded(ReclaimReason reason) {
  if (prometheus::Counter* c =
          impl_->leases_ended_by_reason[static_cast<size_t>(reason)]) {
    c->Increment();
  }
}

void Metrics::OnKeepAlive() { impl_->keepalives.Increment(); }

void Metrics::OnSeal() { impl_->seals.Increment(); }

void Metrics::OneWayFailed(fdchannel::FrameType frame) {
  (frame == fdchannel::FrameType::kSeal ? impl_->seal_failed
                                        : impl_->release_failed)
      .Increment();
}

void Metrics::OnWaiters(size_t waiting) {
  impl_->waiters.Set(static_cast<double>(waiting));
}

void Metrics::OnWatchers(size_t watching) {
  impl_->watchers.Set(static_cast<double>(watching));
}

void Metrics::WatchEventSent() { impl_->watch_events_sent.Increment(); }

void Metrics::WatcherLost() { impl_->watchers_lost.Increment(); }

void Metrics::LeaseExpiryReclaimed(absl::Duration latency) {
  impl_->lease_expiry_latency.Observe(absl::ToDoubleSeconds(latency));
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

void Metrics::ConnectionRefused(const char* socket) {
  (std::string_view(socket) == "grpc" ? impl_->refused_grpc
                                      : impl_->refused_fd_channel)
      .Increment();
}

void Metrics::LimitRefused(Limit limit) {
  const int i = static_cast<int>(limit);
  if (i >= 0 && i < kLimitCount) impl_->refusals_by_limit[i]->Increment();
}

void Metrics::CountRefusal(const absl::Status& status) {
  std::optional<Limit> limit = LimitOf(status);
  // A refused gRPC connection was counted once, at accept, not per call.
  if (limit && *limit != Limit::kMaxGrpcConnectionsPerUid) {
    LimitRefused(*limit);
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
