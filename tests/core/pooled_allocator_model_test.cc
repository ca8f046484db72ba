// PooledAllocator against a simple model: a seeded random walk of
// allocations, frees and scavenges by a few tenants, checked after every
// step (no overlap, tenants apart, alignment, stats that add up) and with the
// real memory (every live block keeps its own bytes, zeroed blocks read
// zero), then drained to nothing (no leak).
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/capacity.h"
#include "core/pooled_allocator.h"
#include "core/size_classes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::Mapping;

constexpr uint64_t kArena = uint64_t{1} << 20;
constexpr uint64_t kCapacity = 6 * kArena;
constexpr int kTenants = 3;
constexpr int kSteps = 3000;

struct LiveBlock {
  PooledBlock block;
  TenantId tenant = 0;
  char fill = 0;
};

class PooledAllocatorModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  PooledAllocatorModelTest()
      : capacity_(kCapacity), clock_(absl::FromUnixSeconds(1'700'000'000)) {}

  void SetUp() override {
    PooledAllocatorOptions options;
    options.arena_size = kArena;
    options.scavenge_delay = absl::Seconds(30);
    options.scavenge_max_pages = 64;
    options.zero_punch_min_bytes = 64 * 1024;  // exercise both ways
    absl::StatusOr<std::unique_ptr<PooledAllocator>> made =
        PooledAllocator::Create(options, &capacity_, &clock_);
    ASSERT_THAT(made, IsOk());
    allocator_ = std::move(*made);
  }

  char* View(const PooledBlock& block) {
    auto it = views_.find(block.arena_id);
    if (it == views_.end()) {
      it = views_
               .emplace(block.arena_id, std::make_unique<Mapping>(
                                            block.arena_memory->fd(), kArena,
                                            PROT_READ | PROT_WRITE))
               .first;
      EXPECT_TRUE(it->second->ok());
    }
    return it->second->data() + block.offset;
  }

  // A size mix: mostly small, some medium, a few at the threshold.
  uint64_t RandomSize(std::mt19937& rng) {
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2:
        return 1 + rng() % 512;
      case 3:
      case 4:
        return 1 + rng() % kMaxSmallSize;
      case 5:
      case 6:
        return kMaxSmallSize + 1 + rng() % (128 * 1024);
      default:
        return allocator_->options().pooled_max_size - rng() % 4096;
    }
  }

  void CheckBlock(const PooledBlock& b, TenantId tenant, uint64_t size) {
    EXPECT_EQ(b.size, size);
    EXPECT_LE(b.offset + b.charged, kArena);
    if (size <= kMaxSmallSize) {
      EXPECT_EQ(b.charged, kSizeClasses[SizeClassFor(size)].size);
      EXPECT_EQ(b.offset % kMinSlotSize, 0u);
    } else {
      EXPECT_EQ(b.charged, (size + kPageSize - 1) / kPageSize * kPageSize);
      EXPECT_EQ(b.offset % kPageSize, 0u);
    }
    // Tenants apart: an arena serves one tenant for its whole life.
    auto [owner, inserted] = arena_tenant_.emplace(b.arena_id, tenant);
    EXPECT_EQ(owner->second, tenant) << "arena " << b.arena_id;
    // No overlap with a live block of the same arena.
    auto& extents = extents_[b.arena_id];
    auto next = extents.lower_bound(b.offset);
    if (next != extents.end()) {
      EXPECT_GE(next->first, b.offset + b.charged) << "overlaps the next";
    }
    if (next != extents.begin()) {
      auto prev = std::prev(next);
      EXPECT_LE(prev->first + prev->second, b.offset) << "overlaps the prev";
    }
    extents.emplace(b.offset, b.charged);
  }

  void CheckStats(const std::map<uint64_t, LiveBlock>& live) {
    const PooledAllocatorStats stats = allocator_->Stats();
    uint64_t charged = 0;
    std::vector<uint64_t> slots(kNumSizeClasses, 0);
    std::map<TenantId, uint64_t> by_tenant;
    for (const auto& [key, l] : live) {
      charged += l.block.charged;
      by_tenant[l.tenant] += l.block.charged;
      if (l.block.size <= kMaxSmallSize) ++slots[SizeClassFor(l.block.size)];
    }
    ASSERT_EQ(stats.live_blocks, live.size());
    ASSERT_EQ(stats.in_use_bytes, charged);
    // Every byte of every arena is in use, free, or a span's tail.
    ASSERT_EQ(stats.arena_bytes,
              stats.in_use_bytes + stats.free_bytes + stats.span_tail_bytes);
    ASSERT_EQ(stats.arena_bytes, stats.arenas * kArena);
    ASSERT_EQ(capacity_.committed(), stats.arena_bytes);
    ASSERT_LE(stats.largest_free_run_bytes, stats.free_page_bytes);
    for (int c = 0; c < kNumSizeClasses; ++c) {
      ASSERT_EQ(stats.size_classes[c].live_slots, slots[c]) << c;
    }
    uint64_t arenas = 0;
    for (const TenantPoolStats& t : stats.tenants) {
      arenas += t.arenas;
      ASSERT_EQ(t.in_use_bytes, by_tenant[t.tenant]) << t.tenant;
    }
    ASSERT_EQ(arenas, stats.arenas);
  }

  Capacity capacity_;
  ManualClock clock_;
  std::unique_ptr<PooledAllocator> allocator_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Mapping>> views_;
  absl::flat_hash_map<uint64_t, TenantId> arena_tenant_;
  // Per arena: live offset -> charged bytes.
  absl::flat_hash_map<uint64_t, std::map<uint64_t, uint64_t>> extents_;
};

