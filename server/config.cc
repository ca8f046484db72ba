#include "server/config.h"

#include <grp.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/byte_size.h"
#include "common/default_socket.h"
#include "core/buffer_name.h"

ABSL_FLAG(std::string, socket, "",
          "gRPC socket path; the fd channel listens at PATH.fds. Default: "
          "$SHMBROKER_SOCKET, else /run/shmbroker/broker.sock for root, else "
          "$XDG_RUNTIME_DIR/shmbroker/broker.sock");
ABSL_FLAG(shmbroker::ByteSize, capacity, shmbroker::ByteSize{0},
          "bytes the daemon may hand out in all (e.g. 8GiB); 0 means a "
          "quarter of physical memory");
ABSL_FLAG(std::string, socket_group, "",
          "group (name or gid) that owns the socket directory and sockets, "
          "so its members can connect; empty: the daemon's own group");
ABSL_FLAG(uint64_t, max_buffers, 100000, "live buffers at most");
ABSL_FLAG(shmbroker::ByteSize, max_bytes_per_uid, shmbroker::ByteSize{0},
          "bytes the live buffers of one owner uid may be charged in all "
          "(their charged_bytes, as --capacity counts them), so that one "
          "tenant cannot take the whole capacity. 0: half of --capacity; at "
          "most --capacity (set it to --capacity for no per-uid limit)");
ABSL_FLAG(uint64_t, max_buffers_per_uid, 0,
          "live buffers one owner uid may have, so that one tenant cannot "
          "take every buffer. 0: half of --max_buffers; at most "
          "--max_buffers (set it to --max_buffers for no per-uid limit)");
ABSL_FLAG(uint32_t, max_connections_per_uid, 256,
          "open gRPC connections per uid (from the kernel's credentials at "
          "accept); a connection beyond them is answered RESOURCE_EXHAUSTED "
          "and closed");
ABSL_FLAG(std::string, tenant_limits, "",
          "JSON file giving named uids their own --max_bytes_per_uid, "
          "--max_buffers_per_uid and --max_connections_per_uid "
          "(docs/operations.md, \"Quotas per tenant\"); re-read on SIGHUP, "
          "when a bad file is refused and the limits in force are kept. "
          "Empty: every uid has the flags' limits");
ABSL_FLAG(uint32_t, max_holds_per_lease, 65536,
          "holds under one lease at most");
ABSL_FLAG(absl::Duration, lease_min_ttl, absl::Seconds(1),
          "shortest lease TTL granted (shorter requests are raised to it)");
ABSL_FLAG(absl::Duration, lease_default_ttl, absl::Seconds(10),
          "TTL of each connection's default lease, and of grants that ask "
          "for none");
ABSL_FLAG(absl::Duration, lease_max_ttl, absl::Hours(1),
          "longest lease TTL granted (longer requests are cut to it)");
ABSL_FLAG(uint32_t, max_leases_per_client, 1024,
          "leases one client connection may hold besides its default one");
ABSL_FLAG(uint32_t, max_detached_leases_per_uid, 1024,
          "detached leases (which outlive their connection) per uid at most");
ABSL_FLAG(uint32_t, lease_sweep_batch, 256,
          "leases expired per sweep step; the registry lock is released "
          "between steps so that a mass expiry does not stall calls");
ABSL_FLAG(uint32_t, reclaim_batch, 16,
          "buffers an ended lease (expired, revoked, or its client gone) "
          "lets go of per step; the registry lock is released between steps "
          "so that a lease with many holds does not stall calls");
ABSL_FLAG(absl::Duration, reclaim_pause, absl::Microseconds(1),
          "how long a reclaim sleeps between two steps of --reclaim_batch, "
          "giving its CPU to the threads that serve other calls (the kernel "
          "rounds it up to its timer slack, 50us by default); 0: no sleep");
ABSL_FLAG(uint32_t, keepalive_max_per_second, 1000,
          "KeepAlive messages one client connection may send per second, "
          "over all its streams (after a burst of as many); beyond that the "
          "stream ends with RESOURCE_EXHAUSTED");
ABSL_FLAG(uint32_t, max_calls_per_second, 20000,
          "gRPC calls (unary calls and stream openings) one gRPC connection "
          "may make per second, after a burst of as many; beyond that a call "
          "fails at once with RESOURCE_EXHAUSTED");
ABSL_FLAG(uint32_t, max_frames_per_second, 20000,
          "frames (releases, seals, calls, ...) the daemon reads from one "
          "client connection's fd channel per second, after a burst of as "
          "many; over it the daemon stops reading that connection for 10ms "
          "(its sends wait), and counts it");
