// Registry: a buffer becoming live (it has its memory) and being erased,
// and everything kept current as buffers come and go so that no query
// walks the table: the live counts (Stats), the usage per owner (Tenants),
// the visibility index (List), the quotas, the capacity and the room
// waiters' generation.
#include "core/registry.h"

namespace shmbroker {

void Registry::SetMemoryLocked(Handle handle, BufferRecord& record,
                               std::shared_ptr<const MemoryObject> memory) {
  if (memory == nullptr || record.has_memory) return;
  record.has_memory = true;
  if (record.kind == BufferKind::kPooled) {
    ArenaMemory& arena = arena_memory_[record.arena_id];
    if (arena.memory == nullptr) arena.memory = std::move(memory);
    ++arena.buffers;
  } else {
    record.MutableExtras().memory = std::move(memory);
  }
  if (record.live) return;
  record.live = true;
  visible_.Add(handle, record.owner, record.share());
  TenantUsage& tenant = live_by_uid_[record.owner.uid];
  tenant.uid = record.owner.uid;
  tenant.allocated_bytes += record.charged_bytes;
  ++tenant.buffers;
  ++live_.buffers;
  if (record.kind == BufferKind::kPooled) ++live_.pooled;
  ++(record.backing == Backing::kPosix ? live_.posix : live_.memfd);
}

std::shared_ptr<const MemoryObject> Registry::MemoryLocked(
    const BufferRecord& record) const {
  if (!record.has_memory) return nullptr;
  if (record.kind == BufferKind::kPooled) {
    return arena_memory_.at(record.arena_id).memory;
  }
  return record.extras->memory;
}

std::shared_ptr<const MemoryObject> Registry::TakeMemoryLocked(
    BufferRecord& record) {
  if (!record.has_memory) return nullptr;
  record.has_memory = false;
  if (record.kind != BufferKind::kPooled) {
    return std::move(record.extras->memory);
  }
  auto arena = arena_memory_.find(record.arena_id);
  if (--arena->second.buffers > 0) return nullptr;
  std::shared_ptr<const MemoryObject> last = std::move(arena->second.memory);
  arena_memory_.erase(arena);
  return last;
}

void Registry::EraseBufferLocked(Handle handle, bool room_back) {
  auto it = buffers_.find(handle);
  if (it == buffers_.end()) return;
  BufferRecord& record = it->second;
  if (record.live) {
    visible_.Remove(handle, record.owner, record.share());
    auto tenant = live_by_uid_.find(record.owner.uid);
    tenant->second.allocated_bytes -= record.charged_bytes;
    if (--tenant->second.buffers == 0) live_by_uid_.erase(tenant);
    --live_.buffers;
    if (record.kind == BufferKind::kPooled) --live_.pooled;
    --(record.backing == Backing::kPosix ? live_.posix : live_.memfd);
  }
  if (!record.name().empty()) names_.erase(record.name());
  quotas_.Credit(record.owner.uid, QuotaBytes(record), 1);
  allocated_bytes_ -= record.charged_bytes;
  if (record.restored() != nullptr && record.restored()->awaiting) {
    --awaiting_memory_;
  }
  // Reclaims take the memory first, to free it unlocked (Deferred); a
  // record that never had memory has none to let go of.
  TakeMemoryLocked(record);
  if (record.kind == BufferKind::kPooled && !record.outside_pool) {
    // Cheap (a bitmap or a heap entry) and it never calls the budget, so it
    // is done right here: the slot is free the moment the last hold goes.
    // It cannot fail: the block lives as long as the record.
    pool_->Free(record.arena_id, record.offset).IgnoreError();
  } else {
    capacity_.CreditDedicated(record.charged_bytes);
  }
  buffers_.erase(it);
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
  // Room is back: the Deferred of whoever erased it serves the waiters.
  if (room_back) {
    room_generation_.fetch_add(1);
    MarkRoomDirtyLocked();
  }
}

}  // namespace shmbroker
