#include "common/byte_size.h"

#include <cstdint>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

using ::testing::HasSubstr;

TEST(ByteSizeTest, ParsesNumbersAndBinaryUnits) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("1B"), 1u);
  EXPECT_EQ(*ParseByteSize("4KiB"), 4096u);
  EXPECT_EQ(*ParseByteSize("4k"), 4096u);
  EXPECT_EQ(*ParseByteSize("4KB"), 4096u);
  EXPECT_EQ(*ParseByteSize("1MiB"), uint64_t{1} << 20);
  EXPECT_EQ(*ParseByteSize(" 2GiB "), uint64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("3TiB"), uint64_t{3} << 40);
}

TEST(ByteSizeTest, RefusesWhatIsNotASizeAndSaysWhy) {
  EXPECT_THAT(ParseByteSize("").status().message(),
              HasSubstr("expected a number"));
  EXPECT_THAT(ParseByteSize("KiB").status().message(),
              HasSubstr("expected a number"));
  EXPECT_THAT(ParseByteSize("-1").status().message(),
              HasSubstr("expected a number"));
  EXPECT_THAT(ParseByteSize("12PiB").status().message(),
              HasSubstr("unknown unit \"PiB\""));
  EXPECT_THAT(ParseByteSize("1.5MiB").status().message(),
              HasSubstr("unknown unit"));
  EXPECT_THAT(ParseByteSize("99999999999999999999").status().message(),
              HasSubstr("too large"));
  // Fits as a number, overflows with its unit.
  EXPECT_THAT(ParseByteSize("17179869184GiB").status().message(),
              HasSubstr("too large"));
  EXPECT_TRUE(ParseByteSize("16777215TiB").ok());
}

TEST(ByteSizeTest, FormatsWithTheLargestExactUnitAndParsesBack) {
  EXPECT_EQ(FormatByteSize(0), "0B");
  EXPECT_EQ(FormatByteSize(1536), "1536B");
  EXPECT_EQ(FormatByteSize(4096), "4KiB");
  EXPECT_EQ(FormatByteSize(uint64_t{64} << 20), "64MiB");
  EXPECT_EQ(FormatByteSize(uint64_t{1} << 50), "1024TiB");
  for (uint64_t v :
       {uint64_t{1}, uint64_t{1023}, uint64_t{1} << 10, uint64_t{3} << 30,
        (uint64_t{1} << 40) + 1, std::numeric_limits<uint64_t>::max()}) {
    EXPECT_EQ(*ParseByteSize(FormatByteSize(v)), v) << FormatByteSize(v);
  }
}

TEST(ByteSizeTest, IsAnAbseilFlagType) {
  ByteSize size;
  std::string error;
  EXPECT_TRUE(AbslParseFlag("8GiB", &size, &error));
  EXPECT_EQ(size.bytes, uint64_t{8} << 30);
  EXPECT_EQ(AbslUnparseFlag(size), "8GiB");
  EXPECT_FALSE(AbslParseFlag("8 apples", &size, &error));
  EXPECT_THAT(error, HasSubstr("unknown unit"));
}

}  // namespace
}  // namespace shmbroker