ABSL_FLAG(uint32_t, max_clients_per_uid, 256,
          "open client connections (fd channels) per uid at most");
ABSL_FLAG(uint32_t, max_waiters_per_connection, 64,
          "calls one client connection may have waiting at once: Attach "
          "calls waiting for a buffer to be created or sealed, and Allocate "
          "calls waiting for room");
ABSL_FLAG(uint32_t, fd_reserve, 128,
          "file descriptors kept free for client connections and the "
          "daemon's own use: a dedicated buffer that would take one of the "
          "last this many (of RLIMIT_NOFILE) is refused with "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, idle_connection_timeout, absl::Minutes(5),
          "a gRPC connection with no call in flight for this long is closed "
          "(the client reconnects when it next calls; a client's lease "
          "keeper keeps a stream open, so live clients are never idle); 0: "
          "never");
ABSL_FLAG(absl::Duration, grpc_keepalive_time, absl::Minutes(1),
          "the daemon pings a gRPC connection after this long without "
          "activity, to find peers that stopped reading");
ABSL_FLAG(absl::Duration, grpc_keepalive_timeout, absl::Seconds(20),
          "a gRPC connection whose peer does not answer a ping within this "
          "is closed");
ABSL_FLAG(uint32_t, max_watchers_per_connection, 16,
          "Watch streams one client connection (or, without one, one gRPC "
          "connection) may have open at once");
ABSL_FLAG(uint32_t, watch_queue_events, 1024,
          "events queued unsent for one watcher before it is dropped with a "
          "lost event");
ABSL_FLAG(uint32_t, watch_history, 4096,
          "buffer changes kept, so that a Watch may start from a recent "
          "revision");
ABSL_FLAG(uint32_t, list_max_page_size, 1000, "buffers per List page at most");
ABSL_FLAG(shmbroker::ByteSize, max_request_bytes, shmbroker::ByteSize{64 << 10},
          "largest gRPC request accepted");
ABSL_FLAG(std::string, shm_prefix, "shmbroker",
          "POSIX shm objects are named /PREFIX.INSTANCE.HANDLE.RANDOM "
          "(INSTANCE: the state directory's id, or the pid without one; "
          "RANDOM: 16 hex digits, so that no other user can create the name "
          "first)");
ABSL_FLAG(std::string, state_dir, "",
          "where the daemon keeps its books so that a restarted daemon "
          "resumes (docs/operations.md, \"Restarting and upgrading\"); "
          "empty: \"state\" beside the socket; \"none\": keep no books");
ABSL_FLAG(absl::Duration, restart_grace, absl::ZeroDuration(),
          "after a restart, how long clients have to present the memory "
          "they hold before the daemon drops what nobody took back; 0: the "
          "default lease TTL plus 5s");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port serving Prometheus metrics at /metrics; port 0 picks a "
          "free one; empty disables");
ABSL_FLAG(uint32_t, metrics_max_tenants, 20,
          "tenants (owner uids) with their own series; the rest add up in "
          "uid=\"other\"");
ABSL_FLAG(bool, pooling, true,
          "pool small owner-only memfd buffers in per-uid arenas (docs/api.md "
          "\"Pooled buffers\"); false: every buffer gets its own memfd");
ABSL_FLAG(shmbroker::ByteSize, arena_size, shmbroker::ByteSize{64 << 20},
          "bytes per pooled arena (one sealed memfd per owner uid, charged "
          "whole against --capacity): a multiple of 4KiB, at least 1MiB. At "
          "most a sixteenth of --capacity is used (in whole MiB); pooling is "
          "off when that is under 1MiB");
ABSL_FLAG(shmbroker::ByteSize, pooled_max_size, shmbroker::ByteSize{0},
          "largest buffer pooled in a shared arena, and by default; larger "
          "ones get a memfd of their own unless asked for as pooled. 0: a "
          "quarter of --arena_size");
ABSL_FLAG(shmbroker::ByteSize, pooled_large_max_size, shmbroker::ByteSize{0},
          "largest buffer pooled when asked for as pooled: those above "
          "--pooled_max_size get an arena of their own, kept for the uid's "
          "next one of about that size (warm pages; docs/api.md \"Pooled "
          "buffers\"). 0: a quarter of --capacity; at most --capacity");
ABSL_FLAG(absl::Duration, scavenge_delay, absl::Minutes(5),
          "how long freed pooled memory stays resident for reuse before it "
          "is returned to the OS (and unused arenas are closed)");
