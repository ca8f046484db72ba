// Registry: connections, attaching, releasing and holds. Making a buffer's
// memory (dedicated or pooled) is in registry_allocate.cc, leases in
// registry_leases.cc, queries in registry_queries.cc.
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
      watch_hub_(options_.watch),
      capacity_(options_.capacity_bytes) {}

// Out of line: pool_ must go before capacity_ and mu_ (member order).
Registry::~Registry() = default;

absl::StatusOr<ConnectionId> Registry::OpenConnection(
    const Identity& identity) {
  absl::MutexLock lock(&mu_);
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
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(client);
  if (it == connections_.end()) return ConnectionClosedError(client);
  const LeaseRecord* lease = leases_.Find(it->second.default_lease);
  if (lease == nullptr) return LeaseGoneLocked(it->second.default_lease);
  return lease->info;
}

CloseResult Registry::CloseConnection(ConnectionId client,
                                      ReclaimReason reason) {
  CloseResult result;
  Deferred deferred(this);
  absl::MutexLock lock(&mu_);
  // `deferred` is declared before `lock`: memory closes unlocked.
  CloseConnectionLocked(client, reason, deferred, &result);
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
    absl::MutexLock lock(&mu_);
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
  const BufferInfo& info = record.info;
  absl::StatusOr<AccessMode> mode = DecideAccess(
      connections_.at(client).identity, info.owner, info.share, request);
  if (!mode.ok()) return mode.status();
  if (info.sealed) {
    if (request == AccessRequest::kReadWrite) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "buffer %d is sealed: it can only be attached read-only",
          info.handle));
    }
    mode = AccessMode::kReadOnly;
  }
  if (absl::Status s = CheckHoldLimitLocked(**under); !s.ok()) return s;
  AddHoldLocked(**under, handle);
  Grant grant;
  grant.buffer = info;
  grant.mode = *mode;
  grant.lease = (*under)->info.id;
  grant.memory = record.memory;
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

absl::StatusOr<uint32_t> Registry::Release(ConnectionId client,
                                           const BufferRef& ref,
                                           LeaseId lease) {
  Deferred deferred(this);
  absl::MutexLock lock(&mu_);
  // `deferred` is declared before `lock`: reclaimed memory closes unlocked.
  auto it = connections_.find(client);
  if (it == connections_.end()) return ConnectionClosedError(client);
  const ConnectionRecord& caller = it->second;
  absl::StatusOr<Handle> handle = ResolveLocked(ref);
  if (!handle.ok()) return handle.status();
  auto holds_it = [&](const LeaseRecord* l) {
    return l != nullptr && l->holds.contains(*handle);
  };
  LeaseRecord* from = nullptr;
  if (lease != 0) {
    absl::StatusOr<LeaseRecord*> named = UsableLeaseLocked(client, lease);
    if (!named.ok()) return named.status();
    if (!holds_it(*named)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "lease %d holds no reference to buffer %d", lease, *handle));
    }
    from = *named;
  } else if (LeaseRecord* d = leases_.Find(caller.default_lease); holds_it(d)) {
    from = d;
  } else {
    for (LeaseId id : caller.leases) {
      if (LeaseRecord* l = leases_.Find(id); holds_it(l)) {
        from = l;
        break;
      }
    }
    // Else a detached lease of the caller's uid, e.g. one that a producer
    // left behind. Rare, so a scan is fine.
    for (const auto& [id, l] : leases_.all()) {
      if (from != nullptr) break;
      if (l.info.detached && l.info.owner.uid == caller.identity.uid &&
          holds_it(&l)) {
        from = leases_.Find(id);
      }
    }
  }
  if (from == nullptr) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: this client connection holds no reference to "
        "buffer %d, nor does a detached lease of uid %d (a hold can be "
        "released only by the connection that took it, or by the owner of "
        "its detached lease)",
        *handle, caller.identity.uid));
  }
  return DropHoldsLocked(*from, *handle, 1, deferred, ReclaimReason::kRelease,
                         nullptr);
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
  if (it == buffers_.end() || !it->second.memory) {
    return absl::NotFoundError(
        absl::StrCat("no such buffer: ", ref.ToString()));
  }
  return handle;
}

absl::Status Registry::CheckHoldLimitLocked(const LeaseRecord& lease) const {
  if (lease.info.holds >= options_.leases.max_holds_per_lease) {
    return LimitReached(
        Limit::kMaxHoldsPerLease,
        absl::StrFormat("lease %d has %d holds, the most allowed",
                        lease.info.id, lease.info.holds));
  }
  return absl::OkStatus();
}

void Registry::AddHoldLocked(LeaseRecord& lease, Handle handle) {
  ++lease.holds[handle];
  ++lease.info.holds;
  ++buffers_.at(handle).info.holders;
  ++hold_count_;
}

uint32_t Registry::DropHoldsLocked(LeaseRecord& lease, Handle handle,
                                   uint32_t count, Deferred& deferred,
                                   ReclaimReason reason, CloseResult* result) {
  observer_->OnHoldsDropped(reason, count);
  auto held = lease.holds.find(handle);
  held->second -= count;
  if (held->second == 0) lease.holds.erase(held);
  lease.info.holds -= count;
  hold_count_ -= count;
  BufferRecord& record = buffers_.at(handle);
  record.info.holders -= count;
  if (result != nullptr) result->holds_dropped += count;
  if (record.info.holders > 0) return record.info.holders;
  if (result != nullptr) {
    ++result->buffers_reclaimed;
    result->bytes_reclaimed += record.info.charged_bytes;
  }
  observer_->OnReclaim(reason, record.info.charged_bytes);
  PublishLocked(WatchEventType::kReleased, record.info, deferred, reason);
  deferred.Free(std::move(record.memory));
  EraseBufferLocked(handle);
  return 0;
}

void Registry::EraseBufferLocked(Handle handle) {
  auto it = buffers_.find(handle);
  if (it == buffers_.end()) return;
  const BufferInfo& info = it->second.info;
  if (!info.name.empty()) names_.erase(info.name);
  allocated_bytes_ -= info.charged_bytes;
  if (info.kind == BufferKind::kPooled) {
    // Cheap (a bitmap or a heap entry) and it never calls the budget, so it
    // is done right here: the slot is free the moment the last hold goes.
    // It cannot fail: the block lives as long as the record.
    pool_->Free(info.arena_id, info.offset).IgnoreError();
  } else {
    capacity_.CreditDedicated(info.charged_bytes);
  }
  buffers_.erase(it);
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
}

}  // namespace shmbroker
