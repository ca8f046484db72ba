#include "core/pooled_allocator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/limit.h"
#include "core/size_classes.h"

namespace shmbroker {
namespace {

constexpr uint64_t kMinArenaSize = uint64_t{1} << 20;
// So that page indexes fit in 32 bits.
constexpr uint64_t kMaxArenaSize = uint64_t{1} << 40;

}  // namespace

absl::Status ValidatePooledAllocatorOptions(
    const PooledAllocatorOptions& options) {
  if (options.arena_size % kPageSize != 0 ||
      options.arena_size < kMinArenaSize ||
      options.arena_size > kMaxArenaSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "arena size %d: must be a multiple of %d bytes from %d to %d",
        options.arena_size, kPageSize, kMinArenaSize, kMaxArenaSize));
  }
  if (options.pooled_max_size > options.arena_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pooled max size %d: must not exceed the arena size %d",
                        options.pooled_max_size, options.arena_size));
  }
  if (options.large_max_size > kMaxArenaSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("large max size %d: must not exceed %d",
                        options.large_max_size, kMaxArenaSize));
  }
  if (options.scavenge_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("scavenge delay must not be negative");
  }
  if (options.scavenge_max_pages == 0) {
    return absl::InvalidArgumentError(
        "scavenge max pages must be at least 1 (Scavenge would do nothing "
        "and always ask to be called again)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PooledAllocator>> PooledAllocator::Create(
    PooledAllocatorOptions options, CapacityBudget* budget,
    const Clock* clock) {
  if (absl::Status s = ValidatePooledAllocatorOptions(options); !s.ok()) {
    return s;
  }
  if (options.pooled_max_size == 0) {
    options.pooled_max_size = options.arena_size / 4;
  }
  if (budget == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "a pooled allocator needs a capacity budget and a clock");
  }
  return std::unique_ptr<PooledAllocator>(
      new PooledAllocator(options, budget, clock));
}

PooledAllocator::PooledAllocator(PooledAllocatorOptions options,
                                 CapacityBudget* budget, const Clock* clock)
    : options_(options), budget_(budget), clock_(clock) {}

PooledAllocator::~PooledAllocator() {
  std::vector<std::unique_ptr<Arena>> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, arena] : arenas_) all.push_back(std::move(arena));
    arenas_.clear();
    by_tenant_.clear();
  }
  for (const auto& arena : all) budget_->Return(arena->tenant(), arena->size());
}

std::optional<Placement> PooledAllocator::PlaceIn(Arena& arena, uint64_t size,
                                                  bool zeroed) const {
  if (size <= kMaxSmallSize) {
    return arena.AllocateSlot(SizeClassFor(size), size, zeroed);
  }
  return arena.AllocateRun(size, zeroed);
}

std::optional<PooledAllocator::Found> PooledAllocator::PlaceLocked(
    TenantId tenant, uint64_t size, bool zeroed) {
  if (size > options_.pooled_max_size) {
    return PlaceLargeLocked(tenant, size, zeroed);
  }
  auto it = by_tenant_.find(tenant);
  if (it == by_tenant_.end()) return std::nullopt;
  // Oldest first, so that live data packs into few arenas and the newer
  // ones empty out and get retired. Only arenas of the regular size: a
  // large arena is kept whole for the next large block.
  for (Arena* arena : it->second) {
    if (arena->size() != options_.arena_size) continue;
    std::optional<Placement> placement = PlaceIn(*arena, size, zeroed);
    if (placement.has_value()) return Found{arena, std::move(*placement)};
  }
  return std::nullopt;
}

std::optional<PooledAllocator::Found> PooledAllocator::PlaceLargeLocked(
    TenantId tenant, uint64_t size, bool zeroed) {
  auto it = by_tenant_.find(tenant);
  if (it == by_tenant_.end()) return std::nullopt;
  // The smallest unused arena that holds it and wastes at most an eighth:
  // a batch of a slightly different shape reuses the warm pages, a much
  // smaller one does not hold a much bigger arena.
  const uint64_t need = ArenaSizeFor(size);
  Arena* best = nullptr;
  for (Arena* arena : it->second) {
    if (arena->Unused() && arena->size() >= need &&
        arena->size() - need <= arena->size() / 8 &&
        (best == nullptr || arena->size() < best->size())) {
      best = arena;
    }
  }
  if (best == nullptr) return std::nullopt;
  std::optional<Placement> placement = best->AllocateRun(size, zeroed);
  if (!placement.has_value()) return std::nullopt;
  return Found{best, std::move(*placement)};
}

