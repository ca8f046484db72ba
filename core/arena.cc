#include "core/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace shmbroker {

absl::StatusOr<std::shared_ptr<ArenaSegment>> ArenaSegment::Create(
    uint64_t size, bool prefault, const std::string& label) {
  MemorySpec spec;
  spec.backing = Backing::kMemfd;
  spec.size = size;
  spec.label = label;
  absl::StatusOr<std::unique_ptr<MemoryObject>> memory =
      CreateMemoryObject(spec);
  if (!memory.ok()) return memory.status();
  const int fd = (*memory)->fd();
  // F_SEAL_GROW allows fallocate inside the size.
  if (prefault && ::fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
    return ErrnoToStatus(errno, "fallocate arena");
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | (prefault ? MAP_POPULATE : 0), fd, 0);
  if (base == MAP_FAILED) return ErrnoToStatus(errno, "mmap arena");
  return std::shared_ptr<ArenaSegment>(
      new ArenaSegment(std::move(*memory), static_cast<char*>(base)));
}

ArenaSegment::~ArenaSegment() { ::munmap(base_, size()); }

absl::Status ArenaSegment::Punch(uint64_t offset, uint64_t length) const {
  assert(offset % kPageSize == 0 && length % kPageSize == 0);
  if (::fallocate(memory_->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    return ErrnoToStatus(errno, "punch hole in arena");
  }
  return absl::OkStatus();
}

void ArenaSegment::Zero(uint64_t offset, uint64_t length,
                        uint64_t punch_min_bytes) const {
  if (length >= punch_min_bytes) {
    const uint64_t first = (offset + kPageSize - 1) / kPageSize * kPageSize;
    const uint64_t last = (offset + length) / kPageSize * kPageSize;
    if (last > first && Punch(first, last - first).ok()) {
      std::memset(base_ + offset, 0, first - offset);
      std::memset(base_ + last, 0, offset + length - last);
      return;
    }
  }
  std::memset(base_ + offset, 0, length);
}

uint64_t ArenaSegment::ResidentBytes() const {
  struct stat st;
  if (::fstat(memory_->fd(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

Arena::Arena(uint64_t id, TenantId tenant,
             std::shared_ptr<ArenaSegment> segment, absl::Time now)
    : id_(id),
      tenant_(tenant),
      segment_(std::move(segment)),
      heap_(static_cast<uint32_t>(segment_->size() / kPageSize), now),
      empty_since_(now) {}

std::optional<Placement> Arena::AllocateSlot(int size_class, uint64_t size,
                                             bool zeroed) {
  const SizeClass& c = kSizeClasses[size_class];
  auto& partial = partial_[size_class];
  if (partial.empty()) {
    std::optional<uint32_t> start = heap_.Allocate(c.span_pages);
    if (!start.has_value()) return std::nullopt;
    const bool zero = heap_.CountZero(*start, c.span_pages) == c.span_pages;
    auto span =
        std::make_unique<Span>(Span::ForClass(*start, size_class, zero));
    partial.emplace(*start, span.get());
    extents_.emplace(*start, Extent{c.span_pages, std::move(span)});
    ++class_usage_[size_class].spans;
  }
  Span* span = partial.begin()->second;  // the lowest: keep live data low
  std::optional<Span::Taken> taken = span->Allocate();
  assert(taken.has_value());
  if (span->full()) partial.erase(span->start_page());
  ++class_usage_[size_class].live_slots;
  ++live_blocks_;
  in_use_bytes_ += c.size;
  Placement placement;
  placement.offset = span->SlotOffset(taken->slot);
  placement.charged = c.size;
  if (zeroed && taken->was_dirty) {
    placement.to_zero.push_back({placement.offset, size});
  }
  return placement;
}

std::optional<Placement> Arena::AllocateRun(uint64_t size, bool zeroed) {
  assert(size > 0);
  const uint64_t pages64 = (size + kPageSize - 1) / kPageSize;
  if (pages64 > heap_.pages()) return std::nullopt;
  const auto pages = static_cast<uint32_t>(pages64);
  std::optional<uint32_t> start = heap_.Allocate(pages);
  // Cached empty spans may be what splits the free pages; give them up.
  if (!start.has_value() && ReleaseIdleSpans(absl::InfiniteFuture()) > 0) {
    start = heap_.Allocate(pages);
  }
  if (!start.has_value()) return std::nullopt;
  extents_.emplace(*start, Extent{pages, nullptr});
  ++live_blocks_;
  in_use_bytes_ += pages * kPageSize;
  Placement placement;
  placement.offset = *start * kPageSize;
  placement.charged = pages * kPageSize;
  if (zeroed) {
    for (const PageHeap::Run& dirty : heap_.DirtyRuns(*start, pages)) {
      const uint64_t begin = dirty.start * kPageSize;
      const uint64_t end =
          std::min(dirty.end() * kPageSize, placement.offset + size);
      placement.to_zero.push_back({begin, end - begin});
    }
  }
  return placement;
}

absl::StatusOr<uint64_t> Arena::Free(uint64_t offset, absl::Time now) {
  auto not_found = [&] {
    return absl::NotFoundError(absl::StrFormat(
        "no live pooled block at offset %d of arena %d", offset, id_));
  };
  const uint64_t page = offset / kPageSize;
  if (page >= heap_.pages()) return not_found();
  auto it = extents_.upper_bound(static_cast<uint32_t>(page));
  if (it == extents_.begin()) return not_found();
  --it;
  const uint32_t start = it->first;
  Extent& extent = it->second;
  if (page >= start + extent.pages) return not_found();

  if (extent.span == nullptr) {  // a page run
    if (offset != start * kPageSize) return not_found();
    const uint64_t charged = extent.pages * kPageSize;
    heap_.Free(start, extent.pages, now, /*untouched=*/false);
    extents_.erase(it);
    OnBlockFreed(charged, now);
    return charged;
  }

  Span& span = *extent.span;
  std::optional<uint32_t> slot = span.SlotAt(offset);
  if (!slot.has_value() || span.IsFree(*slot)) return not_found();
  const int size_class = SizeClassFor(span.slot_size());
  auto& partial = partial_[size_class];
  const bool was_full = span.full();
  span.Free(*slot);
  --class_usage_[size_class].live_slots;
  if (was_full) partial.emplace(start, &span);
  if (span.empty()) {
    if (partial.size() > 1) {
      ReleaseSpan(it, now);
    } else {
      span.set_empty_since(now);
    }
  }
  OnBlockFreed(kSizeClasses[size_class].size, now);
  return uint64_t{kSizeClasses[size_class].size};
}

void Arena::OnBlockFreed(uint64_t charged, absl::Time now) {
  in_use_bytes_ -= charged;
  if (--live_blocks_ == 0) empty_since_ = now;
}

void Arena::ReleaseSpan(ExtentMap::iterator extent, absl::Time free_since) {
  const Span& span = *extent->second.span;
  const int size_class = SizeClassFor(span.slot_size());
  partial_[size_class].erase(span.start_page());
  --class_usage_[size_class].spans;
  heap_.Free(span.start_page(), span.pages(), free_since,
             /*untouched=*/!span.AnyDirty());
  extents_.erase(extent);
}

int Arena::ReleaseIdleSpans(absl::Time cutoff) {
  // Collect first: releasing edits partial_ and extents_ (and erasing from
  // a btree invalidates its iterators).
  std::vector<uint32_t> idle;
  for (const auto& partial : partial_) {
    for (const auto& [start, span] : partial) {
      if (span->empty() && span->empty_since() <= cutoff) {
        idle.push_back(start);
      }
    }
  }
  for (uint32_t start : idle) {
    auto extent = extents_.find(start);
    ReleaseSpan(extent, extent->second.span->empty_since());
  }
  return static_cast<int>(idle.size());
}

std::vector<PageHeap::Run> Arena::TakeScavengeable(absl::Time cutoff,
                                                   uint32_t max_pages) {
  std::vector<PageHeap::Run> runs = heap_.TakeScavengeable(cutoff, max_pages);
  for (const PageHeap::Run& run : runs) scavenging_pages_ += run.pages;
  return runs;
}

void Arena::ReturnScavenged(PageHeap::Run run, bool zero) {
  heap_.ReturnScavenged(run, zero);
  scavenging_pages_ -= run.pages;
}

ArenaUsage Arena::Usage() const {
  ArenaUsage usage;
  usage.in_use_bytes = in_use_bytes_;
  usage.live_blocks = live_blocks_;
  usage.free_page_bytes =
      (uint64_t{heap_.free_pages()} + scavenging_pages_) * kPageSize;
  usage.largest_free_run_bytes = heap_.largest_free_run() * kPageSize;
  for (int i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass& shape = kSizeClasses[i];
    SizeClassUsage& c = usage.size_classes[i];
    c.spans = class_usage_[i].spans;
    c.live_slots = class_usage_[i].live_slots;
    c.free_slots = c.spans * shape.slots - c.live_slots;
    usage.free_slot_bytes += c.free_slots * shape.size;
    usage.span_tail_bytes += c.spans * shape.tail_bytes();
  }
  return usage;
}

}  // namespace shmbroker
