#include "server/page.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

using ::testing::HasSubstr;

TEST(PageTest, SizeZeroIsTheDefaultAndLargeSizesAreCapped) {
  const PageOptions options{100, 1000};
  EXPECT_EQ(ParsePage(0, "", options)->limit, 100u);
  EXPECT_EQ(ParsePage(7, "", options)->limit, 7u);
  EXPECT_EQ(ParsePage(5000, "", options)->limit, 1000u);
  EXPECT_EQ(ParsePage(0, "", options)->after, 0u);
}

TEST(PageTest, ATokenIsTheLastIdOfThePreviousPage) {
  EXPECT_EQ(ParsePage(0, NextPageToken(true, 42), {})->after, 42u);
  EXPECT_EQ(NextPageToken(false, 42), "");
}

TEST(PageTest, ABadTokenIsRefusedQuotingABoundedPrefix) {
  absl::Status bad = ParsePage(0, "abc", {}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_THAT(bad.message(), HasSubstr("bad page_token \"abc\""));
  const std::string huge(10000, 'z');
  absl::Status big = ParsePage(0, huge, {}).status();
  EXPECT_THAT(big.message(), HasSubstr("10000 bytes"));
  EXPECT_LT(big.message().size(), 200u);
  EXPECT_FALSE(ParsePage(0, "-1", {}).ok());
  EXPECT_FALSE(ParsePage(0, "99999999999999999999999", {}).ok());
}

}  // namespace
}  // namespace shmbroker
