// Registry: taking a previous daemon's books back after a restart.
//
// Restore puts the booked buffers, leases and holds back as they were, with
// two differences. A buffer has no memory until someone presents it (a
// POSIX one is reopened by name at once): it is invisible to Attach,
// Describe, List and Watch meanwhile, and a waiting Attach wakes when it is
// presented. A lease belongs to no connection until its holder resumes it,
// and its deadline is pushed back by the grace so the holder has time to
// come back. Presenting checks the fd is the very object booked (device,
// inode, size) before anything else is done with it, and that the caller's
// uid held the buffer; Resume checks the lease is the caller's uid's. When
// the grace ends, buffers nobody presented are dropped (kNotResumed);
// leases nobody resumed expire by their deadline as any lease does.
//
// A pooled buffer comes back in its old arena, outside the pool: the arena
// is adopted from the first buffer presented in it, shared by the others,
// charged to the capacity by its buffers' bytes, and closed when the last
// goes. New arenas get ids above the old ones, so no client confuses them.
#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/buffer_name.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

constexpr size_t kProblemsKept = 8;

void Problem(RestoreResult* result, std::string text) {
  ++result->skipped;
  if (result->problems.size() < kProblemsKept) {
    result->problems.push_back(std::move(text));
  }
}

}  // namespace

RestoreResult Registry::Restore(const Books& books, absl::Duration grace) {
  RestoreResult result;
  // Reopen POSIX names first, without the lock (syscalls). Only names of
  // this daemon's prefix: the books are never trusted to point elsewhere.
  absl::flat_hash_map<Handle, std::shared_ptr<const MemoryObject>> reopened;
  const std::string prefix = options_.shm_prefix + ".";
  for (const auto& [handle, booked] : books.buffers) {
    const BufferInfo& info = booked.info;
    if (info.backing != Backing::kPosix) continue;
    if (!info.shm_name.starts_with(prefix) ||
        info.shm_name.find('/', 1) != std::string::npos) {
      continue;  // refused below
    }
    absl::StatusOr<std::unique_ptr<MemoryObject>> object = AdoptMemoryObject(
        Backing::kPosix, UniqueFd(), info.shm_name, booked.memory, info.size);
    if (object.ok()) reopened[handle] = std::move(*object);
  }

  Deferred deferred(this);  // frees what turns out unheld, unlocked
  Locked lock(this);
  const absl::Time now = clock_->Now();
  watch_hub_.ContinueFrom(books.revision);
  next_handle_ = std::max(next_handle_, books.last_handle + 1);
  next_lease_ = std::max(next_lease_, books.last_lease + 1);
  uint64_t last_arena = books.last_arena;

  for (const auto& [id, booked] : books.leases) {
    if (id == 0 || leases_.Find(id) != nullptr) {
      Problem(&result, absl::StrFormat("lease %d: a bad or repeated id", id));
      continue;
    }
    next_lease_ = std::max(next_lease_, id + 1);
    LeaseInfo info;
    info.id = id;
    info.owner = booked.owner;
    info.detached = booked.detached;
    info.granted_ttl = ClampTtl(options_.leases, booked.ttl)
                           .value_or(options_.leases.default_ttl);
    info.granted = now;
    info.deadline = std::max(booked.deadline, now) + grace;
    leases_.Add(info);
    if (info.detached) ++detached_per_uid_[info.owner.uid];
    ++result.leases;
  }

  for (const auto& [handle, booked] : books.buffers) {
    BufferInfo info = booked.info;
    const bool posix = info.backing == Backing::kPosix;
    std::string bad;
    if (handle == 0 || info.handle != handle || info.size == 0) {
      bad = "a bad handle or size";
    } else if (!info.name.empty() && (!ValidateBufferName(info.name).ok() ||
                                      names_.contains(info.name))) {
      bad = absl::StrFormat("a bad or repeated name \"%s\"", info.name);
    } else if (posix && !reopened.contains(handle)) {
      bad = absl::StrFormat(
          "its shm object %s is gone or is not the one "
          "booked",
          info.shm_name);
    } else if (info.kind == BufferKind::kPooled &&
               info.arena_id > PooledAllocator::kMaxArenaId) {
      bad = absl::StrFormat("a bad arena id %d", info.arena_id);
    } else if (!capacity_.ChargeDedicated(info.charged_bytes).ok()) {
      bad = "it no longer fits in the capacity";
    }
    if (!bad.empty()) {
      Problem(&result, absl::StrFormat("buffer %d: %s", handle, bad));
      continue;
    }
    next_handle_ = std::max(next_handle_, handle + 1);
    info.holders = 0;
    info.created = now;
    BufferRecord& record = buffers_[handle];
    record.Assign(info);
    record.MutableExtras().restored.emplace().expected = booked.memory;
    record.outside_pool = record.kind == BufferKind::kPooled;
    if (record.outside_pool) {
      last_arena = std::max<uint64_t>(last_arena, record.arena_id);
    }
    if (posix) {
      SetMemoryLocked(handle, record, std::move(reopened[handle]));
      record.restored()->awaiting = false;
      ++result.posix_reopened;
    } else {
      ++awaiting_memory_;
    }
    if (!record.name().empty()) names_[record.name()] = handle;
    allocated_bytes_ += record.charged_bytes;
    quotas_.Charge(record.owner.uid, QuotaBytes(record), 1);
  }

  for (const auto& [key, count] : books.holds) {
    const auto [lease_id, handle] = key;
    LeaseRecord* lease = leases_.Find(lease_id);
    auto buffer = buffers_.find(handle);
    if (lease == nullptr || buffer == buffers_.end() || count == 0) continue;
    lease->holds[handle] += count;
    lease->info.holds += count;
    buffer->second.holders += count;
    hold_count_ += count;
    result.holds += count;
  }
  // A buffer nobody holds would never be reclaimed.
  std::vector<Handle> unheld;
  for (const auto& [handle, record] : buffers_) {
    if (record.holders == 0) unheld.push_back(handle);
  }
  for (Handle handle : unheld) {
    deferred.Free(TakeMemoryLocked(buffers_.at(handle)));
    EraseBufferLocked(handle);
  }
  for (const auto& [handle, record] : buffers_) {
    ++result.buffers;
    result.bytes += record.charged_bytes;
  }
  if (last_arena > PooledAllocator::kMaxArenaId) {
    // Booked by no daemon that ever ran: new arenas would have no ids left.
    Problem(&result, absl::StrFormat("the last arena id %d is out of range",
                                     last_arena));
    last_arena = PooledAllocator::kMaxArenaId;
  }
  if (pool_ != nullptr) pool_->ReserveArenaIds(last_arena);
  booked_last_arena_ = std::max(booked_last_arena_, last_arena);
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
  return result;
}

