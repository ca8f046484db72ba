#include "server/proto_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/limit.h"
#include "server/config.h"

namespace shmbroker {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  std::string message(status.message());
  if (std::optional<Limit> limit = LimitOf(status)) {
    absl::StrAppend(&message, " (", FlagFor(*limit), ")");
  }
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

absl::StatusOr<Backing> FromProto(v1::Backing backing) {
  switch (backing) {
    case v1::BACKING_UNSPECIFIED:
    case v1::BACKING_MEMFD:
      return Backing::kMemfd;
    case v1::BACKING_POSIX:
      return Backing::kPosix;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("bad backing: %d (use memfd or posix)", backing));
  }
}

absl::StatusOr<std::optional<BufferKind>> FromProto(v1::BufferKind kind) {
  switch (kind) {
    case v1::BUFFER_KIND_UNSPECIFIED:
      return std::nullopt;
    case v1::BUFFER_KIND_DEDICATED:
      return BufferKind::kDedicated;
    case v1::BUFFER_KIND_POOLED:
      return BufferKind::kPooled;
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "bad kind: %d (use pooled, dedicated, or leave it unset)", kind));
  }
}

absl::StatusOr<std::vector<ShareRule>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::ShareRule>& rules) {
  std::vector<ShareRule> out;
  for (const v1::ShareRule& rule : rules) {
    ShareRule r;
    switch (rule.scope()) {
      case v1::SHARE_SCOPE_UID:
        r.scope = ShareRule::Scope::kUid;
        break;
      case v1::SHARE_SCOPE_GID:
        r.scope = ShareRule::Scope::kGid;
        break;
      case v1::SHARE_SCOPE_ALL:
        r.scope = ShareRule::Scope::kAll;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrFormat(
            "bad share: scope %d (use uid, gid or all)", rule.scope()));
    }
    r.id = rule.id();
    switch (rule.mode()) {
      case v1::ACCESS_MODE_UNSPECIFIED:
      case v1::ACCESS_MODE_READ_ONLY:
        r.mode = AccessMode::kReadOnly;
        break;
      case v1::ACCESS_MODE_READ_WRITE:
        r.mode = AccessMode::kReadWrite;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrFormat("bad share: mode %d", rule.mode()));
    }
    out.push_back(r);
  }
  return out;
}

absl::StatusOr<AccessRequest> FromProto(v1::AccessMode mode) {
  switch (mode) {
    case v1::ACCESS_MODE_UNSPECIFIED:
      return AccessRequest::kBestAllowed;
    case v1::ACCESS_MODE_READ_ONLY:
      return AccessRequest::kReadOnly;
    case v1::ACCESS_MODE_READ_WRITE:
      return AccessRequest::kReadWrite;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("bad access mode: %d", mode));
  }
}

v1::AccessMode ToProto(AccessMode mode) {
  return mode == AccessMode::kReadOnly ? v1::ACCESS_MODE_READ_ONLY
                                       : v1::ACCESS_MODE_READ_WRITE;
}

void ToProto(const BufferInfo& info, v1::Buffer* out) {
  out->set_handle(info.handle);
  out->set_name(info.name);
  out->set_size(info.size);
  out->set_backing(info.backing == Backing::kPosix ? v1::BACKING_POSIX
                                                   : v1::BACKING_MEMFD);
  out->set_owner_uid(info.owner.uid);
  out->set_owner_gid(info.owner.gid);
  out->set_owner_pid(info.owner.pid);
  out->set_holders(info.holders);
  ToProto(info.created, out->mutable_created());
  for (const ShareRule& rule : info.share) {
    v1::ShareRule* r = out->add_share();
    r->set_scope(rule.scope == ShareRule::Scope::kUid   ? v1::SHARE_SCOPE_UID
                 : rule.scope == ShareRule::Scope::kGid ? v1::SHARE_SCOPE_GID
                                                        : v1::SHARE_SCOPE_ALL);
    r->set_id(rule.id);
    r->set_mode(ToProto(rule.mode));
  }
  out->set_shm_name(info.shm_name);
  out->set_charged_bytes(info.charged_bytes);
  out->set_kind(info.kind == BufferKind::kPooled ? v1::BUFFER_KIND_POOLED
                                                 : v1::BUFFER_KIND_DEDICATED);
  out->set_arena_id(info.arena_id);
  out->set_offset(info.offset);
  out->set_sealed(info.sealed);
}

void ToProto(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(time);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

void ToProto(absl::Duration duration, google::protobuf::Duration* out) {
  // Whole seconds and the rest, not int64 nanoseconds: those overflow past
  // 292 years.
  absl::Duration rest;
  out->set_seconds(absl::IDivDuration(duration, absl::Seconds(1), &rest));
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(rest)));
}

absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d) {
  // The proto's own rules: |seconds| <= 315,576,000,000 (10,000 years),
  // |nanos| < 1e9, nanos of the same sign as seconds.
  constexpr int64_t kMaxSeconds = 315576000000;
  if (d.seconds() < -kMaxSeconds || d.seconds() > kMaxSeconds ||
      d.nanos() <= -1000000000 || d.nanos() >= 1000000000 ||
      (d.seconds() > 0 && d.nanos() < 0) ||
      (d.seconds() < 0 && d.nanos() > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad duration: ", d.seconds(), "s ", d.nanos(), "ns"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ToProto(const LeaseInfo& info, absl::Time now, v1::Lease* out) {
  out->set_id(info.id);
  ToProto(std::max(info.deadline - now, absl::ZeroDuration()),
          out->mutable_ttl());
  ToProto(info.granted_ttl, out->mutable_granted_ttl());
  out->set_detached(info.detached);
  out->set_connection_default(info.connection_default);
  out->set_holds(info.holds);
  out->set_owner_pid(info.owner.pid);
  out->set_owner_uid(info.owner.uid);
  out->set_owner_gid(info.owner.gid);
  out->set_connected(info.client != 0);
  ToProto(info.granted, out->mutable_granted());
}

void ToProto(const LatencySummary& summary, v1::ReclaimLatency* out) {
  out->set_samples(summary.samples);
  ToProto(summary.p50, out->mutable_p50());
  ToProto(summary.p99, out->mutable_p99());
  ToProto(summary.max, out->mutable_max());
}

void ToProto(const PooledAllocatorStats& stats, v1::PoolStatus* out) {
  out->set_enabled(true);
  out->set_arena_size(stats.arena_size);
  out->set_arenas(stats.arenas);
  out->set_large_arenas(stats.large_arenas);
  out->set_arena_bytes(stats.arena_bytes);
  out->set_live_buffers(stats.live_blocks);
  out->set_in_use_bytes(stats.in_use_bytes);
  out->set_free_bytes(stats.free_bytes);
  out->set_span_tail_bytes(stats.span_tail_bytes);
  out->set_largest_free_run_bytes(stats.largest_free_run_bytes);
  out->set_scavenged_bytes_total(stats.scavenged_bytes_total);
  out->set_zeroed_bytes_total(stats.zeroed_bytes_total);
  out->set_arenas_created_total(stats.arenas_created_total);
  out->set_arenas_released_total(stats.arenas_released_total);
  for (const SizeClassStats& c : stats.size_classes) {
    if (c.spans == 0) continue;
    v1::SizeClassUsage* usage = out->add_size_classes();
    usage->set_size(c.size);
    usage->set_span_pages(c.span_pages);
    usage->set_spans(c.spans);
    usage->set_free_slots(c.free_slots);
    usage->set_live_slots(c.live_slots);
  }
  for (const TenantPoolStats& t : stats.tenants) {
    v1::TenantArenas* tenant = out->add_tenants();
    tenant->set_uid(t.tenant);
    tenant->set_arenas(t.arenas);
    tenant->set_in_use_bytes(t.in_use_bytes);
  }
}

absl::StatusOr<AllocateSpec> FromProto(const v1::AllocateRequest& request) {
  AllocateSpec spec;
  spec.size = request.size();
  spec.name = request.name();
  absl::StatusOr<Backing> backing = FromProto(request.backing());
  if (!backing.ok()) return backing.status();
  spec.backing = *backing;
  absl::StatusOr<std::vector<ShareRule>> share = FromProto(request.share());
  if (!share.ok()) return share.status();
  spec.share = std::move(*share);
  spec.lease = request.lease_id();
  absl::StatusOr<std::optional<BufferKind>> kind = FromProto(request.kind());
  if (!kind.ok()) return kind.status();
  spec.kind = *kind;
  spec.zeroed = !request.uninitialized();
  return spec;
}

void ToProto(const RegistryStats& stats, v1::StatusResponse* out) {
  out->set_capacity_bytes(stats.capacity_bytes);
  out->set_allocated_bytes(stats.allocated_bytes);
  out->set_committed_bytes(stats.committed_bytes);
  out->set_buffers(stats.buffers);
  out->set_clients(stats.clients);
  out->set_holds(stats.holds);
  out->set_leases(stats.leases);
  out->set_detached_leases(stats.detached_leases);
  out->set_waiters(stats.waiters);
  out->set_watchers(stats.watchers);
  out->set_revision(stats.revision);
}

void ToProto(const TenantUsage& usage, v1::TenantUsage* out) {
  out->set_uid(usage.uid);
  out->set_allocated_bytes(usage.allocated_bytes);
  out->set_buffers(usage.buffers);
}

v1::ReleaseReason ToProto(ReclaimReason reason) {
  switch (reason) {
    case ReclaimReason::kRelease:
      return v1::RELEASE_REASON_RELEASED;
    case ReclaimReason::kClientClosed:
      return v1::RELEASE_REASON_CLIENT_GONE;
    case ReclaimReason::kLeaseExpired:
      return v1::RELEASE_REASON_LEASE_EXPIRED;
    case ReclaimReason::kLeaseRevoked:
      return v1::RELEASE_REASON_LEASE_REVOKED;
    case ReclaimReason::kShutdown:
      return v1::RELEASE_REASON_SHUTDOWN;
    case ReclaimReason::kNotResumed:
      return v1::RELEASE_REASON_NOT_RESUMED;
  }
  return v1::RELEASE_REASON_UNSPECIFIED;
}

void ToProto(const WatchEvent& event, v1::WatchEvent* out) {
  out->Clear();
  out->set_revision(event.revision);
  switch (event.type) {
    case WatchEventType::kCreated:
      out->set_type(v1::WATCH_EVENT_CREATED);
      break;
    case WatchEventType::kSealed:
      out->set_type(v1::WATCH_EVENT_SEALED);
      break;
    case WatchEventType::kReleased:
      out->set_type(v1::WATCH_EVENT_RELEASED);
      out->set_reason(ToProto(event.reason));
      break;
    case WatchEventType::kLost:
      out->set_type(v1::WATCH_EVENT_LOST);
      return;
  }
  ToProto(event.buffer, out->mutable_buffer());
}

}  // namespace shmbroker
