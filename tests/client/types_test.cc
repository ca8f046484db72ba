// The parsers and names of shmbroker/types.h, as the CLI's flags use them.
#include "shmbroker/types.h"

#include <initializer_list>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker::client {
namespace {

using ::testing::HasSubstr;

// Each value's name parses back to it.
template <typename T>
void ExpectNamesRoundTrip(std::initializer_list<T> values,
                          absl::StatusOr<T> (*parse)(absl::string_view),
                          const char* (*name)(T)) {
  for (T value : values) {
    absl::StatusOr<T> parsed = parse(name(value));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, value) << name(value);
  }
}

// Each text is refused with INVALID_ARGUMENT and a hint.
template <typename T>
void ExpectRefused(std::initializer_list<const char*> texts,
                   absl::StatusOr<T> (*parse)(absl::string_view),
                   const char* hint) {
  for (const char* text : texts) {
    absl::StatusOr<T> parsed = parse(text);
    ASSERT_FALSE(parsed.ok()) << "accepted \"" << text << "\"";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(hint));
  }
}

TEST(ParseShareRuleTest, ScopesIdsAndModes) {
  struct Case {
    const char* text;
    ShareRule::Scope scope;
    uint32_t id;
    bool read_write;
  };
  const Case cases[] = {
      {"all", ShareRule::Scope::kAll, 0, false},
      {"all:ro", ShareRule::Scope::kAll, 0, false},
      {"all:rw", ShareRule::Scope::kAll, 0, true},
      {"uid:1000", ShareRule::Scope::kUid, 1000, false},
      {"uid:0:rw", ShareRule::Scope::kUid, 0, true},
      {"gid:44:ro", ShareRule::Scope::kGid, 44, false},
      {"gid:4294967295:rw", ShareRule::Scope::kGid, 4294967295u, true},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ShareRule> rule = ParseShareRule(c.text);
    ASSERT_TRUE(rule.ok()) << c.text << ": " << rule.status();
    EXPECT_EQ(rule->scope, c.scope) << c.text;
    EXPECT_EQ(rule->id, c.id) << c.text;
    EXPECT_EQ(rule->read_write, c.read_write) << c.text;
  }
}

TEST(ParseShareRuleTest, RefusesMalformedRulesWithAHint) {
  ExpectRefused(
      {"", "everyone", "uid", "uid:", "uid:x", "uid:-1", "gid:4294967296",
       "uid:1:wr", "all:1", "all:ro:rw", "uid:1:rw:extra", "UID:1"},
      &ParseShareRule, "use uid:N, gid:N or all");
}

TEST(ParseShareRuleTest, ToStringRoundTrips) {
  for (const char* text : {"all:ro", "all:rw", "uid:7:ro", "gid:9:rw"}) {
    absl::StatusOr<ShareRule> rule = ParseShareRule(text);
    ASSERT_TRUE(rule.ok()) << rule.status();
    EXPECT_EQ(ShareRuleToString(*rule), text);
  }
  EXPECT_EQ(ShareRuleToString(*ParseShareRule("uid:7")), "uid:7:ro");
}

TEST(ParseBackingTest, NamesRoundTrip) {
  ExpectNamesRoundTrip({Backing::kMemfd, Backing::kPosix}, &ParseBacking,
                       &BackingName);
  // The daemon's default is memfd, and that is what the default is called.
  EXPECT_STREQ(BackingName(Backing::kDefault), "memfd");
}

TEST(ParseBackingTest, RefusesOthers) {
  ExpectRefused({"", "shm", "MEMFD", "memfd "}, &ParseBacking,
                "use memfd or posix");
}

TEST(ParseKindTest, NamesRoundTrip) {
  ExpectNamesRoundTrip({Kind::kDefault, Kind::kDedicated, Kind::kPooled},
                       &ParseKind, &KindName);
  EXPECT_STREQ(KindName(Kind::kDefault), "auto");
}

TEST(ParseKindTest, RefusesOthers) {
  ExpectRefused({"", "default", "Pooled", "shared"}, &ParseKind,
                "use auto, pooled or dedicated");
}

}  // namespace
}  // namespace shmbroker::client
