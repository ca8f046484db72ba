// What the pooled allocator reports of itself: its usage, per size class
// and per tenant (metrics, Status, the pool's own tests), and the bytes
// its arenas hold resident. Apart from pooled_allocator.cc, which places
// and frees blocks.
#include <algorithm>
#include <memory>
#include <vector>

#include "core/pooled_allocator.h"
#include "core/size_classes.h"

namespace shmbroker {

PooledAllocatorStats PooledAllocator::Stats() const {
  PooledAllocatorStats stats;
  stats.arena_size = options_.arena_size;
  for (int i = 0; i < kNumSizeClasses; ++i) {
    stats.size_classes[i].size = kSizeClasses[i].size;
    stats.size_classes[i].span_pages = kSizeClasses[i].span_pages;
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [tenant, arenas] : by_tenant_) {
    TenantPoolStats& t = stats.tenants.emplace_back();
    t.tenant = tenant;
    t.arenas = arenas.size();
    for (const Arena* arena : arenas) {
      stats.arena_bytes += arena->size();
      if (arena->size() != options_.arena_size) ++stats.large_arenas;
      const ArenaUsage usage = arena->Usage();
      t.in_use_bytes += usage.in_use_bytes;
      stats.live_blocks += usage.live_blocks;
      stats.in_use_bytes += usage.in_use_bytes;
      stats.free_slot_bytes += usage.free_slot_bytes;
      stats.free_page_bytes += usage.free_page_bytes;
      stats.span_tail_bytes += usage.span_tail_bytes;
      stats.largest_free_run_bytes =
          std::max(stats.largest_free_run_bytes, usage.largest_free_run_bytes);
      for (int i = 0; i < kNumSizeClasses; ++i) {
        stats.size_classes[i].spans += usage.size_classes[i].spans;
        stats.size_classes[i].free_slots += usage.size_classes[i].free_slots;
        stats.size_classes[i].live_slots += usage.size_classes[i].live_slots;
      }
    }
  }
  stats.arenas = arenas_.size();
  stats.free_bytes = stats.free_slot_bytes + stats.free_page_bytes;
  stats.scavenged_bytes_total = scavenged_bytes_total_;
  stats.zeroed_bytes_total = zeroed_bytes_total_;
  stats.arenas_created_total = arenas_created_total_;
  stats.arenas_released_total = arenas_released_total_;
  return stats;
}

uint64_t PooledAllocator::ResidentBytes() const {
  std::vector<std::shared_ptr<ArenaSegment>> segments;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, arena] : arenas_) {
      segments.push_back(arena->segment());
    }
  }
  uint64_t bytes = 0;
  for (const auto& segment : segments) bytes += segment->ResidentBytes();
  return bytes;
}

}  // namespace shmbroker