uint64_t PooledAllocator::ArenaSizeFor(uint64_t size) const {
  if (size <= options_.pooled_max_size) return options_.arena_size;
  return (size + kPageSize - 1) / kPageSize * kPageSize;
}

absl::StatusOr<std::unique_ptr<Arena>> PooledAllocator::NewArena(
    TenantId tenant, uint64_t size) {
  const uint64_t arena_size = ArenaSizeFor(size);
  absl::Status reserved = budget_->TryReserve(tenant, arena_size);
  while (!reserved.ok()) {
    // Make room by retiring the unused arena that has been empty longest:
    // another tenant's, or one of this tenant's that could not take the
    // block (a large arena of another size).
    std::unique_ptr<Arena> victim;
    {
      absl::MutexLock lock(&mu_);
      Arena* oldest = nullptr;
      for (const auto& [id, arena] : arenas_) {
        if (arena->Unused() && (oldest == nullptr ||
                                arena->empty_since() < oldest->empty_since())) {
          oldest = arena.get();
        }
      }
      if (oldest != nullptr) victim = RemoveLocked(oldest->id());
    }
    if (victim == nullptr) {
      return WithContext(
          reserved, absl::StrFormat("pooled allocation of %d bytes for uid "
                                    "%d needs a new %d-byte arena: ",
                                    size, tenant, arena_size));
    }
    Retire(std::move(victim));
    reserved = budget_->TryReserve(tenant, arena_size);
  }

  const uint64_t id = next_arena_id_.fetch_add(1);
  if (id > kMaxArenaId) {
    // Only books that claim ids no daemon lives to use get here
    // (ReserveArenaIds): the Registry keeps an arena id in 32 bits.
    budget_->Return(tenant, arena_size);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "pooled allocation of %d bytes: arena ids are used up (the last "
        "one is %d); dedicated buffers still work",
        size, kMaxArenaId));
  }
  absl::StatusOr<std::shared_ptr<ArenaSegment>> segment = ArenaSegment::Create(
      arena_size, options_.prefault,
      absl::StrFormat("shmbroker-arena-%d-uid-%d", id, tenant));
  if (!segment.ok()) {
    budget_->Return(tenant, arena_size);
    return segment.status();
  }
  return std::make_unique<Arena>(id, tenant, std::move(*segment),
                                 clock_->Now());
}

void PooledAllocator::AddLocked(std::unique_ptr<Arena> arena) {
  by_tenant_[arena->tenant()].push_back(arena.get());
  ++arenas_created_total_;
  const uint64_t id = arena->id();
  arenas_.emplace(id, std::move(arena));
}

std::unique_ptr<Arena> PooledAllocator::RemoveLocked(uint64_t arena_id) {
  auto it = arenas_.find(arena_id);
  std::unique_ptr<Arena> arena = std::move(it->second);
  arenas_.erase(it);
  auto tenant = by_tenant_.find(arena->tenant());
  std::erase(tenant->second, arena.get());
  if (tenant->second.empty()) by_tenant_.erase(tenant);
  ++arenas_released_total_;
  return arena;
}

void PooledAllocator::Retire(std::unique_ptr<Arena> arena) {
  const TenantId tenant = arena->tenant();
  const uint64_t bytes = arena->size();
  // Clients cache their mapping of an arena, so closing the memfd alone
  // would leave its pages alive in them while the capacity no longer
  // counts them. Punching first frees the pages; a client that touches the
  // stale mapping gets fresh zero pages, never anyone's data.
  arena->segment()->Punch(0, bytes).IgnoreError();
  arena.reset();
  budget_->Return(tenant, bytes);
}

uint64_t PooledAllocator::ReleaseUnused() {
  std::vector<std::unique_ptr<Arena>> unused;
  {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> ids;
    for (const auto& [id, arena] : arenas_) {
      if (arena->Unused()) ids.push_back(id);
    }
    for (uint64_t id : ids) unused.push_back(RemoveLocked(id));
  }
  uint64_t bytes = 0;
  for (std::unique_ptr<Arena>& arena : unused) {
    bytes += arena->size();
    Retire(std::move(arena));
  }
  return bytes;
}

PooledBlock PooledAllocator::BlockLocked(const Found& found, uint64_t size) {
  PooledBlock block;
  block.arena_id = found.arena->id();
  block.offset = found.placement.offset;
  block.size = size;
  block.charged = found.placement.charged;
  block.arena_memory = found.arena->segment()->memory();
  for (const ZeroRange& range : found.placement.to_zero) {
    zeroed_bytes_total_ += range.length;
  }
  return block;
}

