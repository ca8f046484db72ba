#include "core/registry.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/buffer_name.h"

namespace shmbroker {
namespace {

uint64_t PageSize() {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return kPage;
}

RegistryObserver* NoOpObserver() {
  static RegistryObserver kNoOp;
  return &kNoOp;
}

}  // namespace

absl::Status Registry::ClientClosedError(ClientId client) {
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
      observer_(observer != nullptr ? observer : NoOpObserver()) {}

absl::StatusOr<ClientId> Registry::OpenClient(const Identity& identity) {
  absl::MutexLock lock(&mu_);
  auto per_uid = clients_per_uid_.find(identity.uid);
  const uint32_t open = per_uid == clients_per_uid_.end() ? 0 : per_uid->second;
  if (open >= options_.max_clients_per_uid) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("uid %d already has %d client connections "
                        "(--max_clients_per_uid=%d)",
                        identity.uid, open, options_.max_clients_per_uid));
  }
  ++clients_per_uid_[identity.uid];
  ClientId id = next_client_++;
  ClientRecord& record = clients_[id];
  record.identity = identity;
  absl::StatusOr<LeaseInfo> lease =
      GrantLeaseLocked(record, id, options_.leases.default_ttl,
                       /*detached=*/false, /*is_default=*/true);
  record.default_lease = lease->id;  // a default lease is never refused
  return id;
}

absl::StatusOr<LeaseInfo> Registry::DefaultLease(ClientId client) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return ClientClosedError(client);
  const LeaseRecord* lease = leases_.Find(it->second.default_lease);
  if (lease == nullptr) return LeaseGoneLocked(it->second.default_lease);
  return lease->info;
}

CloseResult Registry::CloseClient(ClientId client, ReclaimReason reason) {
  CloseResult result;
  std::vector<std::shared_ptr<MemoryObject>> doomed;
  absl::MutexLock lock(&mu_);
  // `doomed` is declared before `lock`, so memory closes unlocked.
  CloseClientLocked(client, reason, doomed, &result);
  return result;
}

void Registry::CloseClientLocked(
    ClientId client, ReclaimReason reason,
    std::vector<std::shared_ptr<MemoryObject>>& doomed, CloseResult* result) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  // Forget the connection first, so ending its default lease below does not
  // come back here.
  ClientRecord record = std::move(it->second);
  clients_.erase(it);
  if (--clients_per_uid_[record.identity.uid] == 0) {
    clients_per_uid_.erase(record.identity.uid);
  }
  for (LeaseId id : record.leases) {
    LeaseRecord* lease = leases_.Find(id);
    if (lease == nullptr) continue;
    if (lease->info.detached) {
      lease->info.client = 0;  // it lives on, by TTL
    } else {
      EndLeaseLocked(id, reason, doomed, result);
    }
  }
}

absl::StatusOr<Grant> Registry::Allocate(ClientId client,
                                         const AllocateSpec& spec) {
  absl::StatusOr<Grant> grant = DoAllocate(client, spec);
  observer_->OnAllocate(grant.status().code());
  return grant;
}

absl::StatusOr<Grant> Registry::DoAllocate(ClientId client,
                                           const AllocateSpec& spec) {
  if (spec.size == 0) {
    return absl::InvalidArgumentError("bad size: 0 (must be at least 1 byte)");
  }
  if (spec.size > options_.capacity_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "over capacity: %d bytes requested, capacity is %d bytes "
        "(--capacity)",
        spec.size, options_.capacity_bytes));
  }
  if (!spec.name.empty()) {
    if (absl::Status s = ValidateBufferName(spec.name); !s.ok()) return s;
  }
  if (absl::Status s = ValidateShareRules(spec.share); !s.ok()) return s;
  const uint64_t charged =
      (spec.size + PageSize() - 1) / PageSize() * PageSize();

  // Reserve the handle, name and bytes, then create the memory unlocked.
  MemorySpec memory_spec;
  Handle handle = 0;
  LeaseId lease_id = 0;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<LeaseRecord*> lease = UsableLeaseLocked(client, spec.lease);
    if (!lease.ok()) return lease.status();
    if (absl::Status s = CheckHoldLimitLocked(**lease); !s.ok()) return s;
    lease_id = (*lease)->info.id;
    if (buffers_.size() >= options_.max_buffers) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "too many buffers: %d live (--max_buffers)", buffers_.size()));
    }
    if (!spec.name.empty()) {
      if (auto taken = names_.find(spec.name); taken != names_.end()) {
        return absl::AlreadyExistsError(absl::StrFormat(
            "name \"%s\" is taken (buffer %d)", spec.name, taken->second));
      }
    }
    if (allocated_bytes_ + charged > options_.capacity_bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "over capacity: %d bytes requested, %d of %d bytes in use "
          "(--capacity)",
          charged, allocated_bytes_, options_.capacity_bytes));
    }
    // The hold is counted against the lease's limit from now on, so that
    // concurrent Allocates cannot all pass the check.
    ++(*lease)->info.holds;
    handle = next_handle_++;
    BufferRecord& record = buffers_[handle];
    record.info.handle = handle;
    record.info.name = spec.name;
    record.info.size = spec.size;
    record.info.charged_bytes = charged;
    record.info.backing = spec.backing;
    record.info.owner = clients_.at(client).identity;
    record.info.share = spec.share;
    record.info.created = clock_->Now();
    if (spec.backing == Backing::kPosix) {
      record.info.shm_name = absl::StrCat(options_.shm_prefix, ".", handle);
    }
    if (!spec.name.empty()) names_[spec.name] = handle;
    allocated_bytes_ += charged;
    observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);

    memory_spec.backing = spec.backing;
    memory_spec.size = spec.size;
    memory_spec.shm_name = record.info.shm_name;
    memory_spec.owner_uid = record.info.owner.uid;
    memory_spec.owner_gid = record.info.owner.gid;
    memory_spec.label = absl::StrCat("shmbroker-", handle);
  }

  absl::StatusOr<std::unique_ptr<MemoryObject>> created =
      CreateMemoryObject(memory_spec);
  std::shared_ptr<MemoryObject> memory;  // destroyed after unlock on failure
  if (created.ok()) memory = std::move(*created);

  absl::MutexLock lock(&mu_);
  // The pending record is invisible to Attach/Describe/List and to other
  // clients' releases, so it is still here. Its lease may have ended.
  LeaseRecord* lease = leases_.Find(lease_id);
  if (!created.ok() || lease == nullptr) {
    EraseBufferLocked(handle);
    if (lease != nullptr) --lease->info.holds;
    if (!created.ok()) return created.status();
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", lease_id,
        " ended while allocating: ", LeaseGoneLocked(lease_id).message()));
  }
  --lease->info.holds;  // the reservation becomes a real hold
  AddHoldLocked(*lease, handle);
  BufferRecord& record = buffers_.at(handle);
  record.memory = memory;
  return Grant{
      record.info, AccessMode::kReadWrite, lease_id, std::move(memory), {}};
}

