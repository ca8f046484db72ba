// LeaseTable and TTL clamping: the deadline order expiry relies on.
#include "core/lease_table.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Code = absl::StatusCode;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

LeaseInfo At(LeaseId id, absl::Duration after) {
  LeaseInfo info;
  info.id = id;
  info.deadline = kT0 + after;
  return info;
}

TEST(ClampTtlTest, ZeroIsTheDefaultAndOthersAreClampedToTheBounds) {
  LeaseOptions options;  // 1 s, 10 s, 1 h
  EXPECT_EQ(*ClampTtl(options, absl::ZeroDuration()), absl::Seconds(10));
  EXPECT_EQ(*ClampTtl(options, absl::Milliseconds(1)), absl::Seconds(1));
  EXPECT_EQ(*ClampTtl(options, absl::Seconds(30)), absl::Seconds(30));
  EXPECT_EQ(*ClampTtl(options, absl::Hours(5)), absl::Hours(1));
  EXPECT_THAT(ClampTtl(options, absl::Seconds(-1)),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad ttl: -1s")));
}

TEST(ClampTtlTest, OptionsMustBeOrdered) {
  LeaseOptions options;
  EXPECT_TRUE(ValidateLeaseOptions(options).ok());
  options.min_ttl = absl::Minutes(1);  // above the default
  EXPECT_THAT(ValidateLeaseOptions(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("min <= default")));
  options = LeaseOptions();
  options.max_holds_per_lease = 0;
  EXPECT_THAT(ValidateLeaseOptions(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("positive")));
  options = LeaseOptions();
  options.reclaim_pause = kMaxReclaimPause;
  EXPECT_TRUE(ValidateLeaseOptions(options).ok());
  options.reclaim_pause = absl::ZeroDuration();
  EXPECT_TRUE(ValidateLeaseOptions(options).ok());
  options.reclaim_pause = kMaxReclaimPause + absl::Microseconds(1);
  EXPECT_THAT(ValidateLeaseOptions(options),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("reclaim pause must be from 0 to 1ms, got "
                                 "1.001ms")));
  options.reclaim_pause = absl::Microseconds(-1);
  EXPECT_THAT(ValidateLeaseOptions(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("got -1us")));
}

TEST(LeaseTableTest, DueReturnsPassedDeadlinesEarliestFirstAndBounded) {
  LeaseTable table;
  table.Add(At(1, absl::Seconds(30)));
  table.Add(At(2, absl::Seconds(10)));
  table.Add(At(3, absl::Seconds(20)));
  table.Add(At(4, absl::Seconds(10)));  // same deadline as 2: id breaks ties
  EXPECT_EQ(table.NextDeadline(), kT0 + absl::Seconds(10));
  EXPECT_THAT(table.Due(kT0, 10), ElementsAre());
  EXPECT_THAT(table.Due(kT0 + absl::Seconds(20), 10), ElementsAre(2, 4, 3));
  EXPECT_THAT(table.Due(kT0 + absl::Seconds(60), 2), ElementsAre(2, 4));
}

TEST(LeaseTableTest, RenewalMovesTheDeadlineAndEraseForgets) {
  LeaseTable table;
  table.Add(At(1, absl::Seconds(10)));
  table.Add(At(2, absl::Seconds(20)));
  table.SetDeadline(*table.Find(1), kT0 + absl::Seconds(40));
  EXPECT_EQ(table.Find(1)->info.deadline, kT0 + absl::Seconds(40));
  EXPECT_THAT(table.Due(kT0 + absl::Seconds(30), 10), ElementsAre(2));
  table.Erase(2);
  table.Erase(99);  // unknown: no-op
  EXPECT_EQ(table.Find(2), nullptr);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.NextDeadline(), kT0 + absl::Seconds(40));
  table.Erase(1);
  EXPECT_EQ(table.NextDeadline(), std::nullopt);
}

}  // namespace
}  // namespace shmbroker