absl::StatusOr<PooledBlock> PooledAllocator::Allocate(TenantId tenant,
                                                      uint64_t size,
                                                      bool zeroed) {
  if (!ShouldPool(size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pooled allocation of %d bytes: pooled buffers hold 1 to %d bytes "
        "(the pooled max size, or the large max size above it); larger "
        "ones need a dedicated segment",
        size, max_size()));
  }
  std::optional<Found> found;
  PooledBlock block;
  std::shared_ptr<ArenaSegment> segment;
  {
    absl::MutexLock lock(&mu_);
    found = PlaceLocked(tenant, size, zeroed);
    if (found.has_value()) {
      block = BlockLocked(*found, size);
      segment = found->arena->segment();
    }
  }
  if (!found.has_value()) {
    // Create the memfd without the lock: that is a few syscalls, and with
    // prefault it allocates every page of the arena.
    absl::StatusOr<std::unique_ptr<Arena>> fresh = NewArena(tenant, size);
    if (!fresh.ok()) return fresh.status();
    std::unique_ptr<Arena> spare;
    {
      absl::MutexLock lock(&mu_);
      // Another thread may have made room meanwhile.
      found = PlaceLocked(tenant, size, zeroed);
      if (found.has_value()) {
        spare = std::move(*fresh);
      } else {
        Arena& arena = **fresh;
        AddLocked(std::move(*fresh));
        std::optional<Placement> placement = PlaceIn(arena, size, zeroed);
        if (!placement.has_value()) {
          // Cannot happen: an empty arena holds anything up to the pooled
          // max size, and a large arena is sized to its block.
          return absl::InternalError(
              absl::StrFormat("a new arena has no room for %d bytes", size));
        }
        found = Found{&arena, std::move(*placement)};
      }
      block = BlockLocked(*found, size);
      segment = found->arena->segment();
    }
    if (spare != nullptr) Retire(std::move(spare));
  }
  // The block is the caller's alone, and its arena cannot be retired while
  // the block is live: zero without the lock.
  for (const ZeroRange& range : found->placement.to_zero) {
    segment->Zero(range.offset, range.length, options_.zero_punch_min_bytes);
  }
  return block;
}

absl::Status PooledAllocator::Free(uint64_t arena_id, uint64_t offset) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = arenas_.find(arena_id);
  if (it == arenas_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("no pooled arena %d (offset %d)", arena_id, offset));
  }
  return it->second->Free(offset, now).status();
}

ScavengeResult PooledAllocator::Scavenge(absl::Time now) {
  const absl::Time cutoff = now - options_.scavenge_delay;
  struct Job {
    Arena* arena;
    std::shared_ptr<ArenaSegment> segment;
    PageHeap::Run run;
    bool punched = false;
  };
  ScavengeResult result;
  std::vector<Job> jobs;
  std::vector<std::unique_ptr<Arena>> retired;
  {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> unused;
    for (const auto& [id, arena] : arenas_) {
      result.spans_released += arena->ReleaseIdleSpans(cutoff);
      if (arena->Unused() && arena->empty_since() <= cutoff) {
        unused.push_back(id);
      }
    }
    for (uint64_t id : unused) retired.push_back(RemoveLocked(id));
    uint32_t budget = options_.scavenge_max_pages;
    for (const auto& [id, arena] : arenas_) {
      if (budget == 0) break;
      for (const PageHeap::Run& run : arena->TakeScavengeable(cutoff, budget)) {
        jobs.push_back({arena.get(), arena->segment(), run});
        budget -= run.pages;
      }
    }
    result.more = budget == 0;
  }
  // The taken pages are out of their heaps, so nobody can allocate them,
  // and their arenas cannot be retired: punch without the lock.
  for (Job& job : jobs) {
    job.punched =
        job.segment->Punch(job.run.start * kPageSize, job.run.pages * kPageSize)
            .ok();
  }
  {
    absl::MutexLock lock(&mu_);
    for (const Job& job : jobs) {
      job.arena->ReturnScavenged(job.run, job.punched);
      if (job.punched) result.scavenged_bytes += job.run.pages * kPageSize;
    }
    scavenged_bytes_total_ += result.scavenged_bytes;
  }
  result.arenas_released = retired.size();
  for (std::unique_ptr<Arena>& arena : retired) Retire(std::move(arena));
  return result;
}

}  // namespace shmbroker
