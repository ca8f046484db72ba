// Registry: a buffer's life. Allocate reserves the buffer under the mutex,
// then creates a dedicated memory object or takes a pooled block without
// it, and finishes under the mutex again. Holds are added and dropped here;
// Release drops one, and the last one erases the buffer and frees its
// memory (a pooled slot at once, a dedicated memory object after unlock).
#include <unistd.h>

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/buffer_name.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

uint64_t PageSize() {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return kPage;
}

}  // namespace

absl::StatusOr<Grant> Registry::Allocate(ConnectionId client,
                                         const AllocateSpec& spec) {
  absl::StatusOr<Grant> grant = DoAllocate(client, spec);
  observer_->OnAllocate(grant.status().code());
  return grant;
}

absl::StatusOr<bool> Registry::WantsPool(const AllocateSpec& spec) const {
  const bool eligible = spec.backing == Backing::kMemfd && spec.share.empty();
  if (spec.kind != BufferKind::kPooled) {
    return !spec.kind.has_value() && pool_ != nullptr && eligible &&
           pool_->PoolsByDefault(spec.size);
  }
  if (pool_ == nullptr) {
    return LimitError(absl::StatusCode::kFailedPrecondition, Limit::kPoolingOff,
                      "pooled buffers are off on this daemon");
  }
  if (!eligible) {
    // An arena's fd exposes the whole arena, so only buffers that nobody
    // but the owner's uid (and root) may attach can share one.
    return absl::InvalidArgumentError(
        "a pooled buffer must be an owner-only memfd buffer: no share rules, "
        "no posix backing (its arena's fd would expose the owner's other "
        "buffers)");
  }
  if (!pool_->ShouldPool(spec.size)) {
    const bool large =
        pool_->options().large_max_size > pool_->options().pooled_max_size;
    return LimitError(
        absl::StatusCode::kInvalidArgument,
        large ? Limit::kPooledLargeMaxSize : Limit::kPooledMaxSize,
        absl::StrFormat("bad size for a pooled buffer: %d bytes (pooled "
                        "buffers hold 1 to %d bytes)",
                        spec.size, pool_->max_size()));
  }
  return true;
}

absl::Status Registry::ChargeDedicatedLocked(uint64_t charged) {
  if (absl::Status s = capacity_.ChargeDedicated(charged); !s.ok()) return s;
  allocated_bytes_ += charged;
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
  return absl::OkStatus();
}

absl::StatusOr<Grant> Registry::DoAllocate(ConnectionId client,
                                           const AllocateSpec& spec) {
  if (spec.size == 0) {
    return absl::InvalidArgumentError("bad size: 0 (must be at least 1 byte)");
  }
  // The request's own faults (INVALID_ARGUMENT, FAILED_PRECONDITION) come
  // before any limit: a bad request is bad whatever the daemon's state.
  if (!spec.name.empty()) {
    if (absl::Status s = ValidateBufferName(spec.name); !s.ok()) return s;
  }
  if (absl::Status s = ValidateShareRules(spec.share); !s.ok()) return s;
  absl::StatusOr<bool> pooled = WantsPool(spec);
  if (!pooled.ok()) return pooled.status();
  if (spec.size > options_.capacity_bytes) {
    return LimitReached(
        Limit::kCapacity,
        absl::StrFormat(
            "over capacity: %d bytes requested, capacity is %d bytes",
            spec.size, options_.capacity_bytes));
  }
  const uint64_t pages = (spec.size + PageSize() - 1) / PageSize() * PageSize();

  // Reserve the handle, name and (dedicated) bytes, then create the memory
  // unlocked. A pooled buffer's bytes are charged when it has its block.
  const uint64_t dedicated_pages = *pooled ? 0 : pages;
  bool over_capacity = false;
  absl::StatusOr<Pending> pending;
  {
    Locked lock(this);
    pending = ReserveLocked(client, spec, dedicated_pages, &over_capacity);
  }
  if (over_capacity && pool_ != nullptr && pool_->ReleaseUnused() > 0) {
    // Arenas nobody used were holding the capacity; they are gone now.
    Locked lock(this);
    pending = ReserveLocked(client, spec, dedicated_pages, &over_capacity);
  }
  if (!pending.ok()) return pending.status();
  const Handle handle = pending->handle;
  const LeaseId lease_id = pending->lease;

  std::optional<PooledBlock> block;
  absl::Status failed;
  if (*pooled) {
    absl::StatusOr<PooledBlock> placed =
        pool_->Allocate(pending->memory.owner_uid, spec.size, spec.zeroed);
    if (placed.ok()) {
      block = std::move(*placed);
    } else if (spec.kind.has_value() ||
               placed.status().code() != absl::StatusCode::kResourceExhausted) {
      failed = placed.status();
    } else {
      // No arena fits: the daemon's choice falls back to a dedicated
      // segment, which needs only its own pages.
      Locked lock(this);
      failed = ChargeDedicatedLocked(pages);
      if (failed.ok()) buffers_.at(handle).charged_bytes = pages;
    }
  }
  std::shared_ptr<const MemoryObject> memory;  // freed unlocked on failure
  if (block.has_value()) {
    memory = block->arena_memory;
  } else if (failed.ok()) {
    absl::StatusOr<std::unique_ptr<MemoryObject>> created =
        CreateMemoryObject(pending->memory);
    if (created.ok() && options_.max_segment_fd > 0 &&
        static_cast<uint64_t>((*created)->fd()) >= options_.max_segment_fd) {
      failed = LimitReached(
          Limit::kFdReserve,
          absl::StrFormat("out of file descriptors: the segment would be fd "
                          "%d, and fds from %d up are kept for client "
                          "connections (release buffers, or raise the "
                          "daemon's RLIMIT_NOFILE)",
                          (*created)->fd(), options_.max_segment_fd));
    } else if (created.ok()) {
      memory = std::move(*created);
    } else {
      failed = created.status();
    }
  }

  Deferred deferred(this);  // wakes waiters for the new buffer, unlocked
  Locked lock(this);
  if (!failed.ok()) {
    // The pending record is invisible to Attach/Describe/List and to other
    // clients' releases, so it is still here.
    EraseBufferLocked(handle, /*room_back=*/false);
    if (LeaseRecord* lease = leases_.Find(lease_id)) --lease->info.holds;
    return failed;
  }
  return FinishAllocateLocked(handle, lease_id, memory,
                              block.has_value() ? &*block : nullptr, deferred);
}

