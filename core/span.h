// Span: a run of pages carved into equal slots of one size class.
//
// Two bitmaps of 64-bit words, one bit per slot: `free` (set = the slot is
// free) and `dirty` (set = the slot may hold data, so it must be zeroed before
// a caller who asked for zeroed memory gets it). Allocation takes the lowest
// free slot with a count-trailing-zeros scan, word by word, as Go's
// mspan.nextFreeIndex does; keeping live slots low keeps the rest of the span
// empty and the span likely to empty out and return to the page heap.
//
// A slot becomes dirty the moment it is handed out (the holder may write it)
// and stays dirty when freed; only a span carved from known-zero pages starts
// with clean slots. Not thread-safe: the arena's owner serializes access.
#ifndef SHMBROKER_CORE_SPAN_H_
#define SHMBROKER_CORE_SPAN_H_

#include <array>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "core/size_classes.h"

namespace shmbroker {

class Span {
 public:
  // `slots` slots of `slot_size` bytes starting at page `start_page` of the
  // arena; `zero` says whether those pages were known to be zero. Requires
  // 1 <= slots <= kMaxSlotsPerSpan and slots * slot_size <= pages * kPageSize.
  Span(uint32_t start_page, uint32_t pages, uint32_t slot_size, uint32_t slots,
       bool zero);
  // A span of size class `size_class` (an index into kSizeClasses).
  static Span ForClass(uint32_t start_page, int size_class, bool zero);

  uint32_t start_page() const { return start_page_; }
  uint32_t pages() const { return pages_; }
  uint32_t slot_size() const { return slot_size_; }
  uint32_t slots() const { return slots_; }
  uint32_t free_slots() const { return free_slots_; }
  bool full() const { return free_slots_ == 0; }
  bool empty() const { return free_slots_ == slots_; }

  struct Taken {
    uint32_t slot = 0;
    bool was_dirty = false;  // the caller must zero it if asked for zeroes
  };
  // Takes the lowest free slot, or nullopt when the span is full.
  std::optional<Taken> Allocate();
  // Returns slot `slot`, which must be in use. It becomes dirty.
  void Free(uint32_t slot);

  bool IsFree(uint32_t slot) const { return Test(free_, slot); }
  bool IsDirty(uint32_t slot) const { return Test(dirty_, slot); }
  // True if any slot may hold data: the span's pages are then dirty when
  // they go back to the page heap.
  bool AnyDirty() const;

  // Byte offset of `slot` from the start of the arena.
  uint64_t SlotOffset(uint32_t slot) const {
    return start_page_ * kPageSize + uint64_t{slot} * slot_size_;
  }
  // The slot that starts exactly at arena offset `offset`, or nullopt.
  std::optional<uint32_t> SlotAt(uint64_t offset) const;

  // When the span last became empty; meaningful only while empty().
  absl::Time empty_since() const { return empty_since_; }
  void set_empty_since(absl::Time t) { empty_since_ = t; }

 private:
  static constexpr uint32_t kWords = (kMaxSlotsPerSpan + 63) / 64;
  using Bitmap = std::array<uint64_t, kWords>;

  static bool Test(const Bitmap& bits, uint32_t i) {
    return (bits[i / 64] >> (i % 64)) & 1;
  }
  static void Set(Bitmap& bits, uint32_t i) {
    bits[i / 64] |= uint64_t{1} << (i % 64);
  }
  static void Clear(Bitmap& bits, uint32_t i) {
    bits[i / 64] &= ~(uint64_t{1} << (i % 64));
  }

  uint32_t start_page_;
  uint32_t pages_;
  uint32_t slot_size_;
  uint32_t slots_;
  uint32_t free_slots_;
  Bitmap free_{};  // bits at or past slots_ stay clear
  Bitmap dirty_{};
  absl::Time empty_since_ = absl::InfinitePast();
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_SPAN_H_
