// A fixture for PooledAllocator tests: a 1 MiB-arena allocator on a fake
// clock with a small capacity, and helpers that fail the test on errors.
// Header-only, test code only.
#ifndef SHMBROKER_TESTS_CORE_POOLED_ALLOCATOR_FIXTURE_H_
#define SHMBROKER_TESTS_CORE_POOLED_ALLOCATOR_FIXTURE_H_

#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "core/capacity.h"
#include "core/pooled_allocator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

// A namespace of their own: the fixture shares a test binary (and, in a
// unity build, a translation unit) with registry_fixture.h's.
namespace shmbroker::testing::pooled {

inline constexpr uint64_t kArena = uint64_t{1}
                                   << 20;  // 256 pages, fast to test
inline constexpr TenantId kAliceUid = 1000;
inline constexpr TenantId kBobUid = 1001;
inline const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

inline ino_t Inode(const PooledBlock& block) {
  struct stat st;
  EXPECT_EQ(::fstat(block.arena_memory->fd(), &st), 0);
  return st.st_ino;
}

inline uint64_t Blocks(const PooledBlock& block) {
  struct stat st;
  EXPECT_EQ(::fstat(block.arena_memory->fd(), &st), 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

inline bool AllBytesAre(const char* data, uint64_t length, char value) {
  for (uint64_t i = 0; i < length; ++i) {
    if (data[i] != value) return false;
  }
  return true;
}

class PooledAllocatorTest : public ::testing::Test {
 protected:
  explicit PooledAllocatorTest(uint64_t capacity = 4 * kArena)
      : capacity_(capacity), clock_(kStart) {}

  void SetUp() override { Make(Options()); }

  static PooledAllocatorOptions Options() {
    PooledAllocatorOptions options;
    options.arena_size = kArena;
    return options;
  }
  void Make(PooledAllocatorOptions options) {
    allocator_.reset();
    absl::StatusOr<std::unique_ptr<PooledAllocator>> made =
        PooledAllocator::Create(options, &capacity_, &clock_);
    ASSERT_THAT(made, IsOk());
    allocator_ = std::move(*made);
  }

  PooledBlock MustAllocate(TenantId tenant, uint64_t size,
                           bool zeroed = false) {
    absl::StatusOr<PooledBlock> block =
        allocator_->Allocate(tenant, size, zeroed);
    EXPECT_THAT(block, IsOk()) << size;
    return block.ok() ? *block : PooledBlock{};
  }
  void MustFree(const PooledBlock& block) {
    EXPECT_THAT(allocator_->Free(block.arena_id, block.offset), IsOk());
  }
  // A client's view of a block's arena.
  static std::unique_ptr<Mapping> Map(const PooledBlock& block) {
    auto mapping = std::make_unique<Mapping>(block.arena_memory->fd(),
                                             block.arena_memory->size(),
                                             PROT_READ | PROT_WRITE);
    EXPECT_TRUE(mapping->ok());
    return mapping;
  }

  Capacity capacity_;
  ManualClock clock_;
  std::unique_ptr<PooledAllocator> allocator_;
};

}  // namespace shmbroker::testing::pooled

#endif  // SHMBROKER_TESTS_CORE_POOLED_ALLOCATOR_FIXTURE_H_
