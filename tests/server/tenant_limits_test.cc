// The --tenant_limits file's parser: what a good file gives each uid, and a
// clear refusal, naming the tenant and key, for everything else.
#include "server/tenant_limits.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

using ::testing::HasSubstr;

const TenantDefaults kDefaults{uint64_t{1} << 30, 5000, 256};

TEST(TenantLimitsFileTest, AGoodFileGivesEachUidItsLimitsAndTheDefaultsElse) {
  auto limits = ParseTenantLimits(R"({"tenants": [
      {"uid": 1000, "max_bytes": "8GiB", "max_buffers": 7},
      {"user": "root", "max_connections": 1024},
      {"uid": 65534, "max_bytes": 4096}
    ]})",
                                  kDefaults);
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->tenants(), 3u);
  EXPECT_EQ(limits->quotas.at(1000).max_bytes, uint64_t{8} << 30);
  EXPECT_EQ(limits->quotas.at(1000).max_buffers, 7u);
  EXPECT_EQ(limits->connections.at(1000), 256u);
  EXPECT_EQ(limits->quotas.at(0).max_bytes, uint64_t{1} << 30);
  EXPECT_EQ(limits->quotas.at(0).max_buffers, 5000u);
  EXPECT_EQ(limits->connections.at(0), 1024u);
  EXPECT_EQ(limits->quotas.at(65534).max_bytes, 4096u);

  auto none = ParseTenantLimits(R"({"tenants": []})", kDefaults);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->tenants(), 0u);
}

TEST(TenantLimitsFileTest, EverythingElseIsRefusedNamingWhere) {
  const std::pair<const char*, const char*> bad[] = {
      {"", "not JSON: syntax error at line 1, column 1"},
      {"{\"tenants\": [\n  {\"uid\": 1,,}]}", "line 2, column"},
      {"[]", "expected an object with a \"tenants\" array"},
      // Found by fuzz_tenant_limits: nlohmann throws out_of_range for it.
      {R"({"tenants": [{"uid": 1e32000}]})", "a number out of range"},
      {R"({"tenants": {}})", "expected an object with a \"tenants\" array"},
      {R"({"tenants": [], "x": 1})", "unknown key \"x\""},
      {R"({"tenants": [7]})", "tenants[0]: not an object"},
      {R"({"tenants": [{"uid": 1, "max_byte": 1}]})",
       "tenants[0].\"max_byte\": unknown key"},
      {R"({"tenants": [{"max_bytes": 1}]})",
       "tenants[0].uid: name exactly one of \"uid\" and \"user\""},
      {R"({"tenants": [{"uid": 1, "user": "root"}]})", "exactly one"},
      {R"({"tenants": [{"uid": -1}]})", "tenants[0].uid: -1 is not"},
      {R"({"tenants": [{"uid": 4294967295}]})", "from 0 to 4294967294"},
      {R"({"tenants": [{"uid": 1.5}]})", "tenants[0].uid: 1.5 is not"},
      {R"({"tenants": [{"user": "no-such-user-here"}]})",
       "tenants[0].user: no user \"no-such-user-here\""},
      {R"({"tenants": [{"user": 3}]})", "tenants[0].user: 3 is not a name"},
      {R"({"tenants": [{"uid": 1}, {"uid": 1}]})",
       "tenants[1]: uid 1 is named twice"},
      {R"({"tenants": [{"uid": 1}, {"user": "root"}, {"uid": 0}]})",
       "tenants[2]: uid 0 is named twice"},
      {R"({"tenants": [{"uid": 1, "max_bytes": "8XiB"}]})",
       "tenants[0].max_bytes: \"8XiB\" is not a size"},
      {R"({"tenants": [{"uid": 1, "max_bytes": 0}]})",
       "tenants[0].max_bytes: 0 is not a whole number from 1"},
      {R"({"tenants": [{"uid": 1, "max_buffers": "7"}]})",
       "tenants[0].max_buffers: \"7\" is not a whole number"},
      {R"({"tenants": [{"uid": 1, "max_connections": 4294967296}]})",
       "from 1 to 4294967295"},
  };
  for (const auto& [text, why] : bad) {
    auto limits = ParseTenantLimits(text, kDefaults);
    EXPECT_EQ(limits.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(limits.status().message(), HasSubstr(why)) << text;
  }
}

TEST(TenantLimitsFileTest, LongInputIsQuotedOnlyInPartAndSizesAreBounded) {
  const std::string user(5000, 'u');
  auto limits = ParseTenantLimits(
      absl::StrCat(R"({"tenants": [{"user": ")", user, R"("}]})"), kDefaults);
  ASSERT_FALSE(limits.ok());
  EXPECT_LT(limits.status().message().size(), 200u) << limits.status();
  EXPECT_THAT(limits.status().message(), HasSubstr("(5000 bytes)"));

  std::string many = R"({"tenants": [)";
  for (size_t i = 0; i <= kMaxTenants; ++i) {
    absl::StrAppend(&many, i == 0 ? "" : ",", R"({"uid": )", i + 1, "}");
  }
  absl::StrAppend(&many, "]}");
  auto too_many = ParseTenantLimits(many, kDefaults);
  EXPECT_THAT(too_many.status().message(),
              HasSubstr("10001 tenants, more than the 10000 allowed"));

  auto too_large = ParseTenantLimits(
      std::string(kMaxTenantLimitsFileBytes + 1, ' '), kDefaults);
  EXPECT_THAT(too_large.status().message(), HasSubstr("more than the"));
}

TEST(TenantLimitsFileTest, ReadingNamesTheFile) {
  char path[] = "/tmp/shmbroker-tenant-limits-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << R"({"tenants": [{"uid": 5, "max_buffers": 9}]})";
  auto limits = ReadTenantLimits(path, kDefaults);
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->quotas.at(5).max_buffers, 9u);
  std::ofstream(path) << "{";
  EXPECT_THAT(ReadTenantLimits(path, kDefaults).status().message(),
              HasSubstr(absl::StrCat(path, ": not JSON")));
  ::unlink(path);
  EXPECT_THAT(ReadTenantLimits(path, kDefaults).status().message(),
              HasSubstr(absl::StrCat(path, ": No such file or directory")));
}

}  // namespace
}  // namespace shmbroker
