// Registry: client connections and attaching. A buffer's life (allocate,
// hold, release, erase) is in registry_buffers.cc, leases in
// registry_leases.cc, the handoff in registry_handoff.cc, queries in
// registry_queries.cc.
#include "core/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/buffer_name.h"

namespace shmbroker {
namespace {

RegistryObserver* NoOpObserver() {
  static RegistryObserver kNoOp;
  return &kNoOp;
}

}  // namespace

absl::Status Registry::ConnectionClosedError(ConnectionId client) {
  return absl::FailedPreconditionError(
      absl::StrFormat("client connection %d is closed", client));
}

const char* ReclaimReasonName(ReclaimReason reason) {
  switch (reason) {
    case ReclaimReason::kRelease:
      return "release";
    case ReclaimReason::kClientClosed:
      return "client_closed";
    case ReclaimReason::kShutdown:
      return "shutdown";
    case ReclaimReason::kLeaseExpired:
      return "lease_expired";
    case ReclaimReason::kLeaseRevoked:
      return "lease_revoked";
    case ReclaimReason::kNotResumed:
      return "not_resumed";
  }
  return "unknown";
}

std::string BufferRef::ToString() const {
  if (handle != 0) return absl::StrCat("handle ", handle);
  return absl::StrCat("name \"", name, "\"");
}

Registry::Registry(RegistryOptions options, const Clock* clock,
                   RegistryObserver* observer)
    : options_(std::move(options)),
      clock_(clock),
      observer_(observer != nullptr ? observer : NoOpObserver()),
      quotas_(EffectiveQuota(
          {options_.max_bytes_per_uid, options_.max_buffers_per_uid})),
      watch_hub_(options_.watch),
      capacity_(options_.capacity_bytes) {
  SetOwnQuotas(options_.own_quotas);
}

UidQuota Registry::EffectiveQuota(UidQuota quota) const {
  // A quota as large as the daemon's own limit is none: the daemon's limit
  // refuses first, and names itself.
  if (quota.max_bytes >= options_.capacity_bytes) quota.max_bytes = 0;
  if (quota.max_buffers >= options_.max_buffers) quota.max_buffers = 0;
  return quota;
}

// Out of line: pool_ must go before capacity_ and mu_ (member order).
Registry::~Registry() = default;

absl::StatusOr<ConnectionId> Registry::OpenConnection(
    const Identity& identity) {
  Locked lock(this);
  auto per_uid = connections_per_uid_.find(identity.uid);
  const uint32_t open =
      per_uid == connections_per_uid_.end() ? 0 : per_uid->second;
  if (open >= options_.max_connections_per_uid) {
    return LimitReached(Limit::kMaxConnectionsPerUid,
                        absl::StrFormat("uid %d already has %d client "
                                        "connections, the most allowed",
                                        identity.uid, open));
  }
  ++connections_per_uid_[identity.uid];
  ConnectionId id = next_connection_++;
  ConnectionRecord& record = connections_[id];
  record.identity = identity;
  absl::StatusOr<LeaseInfo> lease =
      GrantLeaseLocked(record, id, options_.leases.default_ttl,
                       /*detached=*/false, /*is_default=*/true);
  record.default_lease = lease->id;  // a default lease is never refused
  return id;
}

absl::StatusOr<LeaseInfo> Registry::DefaultLease(ConnectionId client) const {
  Locked lock(this);
  auto it = connections_.find(client);
  if (it == connections_.end()) return ConnectionClosedError(client);
  const LeaseRecord* lease = leases_.Find(it->second.default_lease);
  if (lease == nullptr) return LeaseGoneLocked(it->second.default_lease);
  return lease->info;
}

CloseResult Registry::CloseConnection(ConnectionId client,
                                      ReclaimReason reason) {
  CloseResult result;
  {
    // `deferred` is declared before `lock`: memory closes, and the holds
    // of the connection's leases are dropped, unlocked.
    Deferred deferred(this, &result);
    Locked lock(this);
    CloseConnectionLocked(client, reason, deferred, &result);
  }
  return result;
}

void Registry::CloseConnectionLocked(ConnectionId client, ReclaimReason reason,
                                     Deferred& deferred, CloseResult* result) {
  auto it = connections_.find(client);
  if (it == connections_.end()) return;
  // Forget the connection first, so ending its default lease below does not
  // come back here.
  ConnectionRecord record = std::move(it->second);
  connections_.erase(it);
  for (WaiterId id : waiters_.ForConnection(client)) {
    std::optional<Waiter<absl::StatusOr<Grant>>> waiter = waiters_.Remove(id);
    deferred.Wake(client, std::move(waiter->done),
                  ConnectionClosedError(client));
  }
  const std::vector<WaiterId> room = room_waiters_.ForConnection(client);
  for (WaiterId id : room) {
    std::optional<RoomWaiter> waiter = room_waiters_.Remove(id);
    observer_->OnAllocate(absl::StatusCode::kFailedPrecondition);
    deferred.Wake(client, std::move(waiter->done),
                  ConnectionClosedError(client));
  }
  if (!room.empty()) observer_->OnRoomWaiters(room_waiters_.size());
  if (--connections_per_uid_[record.identity.uid] == 0) {
    connections_per_uid_.erase(record.identity.uid);
  }
  for (LeaseId id : record.leases) {
    LeaseRecord* lease = leases_.Find(id);
    if (lease == nullptr) continue;
    if (lease->info.detached) {
      lease->info.client = 0;  // it lives on, by TTL
    } else {
      EndLeaseLocked(id, reason, deferred, result);
    }
  }
}

absl::StatusOr<Grant> Registry::Attach(ConnectionId client,
                                       const BufferRef& ref,
                                       AccessRequest request, LeaseId lease) {
  absl::StatusOr<Grant> grant;
  {
    Locked lock(this);
    absl::StatusOr<Handle> handle = ResolveLocked(ref);
    grant = handle.ok() ? AttachLocked(client, *handle, request, lease)
                        : handle.status();
  }
  return FinishGrant(client, std::move(grant));
}

absl::StatusOr<Grant> Registry::AttachLocked(ConnectionId client, Handle handle,
                                             AccessRequest request,
                                             LeaseId lease) {
  absl::StatusOr<LeaseRecord*> under = UsableLeaseLocked(client, lease);
  if (!under.ok()) return under.status();
  const BufferRecord& record = buffers_.at(handle);
  absl::StatusOr<AccessMode> mode = DecideAccess(
      connections_.at(client).identity, record.owner, record.share(), request);
  if (!mode.ok()) return mode.status();
  if (record.sealed) {
    if (request == AccessRequest::kReadWrite) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "buffer %d is sealed: it can only be attached read-only", handle));
    }
    mode = AccessMode::kReadOnly;
  }
  if (absl::Status s = CheckHoldLimitLocked(**under); !s.ok()) return s;
  AddHoldLocked(**under, handle);
  Grant grant;
  grant.buffer = record.Info(handle);
  grant.mode = *mode;
  grant.lease = (*under)->info.id;
  grant.memory = MemoryLocked(record);
  return grant;
}

absl::StatusOr<Grant> Registry::FinishGrant(ConnectionId client,
                                            absl::StatusOr<Grant> grant) {
  if (!grant.ok() || grant->mode != AccessMode::kReadOnly) return grant;
  absl::StatusOr<UniqueFd> ro = grant->memory->OpenReadOnly();
  if (!ro.ok()) {
    Release(client, BufferRef::ByHandle(grant->buffer.handle), grant->lease)
        .IgnoreError();
    return ro.status();
  }
  grant->read_only_fd = std::move(*ro);
  return grant;
}

absl::StatusOr<Handle> Registry::ResolveLocked(const BufferRef& ref) const {
  Handle handle = ref.handle;
  if (handle == 0) {
    if (absl::Status s = ValidateBufferName(ref.name); !s.ok()) return s;
    auto named = names_.find(ref.name);
    if (named == names_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no such buffer: ", ref.ToString()));
    }
    handle = named->second;
  }
  auto it = buffers_.find(handle);
  if (it == buffers_.end() || !it->second.has_memory) {
    return absl::NotFoundError(
        absl::StrCat("no such buffer: ", ref.ToString()));
  }
  return handle;
}

}  // namespace shmbroker