ABSL_FLAG(shmbroker::ByteSize, scavenge_max_bytes,
          shmbroker::ByteSize{16 << 20},
          "most bytes returned to the OS per scavenger step (steps repeat "
          "until nothing idle is left)");
ABSL_FLAG(bool, arena_prefault, false,
          "allocate and map every page of an arena when it is created: no "
          "first-touch faults, and every page charged to the daemon's memory "
          "cgroup (off: to the process that touches it first)");
ABSL_FLAG(std::string, log_format, "text",
          "text, or json (one object per line: time, level, msg)");
ABSL_FLAG(std::string, log_level, "info",
          "least severe log level written to stderr: trace, debug, info, "
          "warn, error");

namespace shmbroker {
namespace {

absl::StatusOr<gid_t> ResolveGroup(const std::string& group) {
  gid_t gid = 0;
  if (absl::SimpleAtoi(group, &gid)) return gid;
  struct group entry {};
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(group.c_str(), &entry, buf.data(), buf.size(), &found) !=
          0 ||
      found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket_group: no group named \"%s\"", group));
  }
  return found->gr_gid;
}

}  // namespace

const char* FlagFor(Limit limit) {
  switch (limit) {
    case Limit::kCapacity:
      return "--capacity";
    case Limit::kMaxBuffers:
      return "--max_buffers";
    case Limit::kMaxConnectionsPerUid:
      return "--max_clients_per_uid";
    case Limit::kMaxHoldsPerLease:
      return "--max_holds_per_lease";
    case Limit::kMaxLeasesPerConnection:
      return "--max_leases_per_client";
    case Limit::kMaxDetachedLeasesPerUid:
      return "--max_detached_leases_per_uid";
    case Limit::kPooledMaxSize:
      return "--pooled_max_size";
    case Limit::kPooledLargeMaxSize:
      return "--pooled_large_max_size";
    case Limit::kPoolingOff:
      return "--pooling=false";
    case Limit::kMaxWaitersPerConnection:
      return "--max_waiters_per_connection";
    case Limit::kFdReserve:
      return "--fd_reserve";
    case Limit::kMaxWatchersPerConnection:
      return "--max_watchers_per_connection";
    case Limit::kWatchQueueEvents:
      return "--watch_queue_events";
    case Limit::kWatchHistory:
      return "--watch_history";
    case Limit::kMaxBytesPerUid:
      return "--max_bytes_per_uid";
    case Limit::kMaxBuffersPerUid:
      return "--max_buffers_per_uid";
    case Limit::kMaxGrpcConnectionsPerUid:
      return "--max_connections_per_uid";
    case Limit::kMaxCallsPerSecond:
      return "--max_calls_per_second";
  }
  return "a daemon flag";
}

uint64_t DefaultCapacity() {
  const uint64_t pages = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES));
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return pages * page / 4 / (1 << 20) * (1 << 20);  // whole MiB
}

