#include "core/buffer_name.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(BufferNameTest, AcceptsNamesOfAllowedCharacters) {
  for (const char* name : {"a", "Z", "0", "_lead", "data.v1_final-2", "x.",
                           "x-", "ABCxyz0189", "a..b"}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(ValidateBufferName(name), IsOk());
  }
}

TEST(BufferNameTest, AcceptsMaximumLength) {
  ASSERT_EQ(kMaxBufferNameLength, 128u);
  EXPECT_THAT(ValidateBufferName(std::string(128, 'n')), IsOk());
}

TEST(BufferNameTest, RejectsOneOverMaximumLengthSayingHowLong) {
  EXPECT_THAT(ValidateBufferName(std::string(129, 'n')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("129"), HasSubstr("128"))));
}

TEST(BufferNameTest, RejectsEmpty) {
  EXPECT_THAT(ValidateBufferName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(BufferNameTest, RejectsLeadingDotOrDash) {
  // A leading '.' allows "." and ".."; a leading '-' looks like an option.
  for (const char* name : {".", "..", ".hidden", "-", "-rf"}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(ValidateBufferName(name),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("must not start with")));
  }
}

TEST(BufferNameTest, RejectsSlashNamingTheByteAndPosition) {
  EXPECT_THAT(ValidateBufferName("a/b"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 47 at position 1")));
  EXPECT_THAT(
      ValidateBufferName("x/../../etc/passwd"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 47")));
}

TEST(BufferNameTest, RejectsSpaceAndControlCharacters) {
  EXPECT_THAT(ValidateBufferName("a b"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 32 at position 1")));
  EXPECT_THAT(ValidateBufferName("ab\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 10 at position 2")));
}

TEST(BufferNameTest, RejectsNulInTheMiddle) {
  // A C-string check would see only "ab" and accept it.
  const std::string name("ab\0cd", 5);
  EXPECT_THAT(ValidateBufferName(name),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 0 at position 2")));
}

TEST(BufferNameTest, RejectsNonAsciiPrintingTheByteUnsigned) {
  // "café" in UTF-8: 0xC3 0xA9. A signed char would print as -61.
  EXPECT_THAT(ValidateBufferName("caf\xc3\xa9"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 195 at position 3")));
}

TEST(BufferNameTest, RejectsOtherPunctuation) {
  for (const char* name : {"a:b", "a*b", "a%s", "a\\b", "a+b", "a~"}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(ValidateBufferName(name),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("[A-Za-z0-9._-]")));
  }
}

TEST(BufferNameTest, ChecksTheLastByteOfAMaximumLengthName) {
  std::string name(127, 'n');
  name += '/';
  EXPECT_THAT(
      ValidateBufferName(name),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position 127")));
}

}  // namespace
}  // namespace shmbroker
