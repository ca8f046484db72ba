#include "server/token_bucket.h"

#include "gtest/gtest.h"

namespace shmbroker {
namespace {

TEST(TokenBucketTest, ABurstThenTheRate) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  TokenBucket bucket(/*rate=*/10, /*burst=*/5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.TryTake(t0)) << i;
  EXPECT_FALSE(bucket.TryTake(t0));
  // 10 a second: one token every 100 ms.
  EXPECT_FALSE(bucket.TryTake(t0 + absl::Milliseconds(50)));
  EXPECT_TRUE(bucket.TryTake(t0 + absl::Milliseconds(150)));
  EXPECT_FALSE(bucket.TryTake(t0 + absl::Milliseconds(160)));
}

TEST(TokenBucketTest, AnIdleBucketRefillsOnlyToItsBurst) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  TokenBucket bucket(10, 3);
  EXPECT_TRUE(bucket.TryTake(t0));
  const absl::Time later = t0 + absl::Hours(1);
  int taken = 0;
  while (bucket.TryTake(later)) ++taken;
  EXPECT_EQ(taken, 3);
}

TEST(TokenBucketTest, OverAMeasuredIntervalAtMostBurstPlusRate) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  TokenBucket bucket(200, 200);
  int taken = 0;
  // Asking every millisecond for two seconds: 200 + 2 * 200 at most.
  for (int ms = 0; ms <= 2000; ++ms) {
    const absl::Time now = t0 + absl::Milliseconds(ms);
    while (bucket.TryTake(now)) ++taken;
  }
  EXPECT_EQ(taken, 600);
}

}  // namespace
}  // namespace shmbroker
