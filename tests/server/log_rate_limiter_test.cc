#include "server/log_rate_limiter.h"

#include "gtest/gtest.h"

namespace shmbroker {
namespace {

TEST(LogRateLimiterTest, OneLinePerIntervalCountingTheRest) {
  LogRateLimiter limiter(absl::Seconds(5));
  const absl::Time start = absl::FromUnixSeconds(1700000000);
  uint64_t suppressed = 99;
  ASSERT_TRUE(limiter.AllowAt(start, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(limiter.AllowAt(start + absl::Milliseconds(i), &suppressed));
  }
  EXPECT_FALSE(limiter.AllowAt(start + absl::Seconds(5) - absl::Nanoseconds(1),
                               &suppressed));
  ASSERT_TRUE(limiter.AllowAt(start + absl::Seconds(5), &suppressed));
  EXPECT_EQ(suppressed, 1001u);
  // The count starts over with each line let through.
  EXPECT_FALSE(limiter.AllowAt(start + absl::Seconds(6), &suppressed));
  ASSERT_TRUE(limiter.AllowAt(start + absl::Seconds(11), &suppressed));
  EXPECT_EQ(suppressed, 1u);
  EXPECT_FALSE(limiter.AllowAt(start + absl::Seconds(12), &suppressed));
  EXPECT_FALSE(limiter.AllowAt(start + absl::Seconds(13), &suppressed));
  EXPECT_EQ(limiter.TakeSuppressed(), 2u);
  EXPECT_EQ(limiter.TakeSuppressed(), 0u);
}

TEST(LogRateLimiterTest, SuppressedNoteSaysHowManyOrNothing) {
  EXPECT_EQ(SuppressedNote(0), "");
  EXPECT_EQ(SuppressedNote(3), " (3 similar suppressed)");
}

}  // namespace
}  // namespace shmbroker