absl::StatusOr<Grant> Registry::Attach(ClientId client, const BufferRef& ref,
                                       AccessRequest request, LeaseId lease) {
  Grant grant;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<LeaseRecord*> under = UsableLeaseLocked(client, lease);
    if (!under.ok()) return under.status();
    absl::StatusOr<Handle> handle = ResolveLocked(ref);
    if (!handle.ok()) return handle.status();
    BufferRecord& record = buffers_.at(*handle);
    const BufferInfo& info = record.info;
    absl::StatusOr<AccessMode> mode = DecideAccess(
        clients_.at(client).identity, info.owner, info.share, request);
    if (!mode.ok()) return mode.status();
    if (absl::Status s = CheckHoldLimitLocked(**under); !s.ok()) return s;
    AddHoldLocked(**under, *handle);
    grant.buffer = info;
    grant.mode = *mode;
    grant.lease = (*under)->info.id;
    grant.memory = record.memory;
  }
  if (grant.mode == AccessMode::kReadOnly) {
    absl::StatusOr<UniqueFd> ro = grant.memory->OpenReadOnly();
    if (!ro.ok()) {
      Release(client, BufferRef::ByHandle(grant.buffer.handle), grant.lease)
          .IgnoreError();
      return ro.status();
    }
    grant.read_only_fd = std::move(*ro);
  }
  return grant;
}

absl::StatusOr<uint32_t> Registry::Release(ClientId client,
                                           const BufferRef& ref,
                                           LeaseId lease) {
  std::vector<std::shared_ptr<MemoryObject>> doomed;
  absl::MutexLock lock(&mu_);
  // `doomed` is declared before `lock`, so reclaimed memory closes unlocked.
  auto it = clients_.find(client);
  if (it == clients_.end()) return ClientClosedError(client);
  const ClientRecord& caller = it->second;
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
  return DropHoldsLocked(*from, *handle, 1, doomed, ReclaimReason::kRelease,
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
    return absl::ResourceExhaustedError(absl::StrFormat(
        "lease %d has %d holds (--max_holds_per_lease=%d)", lease.info.id,
        lease.info.holds, options_.leases.max_holds_per_lease));
  }
  return absl::OkStatus();
}

void Registry::AddHoldLocked(LeaseRecord& lease, Handle handle) {
  ++lease.holds[handle];
  ++lease.info.holds;
  ++buffers_.at(handle).info.holders;
  ++hold_count_;
}

uint32_t Registry::DropHoldsLocked(
    LeaseRecord& lease, Handle handle, uint32_t count,
    std::vector<std::shared_ptr<MemoryObject>>& doomed, ReclaimReason reason,
    CloseResult* result) {
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
  doomed.push_back(std::move(record.memory));
  EraseBufferLocked(handle);
  return 0;
}

void Registry::EraseBufferLocked(Handle handle) {
  auto it = buffers_.find(handle);
  if (it == buffers_.end()) return;
  if (!it->second.info.name.empty()) names_.erase(it->second.info.name);
  allocated_bytes_ -= it->second.info.charged_bytes;
  buffers_.erase(it);
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
}

}  // namespace shmbroker
