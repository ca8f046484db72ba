// VisibilityIndex: a caller's page is what the access rules let it see
// (owner, its uid, its gid, everyone), each buffer once, in handle order,
// whatever else is filed.
#include "core/visibility_index.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Scope = ShareRule::Scope;

using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::kBob;
constexpr Identity kCarol{.pid = 300, .uid = 3000, .gid = kAlice.gid};

std::vector<ShareRule> Rule(Scope scope, uint32_t id) {
  return {{.scope = scope, .id = id, .mode = AccessMode::kReadOnly}};
}

std::vector<Handle> All(const VisibilityIndex& index, const Identity& caller) {
  bool more = true;
  std::vector<Handle> page = index.Page(caller, 0, 1000, &more);
  EXPECT_FALSE(more);
  return page;
}

TEST(VisibilityIndexTest, ACallerSeesItsOwnAndWhatRulesAdmitItTo) {
  VisibilityIndex index;
  index.Add(1, kAlice, {});
  index.Add(2, kBob, {});
  index.Add(3, kBob, Rule(Scope::kUid, kAlice.uid));
  index.Add(4, kBob, Rule(Scope::kGid, kAlice.gid));
  index.Add(5, kBob, Rule(Scope::kAll, 0));
  index.Add(6, kBob, Rule(Scope::kUid, kCarol.uid));
  EXPECT_THAT(All(index, kAlice), ElementsAre(1, 3, 4, 5));
  EXPECT_THAT(All(index, kBob), ElementsAre(2, 3, 4, 5, 6));
  EXPECT_THAT(All(index, kCarol), ElementsAre(4, 5, 6));
}

TEST(VisibilityIndexTest, ABufferInSeveralOfACallersSetsIsListedOnce) {
  VisibilityIndex index;
  std::vector<ShareRule> rules = Rule(Scope::kUid, kCarol.uid);
  rules.push_back({.scope = Scope::kGid, .id = kAlice.gid});
  rules.push_back({.scope = Scope::kAll, .id = 0});
  rules.push_back({.scope = Scope::kUid, .id = kCarol.uid});  // twice
  index.Add(7, kBob, rules);
  index.Add(8, kCarol, {});
  EXPECT_THAT(All(index, kCarol), ElementsAre(7, 8));
  index.Remove(7, kBob, rules);
  EXPECT_THAT(All(index, kCarol), ElementsAre(8));
  EXPECT_THAT(All(index, kBob), IsEmpty());
}

TEST(VisibilityIndexTest, PagesStartAfterTheLastAndSayWhetherMoreFollow) {
  VisibilityIndex index;
  for (Handle h = 1; h <= 10; ++h) {
    index.Add(h, h % 2 == 0 ? kAlice : kBob,
              h % 3 == 0 ? Rule(Scope::kAll, 0) : std::vector<ShareRule>{});
  }
  // Alice's: the even ones, and 3 and 9 (everyone's).
  bool more = false;
  EXPECT_THAT(index.Page(kAlice, 0, 3, &more), ElementsAre(2, 3, 4));
  EXPECT_TRUE(more);
  EXPECT_THAT(index.Page(kAlice, 4, 3, &more), ElementsAre(6, 8, 9));
  EXPECT_TRUE(more);
  EXPECT_THAT(index.Page(kAlice, 9, 3, &more), ElementsAre(10));
  EXPECT_FALSE(more);
  EXPECT_THAT(index.Page(kAlice, 10, 3, &more), IsEmpty());
  EXPECT_FALSE(more);
}

}  // namespace
}  // namespace shmbroker
