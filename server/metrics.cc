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
#include "server/metric_families.h"
#include "server/state_collector.h"

namespace shmbroker {

using metrics_internal::CodeLabel;
using metrics_internal::LatencyBuckets;

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
        "ListLeases", "Resume"}) {
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
                             GrpcConnections* connections,
                             const BooksJournal* books) {
  impl_->state = std::make_shared<StateCollector>(registry, impl_->max_tenants,
                                                  connections, books);
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

void Metrics::FdChannelCall(fdchannel::CallMethod method) {
  (method == fdchannel::CallMethod::kAllocate ? impl_->fd_allocate_calls
                                              : impl_->fd_attach_calls)
      .Increment();
}

void Metrics::OneWayFailed(fdchannel::FrameType frame) {
  (frame == fdchannel::FrameType::kSeal ? impl_->seal_failed
                                        : impl_->release_failed)
      .Increment();
}

void Metrics::Restored(const RestoreResult& restored) {
  impl_->resumed_from_books.Set(restored.buffers + restored.leases > 0 ? 1 : 0);
  impl_->restore_buffers.Add({{"result", "restored"}})
      .Increment(static_cast<double>(restored.buffers));
  impl_->restore_bytes.Add({{"result", "restored"}})
      .Increment(static_cast<double>(restored.bytes));
  impl_->restore_buffers.Add({{"result", "readopted"}})
      .Increment(static_cast<double>(restored.posix_reopened));
}

void Metrics::Readopted(uint64_t bytes, uint64_t buffers) {
  impl_->restore_buffers.Add({{"result", "readopted"}})
      .Increment(static_cast<double>(buffers));
  impl_->restore_bytes.Add({{"result", "readopted"}})
      .Increment(static_cast<double>(bytes));
}

void Metrics::PresentRefused() {
  impl_->restore_buffers.Add({{"result", "refused"}}).Increment();
}

void Metrics::GraceEnded(const CloseResult& dropped) {
  impl_->restore_buffers.Add({{"result", "not_resumed"}})
      .Increment(static_cast<double>(dropped.buffers_reclaimed));
  impl_->restore_bytes.Add({{"result", "not_resumed"}})
      .Increment(static_cast<double>(dropped.bytes_reclaimed));
}

void Metrics::OnWaiters(size_t waiting) {
  impl_->waiters.Set(static_cast<double>(waiting));
}

void Metrics::OnRoomWaiters(size_t waiting) {
  impl_->room_waiters.Set(static_cast<double>(waiting));
}

void Metrics::OnRoomWaited(absl::Duration waited) {
  impl_->room_wait.Observe(absl::ToDoubleSeconds(waited));
}

void Metrics::OnReclaimStep(uint64_t /*buffers*/) {
  impl_->reclaim_steps.Increment();
}

void Metrics::OnWatchers(size_t watching) {
  impl_->watchers.Set(static_cast<double>(watching));
}

void Metrics::WatchEventSent() { impl_->watch_events_sent.Increment(); }

void Metrics::WatcherLost() { impl_->watchers_lost.Increment(); }

void Metrics::FramesThrottled() { impl_->frames_throttled.Increment(); }

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

void Metrics::TenantLimitsRead(bool reload, bool applied, size_t uids) {
  if (reload) {
    (applied ? impl_->tenant_limits_applied : impl_->tenant_limits_refused)
        .Increment();
  }
  if (applied) impl_->tenant_limits_uids.Set(static_cast<double>(uids));
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
