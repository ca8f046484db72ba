#include "core/size_classes.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

struct Row {
  uint32_t size;
  uint32_t span_pages;
  uint32_t slots;
};

// The whole table, spelled out: a change to the rules shows up here.
TEST(SizeClassesTest, TableIsAsDocumented) {
  const std::vector<Row> expected = {
      {64, 2, 128},  {128, 2, 64},  {192, 2, 42},  {256, 2, 32},  {320, 2, 25},
      {384, 2, 21},  {448, 2, 18},  {512, 2, 16},  {576, 2, 14},  {640, 2, 12},
      {704, 2, 11},  {768, 2, 10},  {832, 2, 9},   {896, 2, 9},   {960, 2, 8},
      {1024, 2, 8},  {1152, 2, 7},  {1280, 2, 6},  {1408, 3, 8},  {1536, 2, 5},
      {1664, 3, 7},  {1792, 2, 4},  {1920, 2, 4},  {2048, 2, 4},  {2304, 3, 5},
      {2560, 2, 3},  {2816, 3, 4},  {3072, 3, 4},  {3328, 5, 6},  {3584, 2, 2},
      {3840, 2, 2},  {4096, 2, 2},  {4608, 5, 4},  {5120, 4, 3},  {5632, 3, 2},
      {6144, 3, 2},  {6656, 5, 3},  {7168, 2, 1},  {7680, 2, 1},  {8192, 2, 1},
      {9216, 5, 2},  {10240, 5, 2}, {11264, 3, 1}, {12288, 3, 1}, {13312, 7, 2},
      {14336, 4, 1}, {15360, 4, 1}, {16384, 4, 1}, {18432, 5, 1}, {20480, 5, 1},
      {22528, 6, 1}, {24576, 6, 1}, {26624, 7, 1}, {28672, 7, 1}, {30720, 8, 1},
      {32768, 8, 1},
  };
  ASSERT_EQ(kSizeClasses.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(kSizeClasses[i].size, expected[i].size);
    EXPECT_EQ(kSizeClasses[i].span_pages, expected[i].span_pages);
    EXPECT_EQ(kSizeClasses[i].slots, expected[i].slots);
  }
  EXPECT_EQ(kMaxSlotsPerSpan, 128u);
}

TEST(SizeClassesTest, ClassesKeepTheirPromises) {
  uint32_t previous = 0;
  for (const SizeClass& c : kSizeClasses) {
    SCOPED_TRACE(c.size);
    EXPECT_GT(c.size, previous);
    EXPECT_EQ(c.size % kMinSlotSize, 0u) << "slots must not share cache lines";
    // Rounding up to this class from just above the previous one wastes at
    // most 63 bytes up to 512 and at most 1/8 of the slot above.
    const uint32_t worst = c.size - (previous + 1);
    if (c.size <= 512) {
      EXPECT_LE(worst, 63u);
    } else {
      EXPECT_LE(worst * 8, c.size);
    }
    EXPECT_GE(c.span_pages, kMinSpanPages);
    EXPECT_GE(c.slots, 1u);
    EXPECT_EQ(c.slots, c.span_bytes() / c.size);
    EXPECT_LE(c.tail_bytes() * 8, c.span_bytes()) << "tail waste over 1/8";
    EXPECT_LE(c.slots, kMaxSlotsPerSpan);
    previous = c.size;
  }
  EXPECT_EQ(kSizeClasses.front().size, kMinSlotSize);
  EXPECT_EQ(kSizeClasses.back().size, kMaxSmallSize);
}

TEST(SizeClassesTest, RoundsUpToTheSmallestClassThatFits) {
  struct Case {
    uint64_t request;
    uint32_t size;
  };
  const std::vector<Case> cases = {
      {1, 64},        {63, 64},       {64, 64},       {65, 128},
      {100, 128},     {128, 128},     {129, 192},     {500, 512},
      {512, 512},     {513, 576},     {1000, 1024},   {1024, 1024},
      {1025, 1152},   {4000, 4096},   {4096, 4096},   {4097, 4608},
      {5000, 5120},   {8192, 8192},   {8193, 9216},   {16385, 18432},
      {30000, 30720}, {32767, 32768}, {32768, 32768},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request);
    const int index = SizeClassFor(c.request);
    ASSERT_GE(index, 0);
    EXPECT_EQ(kSizeClasses[index].size, c.size);
  }
}

TEST(SizeClassesTest, EveryRequestGetsTheSmallestFittingClass) {
  for (uint64_t size = 1; size <= kMaxSmallSize; ++size) {
    const int index = SizeClassFor(size);
    ASSERT_GE(index, 0) << size;
    ASSERT_GE(kSizeClasses[index].size, size);
    if (index > 0) {
      ASSERT_LT(kSizeClasses[index - 1].size, size);
    }
  }
}

TEST(SizeClassesTest, NoClassForZeroOrAboveTheSmallLimit) {
  EXPECT_EQ(SizeClassFor(0), -1);
  EXPECT_EQ(SizeClassFor(kMaxSmallSize + 1), -1);
  EXPECT_EQ(SizeClassFor(uint64_t{1} << 40), -1);
}

}  // namespace
}  // namespace shmbroker