absl::StatusOr<Registry::Pending> Registry::ReserveLocked(
    ConnectionId client, const AllocateSpec& spec, uint64_t dedicated_pages,
    bool* over_capacity) {
  *over_capacity = false;
  absl::StatusOr<LeaseRecord*> lease = UsableLeaseLocked(client, spec.lease);
  if (!lease.ok()) return lease.status();
  if (absl::Status s = CheckHoldLimitLocked(**lease); !s.ok()) return s;
  // A uid's own quota before the daemon's limits (docs/api.md, "Errors"):
  // a tenant at its quota is told so whatever the others use.
  const Identity owner = connections_.at(client).identity;
  const uint64_t quota_bytes = (spec.size + PageSize() - 1) / PageSize() *
                               PageSize();  // QuotaBytes() while pending
  if (absl::Status s = quotas_.CheckBuffers(owner.uid); !s.ok()) return s;
  if (absl::Status s = quotas_.CheckBytes(owner.uid, quota_bytes); !s.ok()) {
    return s;
  }
  if (buffers_.size() >= options_.max_buffers) {
    return LimitReached(Limit::kMaxBuffers,
                        absl::StrFormat("too many buffers: %d live, the most "
                                        "allowed",
                                        buffers_.size()));
  }
  if (!spec.name.empty()) {
    if (auto taken = names_.find(spec.name); taken != names_.end()) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "name \"%s\" is taken (buffer %d)", spec.name, taken->second));
    }
  }
  if (dedicated_pages > 0) {
    if (absl::Status s = ChargeDedicatedLocked(dedicated_pages); !s.ok()) {
      *over_capacity = true;
      return s;
    }
  }
  // The hold is counted against the lease's limit, and the buffer against
  // its owner's quota, from now on, so that concurrent Allocates cannot all
  // pass the checks.
  ++(*lease)->info.holds;
  quotas_.Charge(owner.uid, quota_bytes, 1);
  Pending pending;
  pending.lease = (*lease)->info.id;
  pending.handle = next_handle_++;
  BufferRecord& record = buffers_[pending.handle];
  record.size = spec.size;
  record.charged_bytes = dedicated_pages;
  record.backing = spec.backing;
  record.owner = owner;
  record.created_unix_nanos = absl::ToUnixNanos(clock_->Now());
  if (!spec.name.empty() || !spec.share.empty()) {
    record.MutableExtras().name = spec.name;
    record.MutableExtras().share = spec.share;
  }
  if (!spec.name.empty()) names_[spec.name] = pending.handle;
  pending.memory.backing = spec.backing;
  pending.memory.size = spec.size;
  if (spec.backing == Backing::kPosix) {
    // The object adds a random suffix (BufferInfo.shm_name is set from it):
    // a predictable name could be created first by anyone.
    pending.memory.shm_name =
        absl::StrCat(options_.shm_prefix, ".", pending.handle);
    pending.memory.random_suffix = true;
  }
  // A dedicated memfd may be sealed later (Registry::Seal).
  pending.memory.sealable = true;
  pending.memory.owner_uid = owner.uid;
  pending.memory.owner_gid = owner.gid;
  pending.memory.label = absl::StrCat("shmbroker-", pending.handle);
  return pending;
}

