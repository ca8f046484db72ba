// client/src/proto_convert: every field of each message the library reads
// or writes arrives where it belongs. Each test fills every field of its
// message (CheckEveryFieldSet says so), so a field added to the proto fails
// here until the conversion and this test learn it.
#include "client/src/proto_convert.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"

namespace shmbroker::client {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// Every field of `message` and of the messages in it is set to a
// non-default value (repeated ones have an element), except the fields
// named in `unused` ("shmbroker.v1.StatusResponse.caller_uid").
void CheckEveryFieldSet(const google::protobuf::Message& message,
                        const std::set<std::string>& unused = {}) {
  const google::protobuf::Descriptor* type = message.GetDescriptor();
  const google::protobuf::Reflection* reflection = message.GetReflection();
  for (int i = 0; i < type->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = type->field(i);
    if (unused.contains(field->full_name())) continue;
    const bool is_message =
        field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE;
    if (field->is_repeated()) {
      ASSERT_GT(reflection->FieldSize(message, field), 0)
          << field->full_name() << " is empty in the test";
      if (is_message) {
        CheckEveryFieldSet(reflection->GetRepeatedMessage(message, field, 0),
                           unused);
      }
      continue;
    }
    ASSERT_TRUE(reflection->HasField(message, field))
        << field->full_name() << " is not set (or default) in the test";
    if (is_message) {
      CheckEveryFieldSet(reflection->GetMessage(message, field), unused);
    }
  }
}

void SetDuration(int64_t seconds, int32_t nanos,
                 google::protobuf::Duration* out) {
  out->set_seconds(seconds);
  out->set_nanos(nanos);
}

absl::Duration Duration(int64_t seconds, int32_t nanos) {
  return absl::Seconds(seconds) + absl::Nanoseconds(nanos);
}

TEST(ProtoConvertTest, Durations) {
  for (absl::Duration d :
       {absl::ZeroDuration(), absl::Nanoseconds(1), absl::Milliseconds(1500),
        absl::Hours(49) + absl::Nanoseconds(999999999)}) {
    google::protobuf::Duration wire;
    ToProto(d, &wire);
    EXPECT_EQ(FromProto(wire), d);
  }
}

TEST(ProtoConvertTest, ShareRulesRoundTrip) {
  for (ShareRule::Scope scope : {ShareRule::Scope::kUid, ShareRule::Scope::kGid,
                                 ShareRule::Scope::kAll}) {
    for (bool read_write : {false, true}) {
      const ShareRule rule{scope, scope == ShareRule::Scope::kAll ? 0u : 42u,
                           read_write};
      v1::ShareRule wire;
      ToProto(rule, &wire);
      CheckEveryFieldSet(wire, {"shmbroker.v1.ShareRule.id"});
      const ShareRule back = FromProto(wire);
      EXPECT_EQ(back.scope, rule.scope);
      EXPECT_EQ(back.id, rule.id);
      EXPECT_EQ(back.read_write, rule.read_write);
    }
  }
}

TEST(ProtoConvertTest, Enums) {
  EXPECT_EQ(ToProto(Backing::kDefault), v1::BACKING_UNSPECIFIED);
  EXPECT_EQ(ToProto(Backing::kMemfd), v1::BACKING_MEMFD);
  EXPECT_EQ(ToProto(Backing::kPosix), v1::BACKING_POSIX);
  EXPECT_EQ(ToProto(Access::kDefault), v1::ACCESS_MODE_UNSPECIFIED);
  EXPECT_EQ(ToProto(Access::kReadOnly), v1::ACCESS_MODE_READ_ONLY);
  EXPECT_EQ(ToProto(Access::kReadWrite), v1::ACCESS_MODE_READ_WRITE);
  EXPECT_EQ(ToProto(Kind::kDefault), v1::BUFFER_KIND_UNSPECIFIED);
  EXPECT_EQ(ToProto(Kind::kDedicated), v1::BUFFER_KIND_DEDICATED);
  EXPECT_EQ(ToProto(Kind::kPooled), v1::BUFFER_KIND_POOLED);
}

TEST(ProtoConvertTest, AllocateOptions) {
  AllocateOptions options;
  options.size = 1 << 20;
  options.name = "frames";
  options.backing = Backing::kPosix;
  options.share = {{ShareRule::Scope::kGid, 44, true},
                   {ShareRule::Scope::kAll, 0, false}};
  options.lease_id = 7;
  options.kind = Kind::kDedicated;
  options.uninitialized = true;
  options.wait_for_room = absl::Milliseconds(1500);
  const v1::AllocateRequest request = ToProto(options);
  // The second rule's id is rightly 0 (scope all).
  CheckEveryFieldSet(request);
  EXPECT_EQ(request.size(), 1u << 20);
  EXPECT_EQ(request.name(), "frames");
  EXPECT_EQ(request.backing(), v1::BACKING_POSIX);
  ASSERT_EQ(request.share_size(), 2);
  EXPECT_EQ(request.share(0).scope(), v1::SHARE_SCOPE_GID);
  EXPECT_EQ(request.share(0).id(), 44u);
  EXPECT_EQ(request.share(0).mode(), v1::ACCESS_MODE_READ_WRITE);
  EXPECT_EQ(request.share(1).scope(), v1::SHARE_SCOPE_ALL);
  EXPECT_EQ(request.share(1).mode(), v1::ACCESS_MODE_READ_ONLY);
  EXPECT_EQ(request.lease_id(), 7u);
  EXPECT_EQ(request.kind(), v1::BUFFER_KIND_DEDICATED);
  EXPECT_TRUE(request.uninitialized());
  EXPECT_EQ(request.wait_for_room().seconds(), 1);
  EXPECT_EQ(request.wait_for_room().nanos(), 500000000);
  // Not waiting leaves the field unset.
  options.wait_for_room = absl::ZeroDuration();
  EXPECT_FALSE(ToProto(options).has_wait_for_room());
}

TEST(ProtoConvertTest, Buffer) {
  v1::Buffer wire;
  wire.set_handle(11);
  wire.set_name("frames");
  wire.set_size(4096);
  wire.set_backing(v1::BACKING_POSIX);
  wire.set_owner_uid(1000);
  wire.set_owner_gid(1001);
  wire.set_owner_pid(4242);
  wire.set_holders(3);
  wire.mutable_created()->set_seconds(1700000000);
  wire.mutable_created()->set_nanos(5);
  v1::ShareRule* rule = wire.add_share();
  rule->set_scope(v1::SHARE_SCOPE_UID);
  rule->set_id(77);
  rule->set_mode(v1::ACCESS_MODE_READ_WRITE);
  wire.set_shm_name("/shmbroker.1a2b.11");
  wire.set_charged_bytes(8192);
  wire.set_kind(v1::BUFFER_KIND_POOLED);
  wire.set_arena_id(2);
  wire.set_offset(65536);
  wire.set_sealed(true);
  CheckEveryFieldSet(wire);

  const BufferInfo info = FromProto(wire);
  EXPECT_EQ(info.handle, 11u);
  EXPECT_EQ(info.name, "frames");
  EXPECT_EQ(info.size, 4096u);
  EXPECT_EQ(info.backing, Backing::kPosix);
  EXPECT_EQ(info.owner_uid, 1000u);
  EXPECT_EQ(info.owner_gid, 1001u);
  EXPECT_EQ(info.owner_pid, 4242);
  EXPECT_EQ(info.holders, 3u);
  EXPECT_EQ(info.created,
            absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(5));
  ASSERT_EQ(info.share.size(), 1u);
  EXPECT_EQ(info.share[0].scope, ShareRule::Scope::kUid);
  EXPECT_EQ(info.share[0].id, 77u);
  EXPECT_TRUE(info.share[0].read_write);
  EXPECT_EQ(info.shm_name, "/shmbroker.1a2b.11");
  EXPECT_EQ(info.charged_bytes, 8192u);
  EXPECT_EQ(info.kind, Kind::kPooled);
  EXPECT_EQ(info.arena_id, 2u);
  EXPECT_EQ(info.offset, 65536u);
  EXPECT_TRUE(info.sealed);
}

TEST(ProtoConvertTest, BufferDefaults) {
  // What a daemon leaves unset reads as the library's defaults.
  const BufferInfo info = FromProto(v1::Buffer());
  EXPECT_EQ(info.backing, Backing::kMemfd);
  EXPECT_EQ(info.kind, Kind::kDedicated);
  EXPECT_EQ(info.created, absl::UnixEpoch());
}

v1::Lease FullLease() {
  v1::Lease wire;
  wire.set_id(9);
  SetDuration(20, 500, wire.mutable_ttl());
  SetDuration(30, 0, wire.mutable_granted_ttl());
  wire.set_detached(true);
  wire.set_connection_default(true);
  wire.set_holds(4);
  wire.set_owner_pid(77);
  wire.set_owner_uid(1000);
  wire.set_owner_gid(1002);
  wire.set_connected(true);
  wire.mutable_granted()->set_seconds(1700000100);
  wire.mutable_granted()->set_nanos(9);
  return wire;
}

// The granted_ttl of FullLease has no nanos, which is what a daemon sends.
const std::set<std::string> kWholeSeconds = {"google.protobuf.Duration.nanos"};

void ExpectFullLease(const LeaseInfo& info) {
  EXPECT_EQ(info.id, 9u);
  EXPECT_EQ(info.ttl, Duration(20, 500));
  EXPECT_EQ(info.granted_ttl, absl::Seconds(30));
  EXPECT_TRUE(info.detached);
  EXPECT_TRUE(info.connection_default);
  EXPECT_EQ(info.holds, 4u);
  EXPECT_EQ(info.owner_pid, 77);
  EXPECT_EQ(info.owner_uid, 1000u);
  EXPECT_EQ(info.owner_gid, 1002u);
  EXPECT_TRUE(info.connected);
  EXPECT_EQ(info.granted,
            absl::FromUnixSeconds(1700000100) + absl::Nanoseconds(9));
}

TEST(ProtoConvertTest, Lease) {
  const v1::Lease wire = FullLease();
  CheckEveryFieldSet(wire, kWholeSeconds);
  const LeaseInfo info = FromProto(wire);
  ExpectFullLease(info);
  EXPECT_TRUE(info.holds_by_buffer.empty());
}

TEST(ProtoConvertTest, LeaseTimeToLiveCarriesTheHolds) {
  v1::LeaseTimeToLiveResponse wire;
  *wire.mutable_lease() = FullLease();
  v1::LeaseHold* hold = wire.add_holds();
  hold->set_handle(11);
  hold->set_count(2);
  hold = wire.add_holds();
  hold->set_handle(12);
  hold->set_count(1);
  CheckEveryFieldSet(wire, kWholeSeconds);
  const LeaseInfo info = FromProto(wire);
  ExpectFullLease(info);
  EXPECT_THAT(info.holds_by_buffer, ElementsAre(Pair(11, 2), Pair(12, 1)));
}

void SetLatency(uint64_t samples, int64_t base_ms, v1::ReclaimLatency* out) {
  out->set_samples(samples);
  const auto nanos = static_cast<int32_t>(base_ms * 1000000);
  SetDuration(1, nanos, out->mutable_p50());
  SetDuration(2, nanos, out->mutable_p99());
  SetDuration(3, nanos, out->mutable_max());
}

void ExpectLatency(const LatencySummary& latency, uint64_t samples,
                   int64_t base_ms) {
  EXPECT_EQ(latency.samples, samples);
  EXPECT_EQ(latency.p50, absl::Seconds(1) + absl::Milliseconds(base_ms));
  EXPECT_EQ(latency.p99, absl::Seconds(2) + absl::Milliseconds(base_ms));
  EXPECT_EQ(latency.max, absl::Seconds(3) + absl::Milliseconds(base_ms));
}

v1::PoolStatus FullPool() {
  v1::PoolStatus pool;
  pool.set_enabled(true);
  pool.set_arena_size(64 << 20);
  pool.set_pooled_max_size(16 << 20);
  pool.set_pooled_large_max_size(256 << 20);
  pool.set_arenas(2);
  pool.set_large_arenas(1);
  pool.set_arena_bytes(128 << 20);
  pool.set_live_buffers(5);
  pool.set_in_use_bytes(1000);
  pool.set_free_bytes(2000);
  pool.set_span_tail_bytes(3000);
  pool.set_largest_free_run_bytes(4000);
  pool.set_scavenged_bytes_total(5000);
  pool.set_zeroed_bytes_total(6000);
  pool.set_arenas_created_total(7);
  pool.set_arenas_released_total(8);
  v1::SizeClassUsage* size_class = pool.add_size_classes();
  size_class->set_size(64);
  size_class->set_span_pages(1);
  size_class->set_spans(2);
  size_class->set_free_slots(3);
  size_class->set_live_slots(4);
  v1::TenantArenas* tenant = pool.add_tenants();
  tenant->set_uid(1000);
  tenant->set_arenas(2);
  tenant->set_in_use_bytes(1000);
  return pool;
}

TEST(ProtoConvertTest, Status) {
  v1::StatusResponse wire;
  wire.set_capacity_bytes(1 << 30);
  wire.set_allocated_bytes(100);
  wire.set_buffers(2);
  wire.set_clients(3);
  wire.set_holds(4);
  wire.set_version("0.1.0");
  wire.mutable_started()->set_seconds(1700000000);
  wire.mutable_started()->set_nanos(1);
  v1::TenantUsage* tenant = wire.add_tenants();
  tenant->set_uid(1000);
  tenant->set_allocated_bytes(100);
  tenant->set_buffers(2);
  wire.set_leases(6);
  wire.set_detached_leases(1);
  wire.set_waiters(3);
  wire.set_watchers(4);
  wire.set_revision(77);
  SetLatency(10, 5, wire.mutable_connection_close_reclaim());
  SetLatency(20, 7, wire.mutable_lease_expiry_reclaim());
  *wire.mutable_arenas() = FullPool();
  wire.set_committed_bytes(64 << 20);
  // Who asked is for the CLI's diagnostics, not part of DaemonStatus.
  CheckEveryFieldSet(wire,
                     {"shmbroker.v1.StatusResponse.caller_uid",
                      "shmbroker.v1.StatusResponse.caller_gid",
                      "shmbroker.v1.StatusResponse.caller_pid",
                      "shmbroker.v1.StatusResponse.caller_has_connection"});

  const DaemonStatus status = FromProto(wire);
  EXPECT_EQ(status.capacity_bytes, 1u << 30);
  EXPECT_EQ(status.allocated_bytes, 100u);
  EXPECT_EQ(status.committed_bytes, 64u << 20);
  EXPECT_EQ(status.buffers, 2u);
  EXPECT_EQ(status.clients, 3u);
  EXPECT_EQ(status.holds, 4u);
  EXPECT_EQ(status.version, "0.1.0");
  EXPECT_EQ(status.started,
            absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(1));
  ASSERT_EQ(status.tenants.size(), 1u);
  EXPECT_EQ(status.tenants[0].uid, 1000u);
  EXPECT_EQ(status.tenants[0].allocated_bytes, 100u);
  EXPECT_EQ(status.tenants[0].buffers, 2u);
  EXPECT_EQ(status.leases, 6u);
  EXPECT_EQ(status.detached_leases, 1u);
  EXPECT_EQ(status.waiters, 3u);
  EXPECT_EQ(status.watchers, 4u);
  EXPECT_EQ(status.revision, 77u);
  ExpectLatency(status.connection_close_reclaim, 10, 5);
  ExpectLatency(status.lease_expiry_reclaim, 20, 7);

  const PoolStatus& pool = status.arenas;
  EXPECT_TRUE(pool.enabled);
  EXPECT_EQ(pool.arena_size, 64u << 20);
  EXPECT_EQ(pool.pooled_max_size, 16u << 20);
  EXPECT_EQ(pool.pooled_large_max_size, 256u << 20);
  EXPECT_EQ(pool.arenas, 2u);
  EXPECT_EQ(pool.large_arenas, 1u);
  EXPECT_EQ(pool.arena_bytes, 128u << 20);
  EXPECT_EQ(pool.live_buffers, 5u);
  EXPECT_EQ(pool.in_use_bytes, 1000u);
  EXPECT_EQ(pool.free_bytes, 2000u);
  EXPECT_EQ(pool.span_tail_bytes, 3000u);
  EXPECT_EQ(pool.largest_free_run_bytes, 4000u);
  EXPECT_EQ(pool.scavenged_bytes_total, 5000u);
  EXPECT_EQ(pool.zeroed_bytes_total, 6000u);
  EXPECT_EQ(pool.arenas_created_total, 7u);
  EXPECT_EQ(pool.arenas_released_total, 8u);
  ASSERT_EQ(pool.size_classes.size(), 1u);
  EXPECT_EQ(pool.size_classes[0].size, 64u);
  EXPECT_EQ(pool.size_classes[0].span_pages, 1u);
  EXPECT_EQ(pool.size_classes[0].spans, 2u);
  EXPECT_EQ(pool.size_classes[0].free_slots, 3u);
  EXPECT_EQ(pool.size_classes[0].live_slots, 4u);
  ASSERT_EQ(pool.tenants.size(), 1u);
  EXPECT_EQ(pool.tenants[0].uid, 1000u);
  EXPECT_EQ(pool.tenants[0].arenas, 2u);
  EXPECT_EQ(pool.tenants[0].in_use_bytes, 1000u);
}

}  // namespace
}  // namespace shmbroker::client
