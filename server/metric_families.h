// The metric families the daemon exports, and the children the hot path
// uses without a label lookup: Metrics::Impl. Private to server/metrics.cc
// (included there only); docs/metrics.md describes every series.
#ifndef SHMBROKER_SERVER_METRIC_FAMILIES_H_
#define SHMBROKER_SERVER_METRIC_FAMILIES_H_

#include <array>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/metrics.h"
#include "server/state_collector.h"

namespace shmbroker {
namespace metrics_internal {

// Latencies on this kind of machine run from ~50 µs (an RPC) to seconds.
inline const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3,
      5e-3,  10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 1.0};
  return kBuckets;
}

// One child per ReclaimReason, indexed by it, labelled with core's names.
using ByReasonArray = std::array<prometheus::Counter*, kReclaimReasonCount>;
inline ByReasonArray ByReason(prometheus::Family<prometheus::Counter>& family,
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

inline std::string CodeLabel(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace metrics_internal

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
  prometheus::Family<prometheus::Counter>& tenant_limits_reloads =
      prometheus::BuildCounter()
          .Name("shmbroker_tenant_limits_reloads_total")
          .Help(
              "Re-reads of the --tenant_limits file on SIGHUP, by result "
              "(applied, refused: the limits in force were kept).")
          .Register(*registry);
  prometheus::Counter& tenant_limits_applied =
      tenant_limits_reloads.Add({{"result", "applied"}});
  prometheus::Counter& tenant_limits_refused =
      tenant_limits_reloads.Add({{"result", "refused"}});
  prometheus::Gauge& tenant_limits_uids =
      prometheus::BuildGauge()
          .Name("shmbroker_tenant_limits_uids")
          .Help("Uids the --tenant_limits file gives their own limits.")
          .Register(*registry)
          .Add({});
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
          .Add({}, metrics_internal::LatencyBuckets());
  prometheus::Histogram& lease_expiry_latency =
      prometheus::BuildHistogram()
          .Name("shmbroker_lease_expiry_reclaim_latency_seconds")
          .Help(
              "From a lease's deadline passing to the memory held under it "
              "being freed.")
          .Register(*registry)
          .Add({}, metrics_internal::LatencyBuckets());
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
  prometheus::Family<prometheus::Counter>& fd_channel_calls =
      prometheus::BuildCounter()
          .Name("shmbroker_fd_channel_calls_total")
          .Help(
              "Allocate and Attach calls clients made on the fd channel "
              "rather than over gRPC (they are in "
              "shmbroker_rpc_duration_seconds too).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& restore_buffers =
      prometheus::BuildCounter()
          .Name("shmbroker_restore_buffers_total")
          .Help(
              "After a restart: buffers taken from the previous daemon's "
              "books (restored), given their memory back by a client or by "
              "name (readopted), whose presented memory was refused "
              "(refused), and dropped when the grace ended (not_resumed).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& restore_bytes =
      prometheus::BuildCounter()
          .Name("shmbroker_restore_bytes_total")
          .Help(
              "Bytes of the buffers counted in "
              "shmbroker_restore_buffers_total, by the same result.")
          .Register(*registry);
  prometheus::Gauge& resumed_from_books =
      prometheus::BuildGauge()
          .Name("shmbroker_resumed_from_books")
          .Help(
              "1 when this daemon started from a previous daemon's books "
              "(it is a restart), else 0.")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& waiters =
      prometheus::BuildGauge()
          .Name("shmbroker_waiters")
          .Help("Attach calls waiting for a buffer to be created or sealed.")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& room_waiters =
      prometheus::BuildGauge()
          .Name("shmbroker_allocate_waiters")
          .Help("Allocate calls waiting for room (wait_for_room).")
          .Register(*registry)
          .Add({});
  // Waits run from a release away (milliseconds) to a client's whole
  // timeout (minutes).
  prometheus::Histogram& room_wait =
      prometheus::BuildHistogram()
          .Name("shmbroker_allocate_wait_seconds")
          .Help(
              "How long Allocate calls waited for room before they were "
              "served, refused, or ran out of time.")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{
                       1e-3, 1e-2, 0.1, 0.5, 1, 5, 10, 30, 60, 300});
  prometheus::Counter& frames_throttled =
      prometheus::BuildCounter()
          .Name("shmbroker_fd_channel_throttled_total")
          .Help(
              "Times the daemon stopped reading a client connection's fd "
              "channel for 10ms because it sent frames faster than "
              "--max_frames_per_second.")
          .Register(*registry)
          .Add({});
  prometheus::Counter& reclaim_steps =
      prometheus::BuildCounter()
          .Name("shmbroker_reclaim_steps_total")
          .Help(
              "Steps in which ended leases let go of their buffers, at most "
              "--reclaim_batch each, the registry's lock released between "
              "steps.")
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
  metrics_internal::ByReasonArray releases_by_reason =
      metrics_internal::ByReason(releases);
  metrics_internal::ByReasonArray reclaims_by_reason =
      metrics_internal::ByReason(reclaims);
  metrics_internal::ByReasonArray bytes_by_reason =
      metrics_internal::ByReason(reclaimed_bytes);
  metrics_internal::ByReasonArray leases_ended_by_reason =
      metrics_internal::ByReason(leases_ended, /*leases_only=*/true);
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
  prometheus::Counter& fd_allocate_calls =
      fd_channel_calls.Add({{"method", "Allocate"}});
  prometheus::Counter& fd_attach_calls =
      fd_channel_calls.Add({{"method", "Attach"}});
  // Indexed by CloseReason.
  std::array<prometheus::Counter*, 4> closed_by_reason = {
      &closed.Add({{"reason", "hangup"}}),
      &closed.Add({{"reason", "protocol_error"}}),
      &closed.Add({{"reason", "shutdown"}}),
      &closed.Add({{"reason", "lease_ended"}})};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_METRIC_FAMILIES_H_