absl::StatusOr<Grant> Registry::FinishAllocateLocked(
    Handle handle, LeaseId lease_id,
    const std::shared_ptr<const MemoryObject>& memory, const PooledBlock* block,
    Deferred& deferred) {
  BufferRecord& record = buffers_.at(handle);
  if (block != nullptr) {
    record.kind = BufferKind::kPooled;
    record.arena_id = static_cast<uint32_t>(block->arena_id);  // kMaxArenaId
    record.offset = block->offset;
    // The quota was charged the size in pages; now the slot is known.
    quotas_.Credit(record.owner.uid, QuotaBytes(record), 0);
    record.charged_bytes = block->charged;
    quotas_.Charge(record.owner.uid, QuotaBytes(record), 0);
    allocated_bytes_ += block->charged;
    observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
  }
  LeaseRecord* lease = leases_.Find(lease_id);
  if (lease == nullptr) {
    // Its lease ended while the memory was being made.
    EraseBufferLocked(handle, /*room_back=*/false);
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", lease_id,
        " ended while allocating: ", LeaseGoneLocked(lease_id).message()));
  }
  SetMemoryLocked(handle, record, memory);
  if (!memory->shm_name().empty()) {
    record.MutableExtras().shm_name = memory->shm_name();
  }
  PublishLocked(WatchEventType::kCreated, record.Info(handle), deferred);
  if (block != nullptr) BookArenaLocked(block->arena_id);
  BookBufferLocked(handle, record);  // before its first hold, as replay expects
  --lease->info.holds;               // the reservation becomes a real hold
  AddHoldLocked(*lease, handle);
  WakeWaitersLocked(handle, record, deferred);
  return Grant{
      record.Info(handle), AccessMode::kReadWrite, lease_id, memory, {}};
}

absl::Status Registry::EnablePooling(PooledAllocatorOptions options) {
  if (pool_ != nullptr) {
    return absl::FailedPreconditionError("pooling is already enabled");
  }
  absl::StatusOr<std::unique_ptr<PooledAllocator>> pool =
      PooledAllocator::Create(options, &capacity_, clock_);
  if (!pool.ok()) return pool.status();
  pool_ = std::move(*pool);
  return absl::OkStatus();
}

ScavengeResult Registry::Scavenge() {
  if (pool_ == nullptr) return {};
  ScavengeResult result = pool_->Scavenge(clock_->Now());
  if (result.arenas_released > 0) {
    // Their capacity is free for dedicated buffers.
    room_generation_.fetch_add(1);
    room_dirty_ = true;
    ServeRoomWaiters();
  }
  return result;
}

absl::StatusOr<uint32_t> Registry::Release(ConnectionId client,
                                           const BufferRef& ref,
                                           LeaseId lease) {
  Deferred deferred(this);
  Locked lock(this);
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
  ++buffers_.at(handle).holders;
  ++hold_count_;
  BookHoldsLocked(lease, handle);
}

uint32_t Registry::DropHoldsLocked(LeaseRecord& lease, Handle handle,
                                   uint32_t count, Deferred& deferred,
                                   ReclaimReason reason, CloseResult* result) {
  observer_->OnHoldsDropped(reason, count);
  auto held = lease.holds.find(handle);
  held->second -= count;
  if (held->second == 0) lease.holds.erase(held);
  BookHoldsLocked(lease, handle);
  lease.info.holds -= count;
  hold_count_ -= count;
  BufferRecord& record = buffers_.at(handle);
  record.holders -= count;
  if (result != nullptr) result->holds_dropped += count;
  if (record.holders > 0) return record.holders;
  if (result != nullptr) {
    ++result->buffers_reclaimed;
    result->bytes_reclaimed += record.charged_bytes;
  }
  observer_->OnReclaim(reason, record.charged_bytes);
  PublishLocked(WatchEventType::kReleased, record.Info(handle), deferred,
                reason);
  BookBufferGoneLocked(handle);
  deferred.Free(TakeMemoryLocked(record));
  EraseBufferLocked(handle);
  return 0;
}

uint64_t Registry::QuotaBytes(const BufferRecord& record) {
  if (record.charged_bytes > 0) return record.charged_bytes;
  return (record.size + PageSize() - 1) / PageSize() * PageSize();
}

}  // namespace shmbroker
