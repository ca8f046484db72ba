#include "client/src/proto_convert.h"

namespace shmbroker::client {

v1::Backing ToProto(Backing backing) {
  switch (backing) {
    case Backing::kMemfd:
      return v1::BACKING_MEMFD;
    case Backing::kPosix:
      return v1::BACKING_POSIX;
    case Backing::kDefault:
      break;
  }
  return v1::BACKING_UNSPECIFIED;
}

v1::AccessMode ToProto(Access access) {
  switch (access) {
    case Access::kReadOnly:
      return v1::ACCESS_MODE_READ_ONLY;
    case Access::kReadWrite:
      return v1::ACCESS_MODE_READ_WRITE;
    case Access::kDefault:
      break;
  }
  return v1::ACCESS_MODE_UNSPECIFIED;
}

v1::BufferKind ToProto(Kind kind) {
  switch (kind) {
    case Kind::kDedicated:
      return v1::BUFFER_KIND_DEDICATED;
    case Kind::kPooled:
      return v1::BUFFER_KIND_POOLED;
    case Kind::kDefault:
      break;
  }
  return v1::BUFFER_KIND_UNSPECIFIED;
}

void ToProto(const ShareRule& rule, v1::ShareRule* out) {
  switch (rule.scope) {
    case ShareRule::Scope::kUid:
      out->set_scope(v1::SHARE_SCOPE_UID);
      break;
    case ShareRule::Scope::kGid:
      out->set_scope(v1::SHARE_SCOPE_GID);
      break;
    case ShareRule::Scope::kAll:
      out->set_scope(v1::SHARE_SCOPE_ALL);
      break;
  }
  out->set_id(rule.id);
  out->set_mode(rule.read_write ? v1::ACCESS_MODE_READ_WRITE
                                : v1::ACCESS_MODE_READ_ONLY);
}

void ToProto(absl::Duration duration, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(duration);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

v1::AllocateRequest ToProto(const AllocateOptions& options) {
  v1::AllocateRequest request;
  request.set_size(options.size);
  request.set_name(options.name);
  request.set_backing(ToProto(options.backing));
  for (const ShareRule& rule : options.share) {
    ToProto(rule, request.add_share());
  }
  request.set_lease_id(options.lease_id);
  request.set_kind(ToProto(options.kind));
  request.set_uninitialized(options.uninitialized);
  if (options.wait_for_room > absl::ZeroDuration()) {
    ToProto(options.wait_for_room, request.mutable_wait_for_room());
  }
  return request;
}

absl::Duration FromProto(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) +
         absl::Nanoseconds(duration.nanos());
}

absl::Time FromProto(const google::protobuf::Timestamp& time) {
  return absl::FromUnixSeconds(time.seconds()) +
         absl::Nanoseconds(time.nanos());
}

ShareRule FromProto(const v1::ShareRule& rule) {
  ShareRule out;
  switch (rule.scope()) {
    case v1::SHARE_SCOPE_UID:
      out.scope = ShareRule::Scope::kUid;
      break;
    case v1::SHARE_SCOPE_GID:
      out.scope = ShareRule::Scope::kGid;
      break;
    default:
      out.scope = ShareRule::Scope::kAll;
      break;
  }
  out.id = rule.id();
  out.read_write = rule.mode() == v1::ACCESS_MODE_READ_WRITE;
  return out;
}

BufferInfo FromProto(const v1::Buffer& buffer) {
  BufferInfo info;
  info.handle = buffer.handle();
  info.name = buffer.name();
  info.size = buffer.size();
  info.backing =
      buffer.backing() == v1::BACKING_POSIX ? Backing::kPosix : Backing::kMemfd;
  info.owner_uid = buffer.owner_uid();
  info.owner_gid = buffer.owner_gid();
  info.owner_pid = buffer.owner_pid();
  info.holders = buffer.holders();
  info.created = FromProto(buffer.created());
  for (const v1::ShareRule& rule : buffer.share()) {
    info.share.push_back(FromProto(rule));
  }
  info.shm_name = buffer.shm_name();
  info.charged_bytes = buffer.charged_bytes();
  info.kind = buffer.kind() == v1::BUFFER_KIND_POOLED ? Kind::kPooled
                                                      : Kind::kDedicated;
  info.arena_id = buffer.arena_id();
  info.offset = buffer.offset();
  info.sealed = buffer.sealed();
  return info;
}

LeaseInfo FromProto(const v1::Lease& lease) {
  LeaseInfo info;
  info.id = lease.id();
  info.ttl = FromProto(lease.ttl());
  info.granted_ttl = FromProto(lease.granted_ttl());
  info.detached = lease.detached();
  info.connection_default = lease.connection_default();
  info.holds = lease.holds();
  info.owner_pid = lease.owner_pid();
  info.owner_uid = lease.owner_uid();
  info.owner_gid = lease.owner_gid();
  info.connected = lease.connected();
  info.granted = FromProto(lease.granted());
  return info;
}

LeaseInfo FromProto(const v1::LeaseTimeToLiveResponse& response) {
  LeaseInfo info = FromProto(response.lease());
  for (const v1::LeaseHold& hold : response.holds()) {
    info.holds_by_buffer.emplace_back(hold.handle(), hold.count());
  }
  return info;
}

LatencySummary FromProto(const v1::ReclaimLatency& latency) {
  return {latency.samples(), FromProto(latency.p50()), FromProto(latency.p99()),
          FromProto(latency.max())};
}

PoolStatus FromProto(const v1::PoolStatus& pool) {
  PoolStatus out;
  out.enabled = pool.enabled();
  out.arena_size = pool.arena_size();
  out.pooled_max_size = pool.pooled_max_size();
  out.pooled_large_max_size = pool.pooled_large_max_size();
  out.large_arenas = pool.large_arenas();
  out.arenas = pool.arenas();
  out.arena_bytes = pool.arena_bytes();
  out.live_buffers = pool.live_buffers();
  out.in_use_bytes = pool.in_use_bytes();
  out.free_bytes = pool.free_bytes();
  out.span_tail_bytes = pool.span_tail_bytes();
  out.largest_free_run_bytes = pool.largest_free_run_bytes();
  out.scavenged_bytes_total = pool.scavenged_bytes_total();
  out.zeroed_bytes_total = pool.zeroed_bytes_total();
  out.arenas_created_total = pool.arenas_created_total();
  out.arenas_released_total = pool.arenas_released_total();
  for (const v1::SizeClassUsage& c : pool.size_classes()) {
    out.size_classes.push_back(
        {c.size(), c.span_pages(), c.spans(), c.free_slots(), c.live_slots()});
  }
  for (const v1::TenantArenas& t : pool.tenants()) {
    out.tenants.push_back({t.uid(), t.arenas(), t.in_use_bytes()});
  }
  return out;
}

DaemonStatus FromProto(const v1::StatusResponse& status) {
  DaemonStatus out;
  out.capacity_bytes = status.capacity_bytes();
  out.allocated_bytes = status.allocated_bytes();
  out.committed_bytes = status.committed_bytes();
  out.buffers = status.buffers();
  out.clients = status.clients();
  out.holds = status.holds();
  out.version = status.version();
  out.started = FromProto(status.started());
  for (const v1::TenantUsage& t : status.tenants()) {
    out.tenants.push_back({t.uid(), t.allocated_bytes(), t.buffers()});
  }
  out.leases = status.leases();
  out.detached_leases = status.detached_leases();
  out.waiters = status.waiters();
  out.watchers = status.watchers();
  out.revision = status.revision();
  out.connection_close_reclaim = FromProto(status.connection_close_reclaim());
  out.lease_expiry_reclaim = FromProto(status.lease_expiry_reclaim());
  out.arenas = FromProto(status.arenas());
  return out;
}

WatchEvent FromProto(const v1::WatchEvent& event) {
  WatchEvent out;
  out.revision = event.revision();
  switch (event.type()) {
    case v1::WATCH_EVENT_SEALED:
      out.type = WatchEvent::Type::kSealed;
      break;
    case v1::WATCH_EVENT_RELEASED:
      out.type = WatchEvent::Type::kReleased;
      break;
    case v1::WATCH_EVENT_LOST:
      out.type = WatchEvent::Type::kLost;
      break;
    default:
      out.type = WatchEvent::Type::kCreated;
      break;
  }
  switch (event.reason()) {
    case v1::RELEASE_REASON_RELEASED:
      out.reason = WatchEvent::Reason::kReleased;
      break;
    case v1::RELEASE_REASON_CLIENT_GONE:
      out.reason = WatchEvent::Reason::kClientGone;
      break;
    case v1::RELEASE_REASON_LEASE_EXPIRED:
      out.reason = WatchEvent::Reason::kLeaseExpired;
      break;
    case v1::RELEASE_REASON_LEASE_REVOKED:
      out.reason = WatchEvent::Reason::kLeaseRevoked;
      break;
    case v1::RELEASE_REASON_SHUTDOWN:
      out.reason = WatchEvent::Reason::kShutdown;
      break;
    case v1::RELEASE_REASON_NOT_RESUMED:
      out.reason = WatchEvent::Reason::kNotResumed;
      break;
    default:
      out.reason = WatchEvent::Reason::kNone;
      break;
  }
  if (event.has_buffer()) out.buffer = FromProto(event.buffer());
  return out;
}

}  // namespace shmbroker::client
