// The CLI's tables and JSON (client/cli/output.h). The JSON key names are a
// contract (docs/cli.md); these tests pin the ones scripts rely on.
#include <string>
#include <vector>

#include "client/cli/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TableTest, PadsEveryColumnButTheLast) {
  EXPECT_EQ(Table({{"NAME", "SIZE", "X"}, {"a", "1024", "long last cell"}}),
            "NAME  SIZE  X\n"
            "a     1024  long last cell\n");
}

TEST(TableTest, RowsMayBeShorter) {
  EXPECT_EQ(Table({{"A", "B"}, {"wide"}}), "A     B\nwide\n");
  EXPECT_EQ(Table({}), "");
}

TEST(AgeTest, PicksTheUnitByMagnitude) {
  EXPECT_EQ(Age(absl::Seconds(-5)), "0s");
  EXPECT_EQ(Age(absl::Seconds(0)), "0s");
  EXPECT_EQ(Age(absl::Seconds(119)), "119s");
  EXPECT_EQ(Age(absl::Seconds(120)), "2m");
  EXPECT_EQ(Age(absl::Hours(2) - absl::Seconds(1)), "119m");
  EXPECT_EQ(Age(absl::Hours(2)), "2h");
  EXPECT_EQ(Age(absl::Hours(48) - absl::Seconds(1)), "47h");
  EXPECT_EQ(Age(absl::Hours(48)), "2d");
}

client::BufferInfo Pooled() {
  client::BufferInfo info;
  info.handle = 7;
  info.name = "frames";
  info.size = 4096;
  info.holders = 2;
  info.owner_uid = 1000;
  info.created = absl::FromUnixSeconds(1700000000);
  info.kind = client::Kind::kPooled;
  info.arena_id = 3;
  info.offset = 8192;
  info.share = {{client::ShareRule::Scope::kUid, 1001, true}};
  return info;
}

TEST(BufferOutputTest, Rows) {
  client::BufferInfo unnamed = Pooled();
  unnamed.name.clear();
  unnamed.kind = client::Kind::kDedicated;
  unnamed.backing = client::Backing::kPosix;
  const auto rows =
      BufferRows({Pooled(), unnamed}, absl::FromUnixSeconds(1700000000 + 90));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows[0], ElementsAre("NAME", "HANDLE", "SIZE", "BACKING", "KIND",
                                   "HOLDERS", "OWNER", "AGE"));
  EXPECT_THAT(rows[1], ElementsAre("frames", "7", "4KiB", "memfd", "pooled",
                                   "2", "1000", "90s"));
  EXPECT_EQ(rows[2][0], "-");
  EXPECT_EQ(rows[2][3], "posix");
  EXPECT_EQ(rows[2][4], "dedicated");
}

TEST(BufferOutputTest, JsonHasArenaOnlyWhenPooled) {
  const nlohmann::json pooled = BufferJson(Pooled());
  EXPECT_EQ(pooled["name"], "frames");
  EXPECT_EQ(pooled["handle"], 7);
  EXPECT_EQ(pooled["kind"], "pooled");
  EXPECT_EQ(pooled["backing"], "memfd");
  EXPECT_EQ(pooled["created_unix_seconds"], 1700000000);
  EXPECT_EQ(pooled["share"], nlohmann::json::array({"uid:1001:rw"}));
  EXPECT_EQ(pooled["arena"], 3);
  EXPECT_EQ(pooled["offset"], 8192);
  client::BufferInfo dedicated = Pooled();
  dedicated.kind = client::Kind::kDedicated;
  const nlohmann::json json = BufferJson(dedicated);
  EXPECT_FALSE(json.contains("arena"));
  EXPECT_FALSE(json.contains("offset"));
}

TEST(LeaseOutputTest, RowsNameTheKindAndExitedOwners) {
  client::LeaseInfo lease;
  lease.id = 5;
  lease.ttl = absl::Milliseconds(2500) + absl::Microseconds(7);
  lease.granted_ttl = absl::Seconds(30);
  lease.holds = 1;
  lease.owner_pid = 42;
  lease.owner_uid = 1000;
  client::LeaseInfo detached = lease;
  detached.detached = true;
  detached.connected = false;
  lease.connection_default = true;
  lease.connected = true;
  const auto rows = LeaseRows({lease, detached});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows[1],
              ElementsAre("5", "2.5s", "30s", "default", "1", "42", "1000"));
  EXPECT_EQ(rows[2][3], "detached");
  EXPECT_EQ(rows[2][5], "42 (exited)");
  const nlohmann::json json = LeasesJson({lease});
  EXPECT_EQ(json["leases"][0]["id"], 5);
  EXPECT_EQ(json["leases"][0]["client_pid"], 42);
  EXPECT_EQ(json["leases"][0]["connection_default"], true);
}