absl::StatusOr<uint64_t> Registry::Present(ConnectionId client, Handle handle,
                                           LeaseId lease, UniqueFd fd) {
  Deferred deferred(this);  // wakes waiters for the buffer, unlocked
  Locked lock(this);
  auto caller = connections_.find(client);
  if (caller == connections_.end()) return ConnectionClosedError(client);
  auto it = buffers_.find(handle);
  if (it == buffers_.end() || it->second.restored() == nullptr) {
    return absl::NotFoundError(absl::StrFormat(
        "buffer %d is not in the books of the restarted daemon (it was "
        "released, or the books were lost)",
        handle));
  }
  BufferRecord& record = it->second;
  absl::Status why;
  uint64_t adopted = 0;
  const LeaseRecord* under = leases_.Find(lease);
  if (under == nullptr ||
      under->info.owner.uid != caller->second.identity.uid ||
      !under->holds.contains(handle)) {
    why = absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: no lease %d of uid %d holds buffer %d in the "
        "restarted daemon's books",
        lease, caller->second.identity.uid, handle));
  } else if (!record.restored()->awaiting) {
    // Live already (presented by another holder, or a POSIX name): the fd
    // must still be that object, or the caller is told so.
    absl::StatusOr<MemoryIdentity> identity = IdentityOf(fd.get());
    if (!identity.ok() || *identity != MemoryLocked(record)->identity()) {
      why = absl::FailedPreconditionError(absl::StrFormat(
          "the fd presented for buffer %d is not its memory", handle));
    }
  } else {
    why = AdoptLocked(handle, record, std::move(fd), deferred);
    if (why.ok()) adopted = record.charged_bytes;
  }
  if (!why.ok() && record.restored()->awaiting) {
    record.restored()->refused = why;
  }
  if (!why.ok()) return why;
  return adopted;
}

