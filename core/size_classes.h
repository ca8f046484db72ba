// Size classes: the fixed set of slot sizes that small pooled buffers are
// rounded up to, and how many pages a span of each class takes.
//
// The table is computed at compile time from two rules, and spelled out in
// full in tests/core/size_classes_test.cc:
//  - sizes are multiples of 64 bytes (a cache line, so two buffers never share
//    one and slots are 64-byte aligned), in steps of 64 up to 512 and then
//    eight steps per doubling up to 32 KiB: rounding a request up wastes at
//    most 63 bytes below 512 and at most 12.5% above, as in Go and tcmalloc;
//  - a span is the fewest pages (at least two, 8 KiB, Go's page size) that
//    hold a slot with at most 1/8 of the span left over at its tail.
// Header-only and constexpr: lookups are a table index on the hot path.
#ifndef SHMBROKER_CORE_SIZE_CLASSES_H_
#define SHMBROKER_CORE_SIZE_CLASSES_H_

#include <array>
#include <cstdint>

namespace shmbroker {

// The allocator's page: the unit of the page heap, of page-run offsets and of
// scavenging. Linux's base page on x86-64 and most arm64 kernels. On a kernel
// with larger pages everything stays correct (clients align mapping offsets
// down; punching part of a page zeroes it), only less memory is returned.
inline constexpr uint64_t kPageSize = 4096;

inline constexpr uint64_t kMinSlotSize = 64;
// Requests above this are page runs, not slots.
inline constexpr uint64_t kMaxSmallSize = 32 * 1024;
inline constexpr uint32_t kMinSpanPages = 2;

struct SizeClass {
  uint32_t size = 0;        // slot bytes
  uint32_t span_pages = 0;  // pages per span
  uint32_t slots = 0;       // slots per span

  constexpr uint64_t span_bytes() const { return span_pages * kPageSize; }
  // Bytes at the end of a span that no slot covers.
  constexpr uint64_t tail_bytes() const {
    return span_bytes() - uint64_t{slots} * size;
  }
};

namespace size_classes_internal {

inline constexpr int kCount = 8 + 6 * 8;  // 64..512, then 8 per doubling

constexpr std::array<SizeClass, kCount> MakeTable() {
  std::array<SizeClass, kCount> table{};
  int n = 0;
  for (uint32_t size = 64; size <= 512; size += 64) table[n++].size = size;
  for (uint32_t base = 512; base < kMaxSmallSize; base *= 2) {
    for (uint32_t step = 1; step <= 8; ++step) {
      table[n++].size = base + step * (base / 8);
    }
  }
  for (SizeClass& c : table) {
    uint32_t pages = kMinSpanPages;
    while (pages * kPageSize < c.size) ++pages;
    while ((pages * kPageSize) % c.size > pages * kPageSize / 8) ++pages;
    c.span_pages = pages;
    c.slots = static_cast<uint32_t>(pages * kPageSize / c.size);
  }
  return table;
}

// lookup[(size + 63) / 64] is the class index for 1 <= size <= 32 KiB.
constexpr std::array<uint8_t, kMaxSmallSize / kMinSlotSize + 1> MakeLookup(
    const std::array<SizeClass, kCount>& table) {
  std::array<uint8_t, kMaxSmallSize / kMinSlotSize + 1> lookup{};
  int index = 0;
  for (uint64_t units = 1; units < lookup.size(); ++units) {
    while (table[index].size < units * kMinSlotSize) ++index;
    lookup[units] = static_cast<uint8_t>(index);
  }
  return lookup;
}

}  // namespace size_classes_internal

inline constexpr int kNumSizeClasses = size_classes_internal::kCount;
inline constexpr std::array<SizeClass, kNumSizeClasses> kSizeClasses =
    size_classes_internal::MakeTable();

// The most slots any span holds (a span's free bitmap is sized for it).
inline constexpr uint32_t kMaxSlotsPerSpan = [] {
  uint32_t most = 0;
  for (const SizeClass& c : kSizeClasses)
    most = c.slots > most ? c.slots : most;
  return most;
}();

// The index of the smallest class that holds `size` bytes, or -1 when `size`
// is 0 or above kMaxSmallSize.
inline int SizeClassFor(uint64_t size) {
  static constexpr auto kLookup =
      size_classes_internal::MakeLookup(kSizeClasses);
  if (size == 0 || size > kMaxSmallSize) return -1;
  return kLookup[(size + kMinSlotSize - 1) / kMinSlotSize];
}

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_SIZE_CLASSES_H_
