#include "core/span.h"

#include <bit>
#include <cassert>

namespace shmbroker {

Span::Span(uint32_t start_page, uint32_t pages, uint32_t slot_size,
           uint32_t slots, bool zero)
    : start_page_(start_page),
      pages_(pages),
      slot_size_(slot_size),
      slots_(slots),
      free_slots_(slots) {
  assert(slots >= 1 && slots <= kMaxSlotsPerSpan);
  assert(uint64_t{slots} * slot_size <= pages * kPageSize);
  for (uint32_t i = 0; i < slots; ++i) {
    Set(free_, i);
    if (!zero) Set(dirty_, i);
  }
}

Span Span::ForClass(uint32_t start_page, int size_class, bool zero) {
  const SizeClass& c = kSizeClasses[size_class];
  return Span(start_page, c.span_pages, c.size, c.slots, zero);
}

std::optional<Span::Taken> Span::Allocate() {
  if (free_slots_ == 0) return std::nullopt;
  for (uint32_t w = 0; w < kWords; ++w) {
    if (free_[w] == 0) continue;
    const uint32_t slot = w * 64 + std::countr_zero(free_[w]);
    Clear(free_, slot);
    --free_slots_;
    Taken taken{slot, IsDirty(slot)};
    // From here on the holder may write it.
    Set(dirty_, slot);
    return taken;
  }
  assert(false && "free_slots_ disagrees with the bitmap");
  return std::nullopt;
}

void Span::Free(uint32_t slot) {
  assert(slot < slots_ && !IsFree(slot));
  Set(free_, slot);
  ++free_slots_;
}

bool Span::AnyDirty() const {
  for (uint64_t word : dirty_) {
    if (word != 0) return true;
  }
  return false;
}

std::optional<uint32_t> Span::SlotAt(uint64_t offset) const {
  const uint64_t start = start_page_ * kPageSize;
  if (offset < start) return std::nullopt;
  const uint64_t relative = offset - start;
  if (relative % slot_size_ != 0) return std::nullopt;
  const uint64_t slot = relative / slot_size_;
  if (slot >= slots_) return std::nullopt;
  return static_cast<uint32_t>(slot);
}

}  // namespace shmbroker