absl::Status Registry::AdoptLocked(Handle handle, BufferRecord& record,
                                   UniqueFd fd, Deferred& deferred) {
  if (record.backing == Backing::kPosix) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "buffer %d's shm object %s is gone: a POSIX buffer comes back only "
        "by its name",
        handle, record.shm_name()));
  }
  const bool pooled = record.kind == BufferKind::kPooled;
  // The arena as adopted for another of its buffers, if one was.
  std::shared_ptr<const MemoryObject> arena;
  if (auto it = arena_memory_.find(record.arena_id);
      pooled && it != arena_memory_.end()) {
    arena = it->second.memory;
  }
  std::shared_ptr<const MemoryObject> memory;
  if (arena != nullptr) {
    absl::StatusOr<MemoryIdentity> identity = IdentityOf(fd.get());
    if (identity.ok() && *identity == arena->identity()) memory = arena;
  }
  if (memory == nullptr) {
    absl::StatusOr<std::unique_ptr<MemoryObject>> adopted = AdoptMemoryObject(
        Backing::kMemfd, std::move(fd), "", record.restored()->expected,
        pooled ? 0 : record.size);
    if (!adopted.ok()) {
      return absl::Status(adopted.status().code(),
                          absl::StrFormat("the fd presented for buffer %d: %s",
                                          handle, adopted.status().message()));
    }
    memory = std::move(*adopted);
    if (pooled && record.offset + record.size > memory->size()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the arena presented for buffer %d is smaller than its books say",
          handle));
    }
    if (arena != nullptr) {
      // Books that give one arena id two objects: the first one adopted
      // stays that arena's.
      return absl::FailedPreconditionError(absl::StrFormat(
          "the books give buffer %d's arena %d another object than its "
          "other buffers'",
          handle, record.arena_id));
    }
  }
  SetMemoryLocked(handle, record, std::move(memory));
  record.restored()->awaiting = false;
  record.restored()->refused = absl::OkStatus();
  --awaiting_memory_;
  WakeWaitersLocked(handle, record, deferred);
  return absl::OkStatus();
}

ResumeResult Registry::Resume(ConnectionId client,
                              const std::vector<LeaseId>& leases,
                              const std::vector<Handle>& handles) {
  ResumeResult result;
  Locked lock(this);
  auto caller = connections_.find(client);
  for (LeaseId id : leases) {
    if (caller == connections_.end()) {
      result.leases.emplace_back(id, ConnectionClosedError(client));
      continue;
    }
    LeaseRecord* lease = leases_.Find(id);
    if (lease == nullptr) {
      absl::Status gone = ended_.contains(id)
                              ? LeaseGoneLocked(id)
                              : absl::NotFoundError(absl::StrFormat(
                                    "lease %d is not in the books of the "
                                    "restarted daemon (it ended, or the "
                                    "books were lost)",
                                    id));
      result.leases.emplace_back(id, gone);
      continue;
    }
    LeaseInfo& info = lease->info;
    if (info.owner.uid != caller->second.identity.uid) {
      result.leases.emplace_back(
          id, absl::PermissionDeniedError(absl::StrFormat(
                  "permission denied: lease %d belongs to uid %d", id,
                  info.owner.uid)));
      continue;
    }
    if (info.client != 0 && info.client != client) {
      result.leases.emplace_back(
          id, absl::FailedPreconditionError(absl::StrFormat(
                  "lease %d belongs to client connection %d already", id,
                  info.client)));
      continue;
    }
    info.client = client;
    caller->second.leases.insert(id);
    BookLeaseLocked(info);
    result.leases.emplace_back(id, info);
  }
  for (Handle handle : handles) {
    auto it = buffers_.find(handle);
    absl::Status status;
    if (it == buffers_.end() || !it->second.has_memory) {
      const registry_internal::RestoredBuffer* restored =
          it == buffers_.end() ? nullptr : it->second.restored();
      // The refusal as it was (e.g. PERMISSION_DENIED for another uid's
      // buffer), not a code of its own.
      status = restored != nullptr && !restored->refused.ok()
                   ? restored->refused
                   : absl::NotFoundError(absl::StrFormat(
                         "buffer %d is not live in the restarted daemon (not "
                         "in its books, or its memory was not presented)",
                         handle));
    }
    result.buffers.emplace_back(handle, status);
  }
  return result;
}

CloseResult Registry::EndRestoreGrace() {
  CloseResult result;
  Deferred deferred(this);
  Locked lock(this);
  absl::flat_hash_set<Handle> awaiting;
  for (const auto& [handle, record] : buffers_) {
    if (record.restored() != nullptr && record.restored()->awaiting) {
      awaiting.insert(handle);
    }
  }
  if (awaiting.empty()) return result;
  std::vector<std::pair<LeaseId, std::pair<Handle, uint32_t>>> drops;
  for (const auto& [id, lease] : leases_.all()) {
    for (const auto& [handle, count] : lease.holds) {
      if (awaiting.contains(handle)) drops.push_back({id, {handle, count}});
    }
  }
  for (const auto& [id, hold] : drops) {
    DropHoldsLocked(*leases_.Find(id), hold.first, hold.second, deferred,
                    ReclaimReason::kNotResumed, &result);
  }
  return result;
}

uint64_t Registry::AwaitingMemory() const {
  Locked lock(this);
  return awaiting_memory_;
}

}  // namespace shmbroker
