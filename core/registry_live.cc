// Registry: a buffer becoming live (it has its memory) and being erased,
// and everything kept current as buffers come and go so that no query
// walks the table: the live counts (Stats), the usage per owner (Tenants),
// the visibility index (List), the quotas, the capacity and the room
// waiters' generation.
#include "core/registry.h"

namespace shmbroker {

void Registry::SetMemoryLocked(BufferRecord& record,
                               std::shared_ptr<const MemoryObject> memory) {
  record.memory = std::move(memory);
  if (record.live || record.memory == nullptr) return;
  record.live = true;
  visible_.Add(record.info.handle, record.info.owner, record.info.share);
  TenantUsage& tenant = live_by_uid_[record.info.owner.uid];
  tenant.uid = record.info.owner.uid;
  tenant.allocated_bytes += record.info.charged_bytes;
  ++tenant.buffers;
  ++live_.buffers;
  if (record.info.kind == BufferKind::kPooled) ++live_.pooled;
  ++(record.info.backing == Backing::kPosix ? live_.posix : live_.memfd);
}

void Registry::EraseBufferLocked(Handle handle, bool room_back) {
  auto it = buffers_.find(handle);
  if (it == buffers_.end()) return;
  const BufferInfo& info = it->second.info;
  if (it->second.live) {
    visible_.Remove(handle, info.owner, info.share);
    auto tenant = live_by_uid_.find(info.owner.uid);
    tenant->second.allocated_bytes -= info.charged_bytes;
    if (--tenant->second.buffers == 0) live_by_uid_.erase(tenant);
    --live_.buffers;
    if (info.kind == BufferKind::kPooled) --live_.pooled;
    --(info.backing == Backing::kPosix ? live_.posix : live_.memfd);
  }
  if (!info.name.empty()) names_.erase(info.name);
  quotas_.Credit(info.owner.uid, QuotaBytes(info), 1);
  allocated_bytes_ -= info.charged_bytes;
  if (it->second.restored != nullptr && it->second.restored->awaiting) {
    --awaiting_memory_;
  }
  if (info.kind == BufferKind::kPooled && !it->second.outside_pool) {
    // Cheap (a bitmap or a heap entry) and it never calls the budget, so it
    // is done right here: the slot is free the moment the last hold goes.
    // It cannot fail: the block lives as long as the record.
    pool_->Free(info.arena_id, info.offset).IgnoreError();
  } else {
    capacity_.CreditDedicated(info.charged_bytes);
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
