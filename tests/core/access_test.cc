#include "core/access.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Scope = ShareRule::Scope;

// uids and gids are distinct numbers so a rule matching the wrong field fails.
const Identity kOwner{.pid = 10, .uid = 1000, .gid = 1100};
const Identity kRoot{.pid = 11, .uid = 0, .gid = 0};
const Identity kStranger{.pid = 12, .uid = 2000, .gid = 2100};
// Same primary gid as the owner, different uid.
const Identity kGroupmate{.pid = 13, .uid = 3000, .gid = 1100};

ShareRule Rule(Scope scope, uint32_t id, AccessMode mode) {
  return ShareRule{.scope = scope, .id = id, .mode = mode};
}

absl::StatusOr<AccessMode> Decide(const Identity& caller,
                                  const std::vector<ShareRule>& rules,
                                  AccessRequest request) {
  return DecideAccess(caller, kOwner, rules, request);
}

TEST(AccessTest, OwnerGetsReadWriteWithoutRules) {
  EXPECT_EQ(Decide(kOwner, {}, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadWrite);
  EXPECT_EQ(Decide(kOwner, {}, AccessRequest::kReadWrite).value(),
            AccessMode::kReadWrite);
}

TEST(AccessTest, OwnerAskingReadOnlyGetsReadOnly) {
  EXPECT_EQ(Decide(kOwner, {}, AccessRequest::kReadOnly).value(),
            AccessMode::kReadOnly);
}

TEST(AccessTest, OwnershipIsByUidNotPid) {
  const Identity other_process_same_uid{.pid = 99, .uid = 1000, .gid = 5};
  EXPECT_EQ(
      Decide(other_process_same_uid, {}, AccessRequest::kBestAllowed).value(),
      AccessMode::kReadWrite);
}

TEST(AccessTest, RootGetsReadWriteWithoutRules) {
  EXPECT_EQ(Decide(kRoot, {}, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadWrite);
  EXPECT_EQ(Decide(kRoot, {}, AccessRequest::kReadWrite).value(),
            AccessMode::kReadWrite);
}

TEST(AccessTest, StrangerIsDeniedWithoutRulesWhateverItAsks) {
  for (AccessRequest request :
       {AccessRequest::kBestAllowed, AccessRequest::kReadOnly,
        AccessRequest::kReadWrite}) {
    EXPECT_THAT(
        Decide(kStranger, {}, request),
        StatusIs(absl::StatusCode::kPermissionDenied,
                 AllOf(HasSubstr("uid 2000"), HasSubstr("not the owner"),
                       HasSubstr("uid 1000"))));
  }
}

TEST(AccessTest, UidRuleAdmitsOnlyThatUidWithItsMode) {
  const std::vector<ShareRule> ro = {
      Rule(Scope::kUid, 2000, AccessMode::kReadOnly)};
  EXPECT_EQ(Decide(kStranger, ro, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadOnly);
  EXPECT_THAT(Decide(kGroupmate, ro, AccessRequest::kBestAllowed),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("3000")));

  const std::vector<ShareRule> rw = {
      Rule(Scope::kUid, 2000, AccessMode::kReadWrite)};
  EXPECT_EQ(Decide(kStranger, rw, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadWrite);
}

TEST(AccessTest, UidRuleDoesNotMatchAGidOfTheSameNumber) {
  const Identity gid_2000{.pid = 14, .uid = 4000, .gid = 2000};
  EXPECT_FALSE(Decide(gid_2000,
                      {Rule(Scope::kUid, 2000, AccessMode::kReadOnly)},
                      AccessRequest::kBestAllowed)
                   .ok());
}

TEST(AccessTest, GidRuleMatchesPrimaryGidNotUid) {
  const std::vector<ShareRule> ro = {
      Rule(Scope::kGid, 1100, AccessMode::kReadOnly)};
  EXPECT_EQ(Decide(kGroupmate, ro, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadOnly);
  EXPECT_FALSE(Decide(kStranger, ro, AccessRequest::kBestAllowed).ok());
  // A caller whose uid equals the gid number is not in the group.
  const Identity uid_1100{.pid = 15, .uid = 1100, .gid = 7};
  EXPECT_FALSE(Decide(uid_1100, ro, AccessRequest::kBestAllowed).ok());

  const std::vector<ShareRule> rw = {
      Rule(Scope::kGid, 1100, AccessMode::kReadWrite)};
  EXPECT_EQ(Decide(kGroupmate, rw, AccessRequest::kReadWrite).value(),
            AccessMode::kReadWrite);
}

TEST(AccessTest, AllRuleAdmitsEveryoneWithItsMode) {
  const std::vector<ShareRule> ro = {
      Rule(Scope::kAll, 0, AccessMode::kReadOnly)};
  EXPECT_EQ(Decide(kStranger, ro, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadOnly);
  EXPECT_EQ(Decide(kGroupmate, ro, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadOnly);

  const std::vector<ShareRule> rw = {
      Rule(Scope::kAll, 0, AccessMode::kReadWrite)};
  EXPECT_EQ(Decide(kStranger, rw, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadWrite);
}

TEST(AccessTest, ReadWriteRequestOnReadOnlyShareIsDenied) {
  const std::vector<ShareRule> ro = {
      Rule(Scope::kAll, 0, AccessMode::kReadOnly)};
  EXPECT_THAT(Decide(kStranger, ro, AccessRequest::kReadWrite),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("uid 2000"), HasSubstr("read-only"))));
}

TEST(AccessTest, ReadOnlyRequestOnReadWriteShareGivesReadOnly) {
  const std::vector<ShareRule> rw = {
      Rule(Scope::kAll, 0, AccessMode::kReadWrite)};
  EXPECT_EQ(Decide(kStranger, rw, AccessRequest::kReadOnly).value(),
            AccessMode::kReadOnly);
}

TEST(AccessTest, BestAllowedPicksTheWidestMatchingRuleInAnyOrder) {
  const ShareRule all_ro = Rule(Scope::kAll, 0, AccessMode::kReadOnly);
  const ShareRule uid_rw = Rule(Scope::kUid, 2000, AccessMode::kReadWrite);
  EXPECT_EQ(
      Decide(kStranger, {all_ro, uid_rw}, AccessRequest::kBestAllowed).value(),
      AccessMode::kReadWrite);
  EXPECT_EQ(
      Decide(kStranger, {uid_rw, all_ro}, AccessRequest::kBestAllowed).value(),
      AccessMode::kReadWrite);
}

TEST(AccessTest, ReadWriteRuleForSomeoneElseDoesNotUpgrade) {
  const std::vector<ShareRule> rules = {
      Rule(Scope::kUid, 3000, AccessMode::kReadWrite),
      Rule(Scope::kGid, 1100, AccessMode::kReadWrite),
      Rule(Scope::kAll, 0, AccessMode::kReadOnly)};
  EXPECT_EQ(Decide(kStranger, rules, AccessRequest::kBestAllowed).value(),
            AccessMode::kReadOnly);
  EXPECT_FALSE(Decide(kStranger, rules, AccessRequest::kReadWrite).ok());
}

TEST(AccessTest, MaySeeFollowsOwnershipRootAndRules) {
  EXPECT_TRUE(MaySee(kOwner, kOwner, {}));
  EXPECT_TRUE(MaySee(kRoot, kOwner, {}));
  EXPECT_FALSE(MaySee(kStranger, kOwner, {}));
  EXPECT_FALSE(MaySee(kStranger, kOwner,
                      {Rule(Scope::kUid, 3000, AccessMode::kReadWrite)}));
  EXPECT_TRUE(MaySee(kStranger, kOwner,
                     {Rule(Scope::kUid, 2000, AccessMode::kReadOnly)}));
  EXPECT_TRUE(MaySee(kGroupmate, kOwner,
                     {Rule(Scope::kGid, 1100, AccessMode::kReadOnly)}));
  EXPECT_TRUE(
      MaySee(kStranger, kOwner, {Rule(Scope::kAll, 0, AccessMode::kReadOnly)}));
}

TEST(ShareRulesTest, AcceptsUpToTheMaximumCount) {
  EXPECT_THAT(ValidateShareRules({}), IsOk());
  ASSERT_EQ(kMaxShareRules, 16u);
  std::vector<ShareRule> rules;
  for (uint32_t i = 0; i < kMaxShareRules; ++i) {
    rules.push_back(Rule(Scope::kUid, 5000 + i, AccessMode::kReadOnly));
  }
  EXPECT_THAT(ValidateShareRules(rules), IsOk());
}

TEST(ShareRulesTest, RejectsTooManyRulesSayingTheLimit) {
  std::vector<ShareRule> rules(kMaxShareRules + 1,
                               Rule(Scope::kGid, 7, AccessMode::kReadOnly));
  EXPECT_THAT(ValidateShareRules(rules),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("17 rules"), HasSubstr("at most 16"))));
}

TEST(ShareRulesTest, RejectsAnAllRuleWithAnId) {
  EXPECT_THAT(
      ValidateShareRules({Rule(Scope::kUid, 1, AccessMode::kReadOnly),
                          Rule(Scope::kAll, 42, AccessMode::kReadOnly)}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("everyone")));
  EXPECT_THAT(
      ValidateShareRules({Rule(Scope::kAll, 0, AccessMode::kReadWrite)}),
      IsOk());
}

}  // namespace
}  // namespace shmbroker