absl::StatusOr<ServerConfig> ConfigFromFlags() {
  ServerConfig config;
  config.socket_path = absl::GetFlag(FLAGS_socket);
  if (config.socket_path.empty()) config.socket_path = DefaultSocketPath();
  if (std::string group = absl::GetFlag(FLAGS_socket_group); !group.empty()) {
    absl::StatusOr<gid_t> gid = ResolveGroup(group);
    if (!gid.ok()) return gid.status();
    config.socket_group = *gid;
  }
  config.registry.capacity_bytes = absl::GetFlag(FLAGS_capacity).bytes;
  if (config.registry.capacity_bytes == 0) {
    config.registry.capacity_bytes = DefaultCapacity();
  }
  // Far beyond any host, and small enough that sizes up to it round to
  // whole pages without overflow.
  constexpr uint64_t kMaxCapacity = uint64_t{1} << 50;
  if (config.registry.capacity_bytes > kMaxCapacity) {
    return absl::InvalidArgumentError("--capacity: at most 1PiB (1024TiB)");
  }
  config.registry.max_buffers = absl::GetFlag(FLAGS_max_buffers);
  // Per-uid quotas default to half of the daemon's limits: a tenant at its
  // quota leaves at least half to the others, and a node with a single
  // tenant (a sidecar) still lets it use half without any configuration.
  uint64_t& bytes_per_uid = config.registry.max_bytes_per_uid;
  bytes_per_uid = absl::GetFlag(FLAGS_max_bytes_per_uid).bytes;
  if (bytes_per_uid == 0) bytes_per_uid = config.registry.capacity_bytes / 2;
  bytes_per_uid = std::min(bytes_per_uid, config.registry.capacity_bytes);
  uint64_t& buffers_per_uid = config.registry.max_buffers_per_uid;
  buffers_per_uid = absl::GetFlag(FLAGS_max_buffers_per_uid);
  if (buffers_per_uid == 0) {
    buffers_per_uid = std::max<uint64_t>(config.registry.max_buffers / 2, 1);
  }
  buffers_per_uid = std::min(buffers_per_uid, config.registry.max_buffers);
  config.max_grpc_connections_per_uid =
      absl::GetFlag(FLAGS_max_connections_per_uid);
  LeaseOptions& leases = config.registry.leases;
  leases.min_ttl = absl::GetFlag(FLAGS_lease_min_ttl);
  leases.default_ttl = absl::GetFlag(FLAGS_lease_default_ttl);
  leases.max_ttl = absl::GetFlag(FLAGS_lease_max_ttl);
  leases.max_leases_per_connection = absl::GetFlag(FLAGS_max_leases_per_client);
  leases.max_detached_leases_per_uid =
      absl::GetFlag(FLAGS_max_detached_leases_per_uid);
  leases.max_holds_per_lease = absl::GetFlag(FLAGS_max_holds_per_lease);
  leases.reclaim_batch = absl::GetFlag(FLAGS_reclaim_batch);
  leases.reclaim_pause = absl::GetFlag(FLAGS_reclaim_pause);
  if (absl::Status s = ValidateLeaseOptions(leases); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lease_min_ttl, --lease_default_ttl, --lease_max_ttl, "
                     "--max_leases_per_client, --max_detached_leases_per_uid, "
                     "--max_holds_per_lease, --reclaim_batch, "
                     "--reclaim_pause: ",
                     s.message()));
  }
  config.lease_sweep_batch = absl::GetFlag(FLAGS_lease_sweep_batch);
  config.keepalive_max_per_second =
      absl::GetFlag(FLAGS_keepalive_max_per_second);
  config.max_calls_per_second = absl::GetFlag(FLAGS_max_calls_per_second);
  config.max_frames_per_second = absl::GetFlag(FLAGS_max_frames_per_second);
  config.registry.max_connections_per_uid =
      absl::GetFlag(FLAGS_max_clients_per_uid);
  config.registry.max_waiters_per_connection =
      absl::GetFlag(FLAGS_max_waiters_per_connection);
  WatchOptions& watch = config.registry.watch;
  watch.max_watchers_per_connection =
      absl::GetFlag(FLAGS_max_watchers_per_connection);
  watch.queue_events = absl::GetFlag(FLAGS_watch_queue_events);
  watch.history = absl::GetFlag(FLAGS_watch_history);
  if (watch.queue_events == 0) {
    return absl::InvalidArgumentError("--watch_queue_events: at least 1");
  }
  const std::string prefix = absl::GetFlag(FLAGS_shm_prefix);
  if (prefix.size() > 64 || !ValidateBufferName(prefix).ok()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--shm_prefix=\"%s\": use 1 to 64 characters of [A-Za-z0-9._-]",
        prefix));
  }
  // The instance part is the pid until the state directory (main.cc)
  // gives a lasting one.
  config.shm_prefix = prefix;
  config.registry.shm_prefix = absl::StrCat("/", prefix, ".", ::getpid());
  config.state_dir = absl::GetFlag(FLAGS_state_dir);
  if (config.state_dir.empty()) {
    const size_t slash = config.socket_path.rfind('/');
    config.state_dir = absl::StrCat(
        slash == std::string::npos ? "." : config.socket_path.substr(0, slash),
        "/state");
  } else if (config.state_dir == "none") {
    config.state_dir.clear();
  }
  config.restart_grace = absl::GetFlag(FLAGS_restart_grace);
  if (config.restart_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--restart_grace: must not be negative");
  }
  if (config.restart_grace == absl::ZeroDuration()) {
    config.restart_grace = leases.default_ttl + absl::Seconds(5);
  }
  config.pooling = absl::GetFlag(FLAGS_pooling);
  PooledAllocatorOptions& pool = config.pool;
  pool.arena_size = absl::GetFlag(FLAGS_arena_size).bytes;
  pool.pooled_max_size = absl::GetFlag(FLAGS_pooled_max_size).bytes;
  pool.large_max_size = absl::GetFlag(FLAGS_pooled_large_max_size).bytes;
  if (pool.large_max_size == 0) {
    pool.large_max_size = config.registry.capacity_bytes / 4;
  }
  pool.large_max_size = std::min(
      {pool.large_max_size, config.registry.capacity_bytes, uint64_t{1} << 40});
  pool.scavenge_delay = absl::GetFlag(FLAGS_scavenge_delay);
  pool.scavenge_max_pages = static_cast<uint32_t>(std::min<uint64_t>(
      absl::GetFlag(FLAGS_scavenge_max_bytes).bytes / kPageSize, 1u << 30));
  pool.prefault = absl::GetFlag(FLAGS_arena_prefault);
  if (absl::Status s = ValidatePooledAllocatorOptions(pool); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--arena_size, --pooled_max_size, "
                     "--pooled_large_max_size, --scavenge_delay, "
                     "--scavenge_max_bytes: ",
                     s.message()));
  }
  // A tenant's first pooled buffer commits a whole arena, so an arena must
  // be a small part of the capacity, or a few tenants would hold all of it.
  const uint64_t share = config.registry.capacity_bytes / 16 / kMiB * kMiB;
  if (!config.pooling) {
    config.pooling_off_reason = "--pooling=false";
  } else if (share < kMiB) {
    config.pooling = false;
    config.pooling_off_reason =
        "--capacity is under 16MiB (an arena may take at most a sixteenth "
        "of it, and at least 1MiB)";
  } else if (pool.arena_size > share) {
    pool.arena_size = share;
    pool.pooled_max_size = std::min(pool.pooled_max_size, share);
  }
  config.fd_reserve = absl::GetFlag(FLAGS_fd_reserve);
  config.idle_connection_timeout = absl::GetFlag(FLAGS_idle_connection_timeout);
  config.grpc_keepalive_time = absl::GetFlag(FLAGS_grpc_keepalive_time);
  config.grpc_keepalive_timeout = absl::GetFlag(FLAGS_grpc_keepalive_timeout);
  constexpr absl::Duration kMaxTimeout = absl::Hours(24 * 24);  // fits int ms
  if (config.idle_connection_timeout < absl::ZeroDuration() ||
      config.idle_connection_timeout > kMaxTimeout ||
      config.grpc_keepalive_time < absl::Milliseconds(10) ||
      config.grpc_keepalive_time > kMaxTimeout ||
      config.grpc_keepalive_timeout < absl::Milliseconds(10) ||
      config.grpc_keepalive_timeout > kMaxTimeout) {
    return absl::InvalidArgumentError(
        "--idle_connection_timeout: 0 (never) up to 24 days; "
        "--grpc_keepalive_time, --grpc_keepalive_timeout: 10ms to 24 days");
  }
  config.list_max_page_size = absl::GetFlag(FLAGS_list_max_page_size);
  config.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes).bytes;
  config.log_level = absl::GetFlag(FLAGS_log_level);
  config.log_format = absl::GetFlag(FLAGS_log_format);
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  config.metrics_max_tenants = absl::GetFlag(FLAGS_metrics_max_tenants);
  if (config.log_format != "text" && config.log_format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log_format=", config.log_format, ": use text or json"));
  }
  if (config.registry.max_buffers == 0 ||
      config.registry.max_connections_per_uid == 0 ||
      config.max_grpc_connections_per_uid == 0 ||
      config.list_max_page_size == 0 || config.lease_sweep_batch == 0 ||
      config.keepalive_max_per_second == 0 ||
      config.max_calls_per_second == 0 || config.max_frames_per_second == 0 ||
      config.max_request_bytes < 1024) {
    return absl::InvalidArgumentError(
        "--max_buffers, --max_clients_per_uid, --max_connections_per_uid, "
        "--list_max_page_size, "
        "--lease_sweep_batch, --keepalive_max_per_second, "
        "--max_calls_per_second and --max_frames_per_second must be at least "
        "1, --max_request_bytes at least 1KiB");
  }
  config.tenant_limits_path = absl::GetFlag(FLAGS_tenant_limits);
  if (!config.tenant_limits_path.empty()) {
    absl::StatusOr<TenantLimits> limits =
        ReadTenantLimits(config.tenant_limits_path, TenantDefaultsOf(config));
    if (!limits.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant_limits: ", limits.status().message()));
    }
    config.tenant_limits = std::move(*limits);
    config.registry.own_quotas = config.tenant_limits.quotas;
  }
  return config;
}

TenantDefaults TenantDefaultsOf(const ServerConfig& config) {
  return {config.registry.max_bytes_per_uid,
          config.registry.max_buffers_per_uid,
          config.max_grpc_connections_per_uid};
}

}  // namespace shmbroker