TEST(TenantOutputTest, RowsAndJson) {
  const std::vector<client::TenantUsage> tenants = {{1000, 4096, 2}};
  EXPECT_THAT(TenantRows(tenants),
              ElementsAre(ElementsAre("UID", "ALLOCATED", "BUFFERS"),
                          ElementsAre("1000", "4096", "2")));
  EXPECT_EQ(TenantsJson(tenants)["tenants"][0]["allocated_bytes"], 4096);
}

client::DaemonStatus SomeStatus() {
  client::DaemonStatus status;
  status.capacity_bytes = 1 << 30;
  status.allocated_bytes = 64;
  status.committed_bytes = 64 << 20;
  status.buffers = 1;
  status.version = "0.1.0";
  status.arenas.enabled = true;
  status.arenas.arena_size = 64 << 20;
  status.arenas.arenas = 1;
  status.arenas.live_buffers = 1;
  status.arenas.in_use_bytes = 64;
  status.arenas.free_bytes = (64 << 20) - 64;
  return status;
}

TEST(StatusOutputTest, Text) {
  const std::string text = StatusText(SomeStatus());
  EXPECT_THAT(text, HasSubstr("capacity              1GiB (1073741824 bytes)"));
  EXPECT_THAT(text, HasSubstr("committed             64.0MiB (6.2%)"));
  EXPECT_THAT(text, HasSubstr("reclaim after close   no samples yet"));
  EXPECT_THAT(text, HasSubstr("arenas                1 of 64MiB; 1 pooled "
                              "buffers use 64B"));
  client::DaemonStatus off = SomeStatus();
  off.arenas.enabled = false;
  off.capacity_bytes = 0;  // no division by zero
  EXPECT_THAT(StatusText(off), HasSubstr("pooling off"));
}

TEST(StatusOutputTest, Json) {
  client::DaemonStatus status = SomeStatus();
  status.lease_expiry_reclaim = {3, absl::Milliseconds(1), absl::Seconds(2),
                                 absl::Seconds(3)};
  const nlohmann::json json = StatusJson(status);
  EXPECT_EQ(json["committed_bytes"], 64 << 20);
  EXPECT_EQ(json["lease_expiry_reclaim"]["samples"], 3);
  EXPECT_EQ(json["lease_expiry_reclaim"]["p99_seconds"], 2.0);
  EXPECT_EQ(json["arenas"]["count"], 1);
  EXPECT_EQ(json["arenas"]["buffers"], 1);
  EXPECT_EQ(json["version"], "0.1.0");
}

TEST(WatchEventTest, JsonHasTypeRevisionNameHandleAndReason) {
  client::WatchEvent e;
  e.type = client::WatchEvent::Type::kReleased;
  e.revision = 9;
  e.buffer = Pooled();
  e.reason = client::WatchEvent::Reason::kClientGone;
  nlohmann::json j = WatchEventJson(e);
  EXPECT_EQ(j["type"], "released");
  EXPECT_EQ(j["revision"], 9);
  EXPECT_EQ(j["handle"], 7);
  EXPECT_EQ(j["name"], e.buffer.name);
  EXPECT_EQ(j["reason"], "client_gone");
  EXPECT_THAT(WatchEventText(e), HasSubstr("9 released "));
  EXPECT_THAT(WatchEventText(e), HasSubstr(" reason=client_gone\n"));
}

TEST(WatchEventTest, ALostEventHasOnlyTypeAndRevision) {
  client::WatchEvent e;
  e.type = client::WatchEvent::Type::kLost;
  e.revision = 12;
  EXPECT_EQ(WatchEventJson(e),
            (nlohmann::json{{"type", "lost"}, {"revision", 12}}));
  EXPECT_THAT(WatchEventText(e), HasSubstr("12 lost"));
}

TEST(WatchEventTest, OnlyReleasedEventsHaveAReason) {
  client::WatchEvent e;
  e.type = client::WatchEvent::Type::kCreated;
  e.revision = 2;
  e.buffer = Pooled();
  EXPECT_FALSE(WatchEventJson(e).contains("reason"));
  EXPECT_EQ(WatchEventJson(e)["type"], "created");
}

}  // namespace
}  // namespace shmbroker::cli