TEST_P(PooledAllocatorModelTest, RandomWalkMatchesTheModel) {
  std::mt19937 rng(GetParam());
  std::map<uint64_t, LiveBlock> live;  // by a running key
  uint64_t next_key = 0;
  uint64_t refusals = 0;
  char next_fill = 1;

  for (int step = 0; step < kSteps; ++step) {
    const uint32_t action = rng() % 100;
    if (action < 55 || live.empty()) {
      const TenantId tenant = 1000 + rng() % kTenants;
      const uint64_t size = RandomSize(rng);
      const bool zeroed = rng() % 3 == 0;
      const uint64_t arenas_before = allocator_->Stats().arenas;
      absl::StatusOr<PooledBlock> block =
          allocator_->Allocate(tenant, size, zeroed);
      if (!block.ok()) {
        // Only for want of capacity, and only when it is all taken.
        ASSERT_EQ(block.status().code(), absl::StatusCode::kResourceExhausted)
            << block.status();
        ASSERT_EQ(arenas_before * kArena, kCapacity) << block.status();
        ++refusals;
        continue;
      }
      CheckBlock(*block, tenant, size);
      char* data = View(*block);
      if (zeroed) {
        for (uint64_t i = 0; i < size; ++i) {
          ASSERT_EQ(data[i], 0) << "byte " << i << " of a zeroed block";
        }
      }
      // Its own bytes, to be found intact at free.
      const char fill = next_fill;
      next_fill = static_cast<char>(next_fill % 120 + 1);
      std::memset(data, fill, size);
      live.emplace(next_key++, LiveBlock{*block, tenant, fill});
    } else if (action < 90) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      const PooledBlock& b = it->second.block;
      const char* data = View(b);
      for (uint64_t i = 0; i < b.size; ++i) {
        ASSERT_EQ(data[i], it->second.fill)
            << "byte " << i << " of a live block changed";
      }
      ASSERT_THAT(allocator_->Free(b.arena_id, b.offset), IsOk());
      extents_[b.arena_id].erase(b.offset);
      live.erase(it);
    } else {
      clock_.Advance(absl::Seconds(rng() % 40));
      allocator_->Scavenge(clock_.Now());
      // The scavenger never touches live memory.
      for (const auto& [key, l] : live) {
        const char* data = View(l.block);
        ASSERT_EQ(data[0], l.fill);
        ASSERT_EQ(data[l.block.size - 1], l.fill);
      }
    }
    CheckStats(live);
    if (HasFatalFailure()) return;
  }
  // The walk must have reached both ends: a full capacity and reuse.
  const PooledAllocatorStats mid = allocator_->Stats();
  EXPECT_GT(refusals + mid.arenas_released_total, 0u);
  EXPECT_GT(mid.zeroed_bytes_total, 0u);
  EXPECT_GT(mid.scavenged_bytes_total, 0u);

  // Drain: free everything, let it idle, scavenge until done.
  for (const auto& [key, l] : live) {
    ASSERT_THAT(allocator_->Free(l.block.arena_id, l.block.offset), IsOk());
  }
  live.clear();
  clock_.Advance(absl::Minutes(1));
  for (int i = 0; i < 1000; ++i) {
    if (!allocator_->Scavenge(clock_.Now()).more) break;
  }
  const PooledAllocatorStats end = allocator_->Stats();
  EXPECT_EQ(end.live_blocks, 0u);
  EXPECT_EQ(end.arenas, 0u);
  EXPECT_EQ(capacity_.committed(), 0u);
  EXPECT_EQ(end.arenas_created_total, end.arenas_released_total);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PooledAllocatorModelTest,
                         ::testing::Values(1u, 7u, 42u, 1234u, 98765u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat("seed", info.param);
                         });

}  // namespace
}  // namespace shmbroker
