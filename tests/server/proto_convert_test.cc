// The gRPC edge: requests become core specs or INVALID_ARGUMENT naming the
// field, statuses keep their code and gain the flag of the limit that
// refused, and values survive the round trip.
#include "server/proto_convert.h"

#include "core/limit.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"

namespace shmbroker {
namespace {

using ::testing::HasSubstr;

TEST(ProtoConvertTest, AnAllocateRequestBecomesItsSpec) {
  v1::AllocateRequest request;
  request.set_size(4096);
  request.set_name("frames");
  request.set_backing(v1::BACKING_POSIX);
  request.set_lease_id(7);
  request.set_kind(v1::BUFFER_KIND_DEDICATED);
  request.set_uninitialized(true);
  v1::ShareRule* rule = request.add_share();
  rule->set_scope(v1::SHARE_SCOPE_GID);
  rule->set_id(100);
  rule->set_mode(v1::ACCESS_MODE_READ_WRITE);
  absl::StatusOr<AllocateSpec> spec = FromProto(request);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->size, 4096u);
  EXPECT_EQ(spec->name, "frames");
  EXPECT_EQ(spec->backing, Backing::kPosix);
  EXPECT_EQ(spec->lease, 7u);
  EXPECT_EQ(spec->kind, BufferKind::kDedicated);
  EXPECT_FALSE(spec->zeroed);
  ASSERT_EQ(spec->share.size(), 1u);
  EXPECT_EQ(spec->share[0],
            (ShareRule{ShareRule::Scope::kGid, 100, AccessMode::kReadWrite}));
}

TEST(ProtoConvertTest, DefaultsAreTheDaemonsChoice) {
  v1::AllocateRequest request;
  request.set_size(1);
  absl::StatusOr<AllocateSpec> spec = FromProto(request);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->backing, Backing::kMemfd);
  EXPECT_FALSE(spec->kind.has_value());
  EXPECT_TRUE(spec->zeroed);
  EXPECT_TRUE(spec->share.empty());
  // A share rule without a mode is read-only.
  request.add_share()->set_scope(v1::SHARE_SCOPE_ALL);
  EXPECT_EQ(FromProto(request)->share[0].mode, AccessMode::kReadOnly);
}

TEST(ProtoConvertTest, UnknownEnumValuesAreRefusedNamingTheField) {
  v1::AllocateRequest request;
  request.set_size(1);
  request.set_backing(static_cast<v1::Backing>(9));
  EXPECT_THAT(FromProto(request).status().message(), HasSubstr("bad backing"));
  request.set_backing(v1::BACKING_MEMFD);
  request.set_kind(static_cast<v1::BufferKind>(9));
  EXPECT_THAT(FromProto(request).status().message(), HasSubstr("bad kind"));
  request.set_kind(v1::BUFFER_KIND_UNSPECIFIED);
  request.add_share()->set_scope(v1::SHARE_SCOPE_UNSPECIFIED);
  EXPECT_THAT(FromProto(request).status().message(),
              HasSubstr("bad share: scope"));
  request.mutable_share(0)->set_scope(v1::SHARE_SCOPE_UID);
  request.mutable_share(0)->set_mode(static_cast<v1::AccessMode>(9));
  EXPECT_THAT(FromProto(request).status().message(),
              HasSubstr("bad share: mode"));
  EXPECT_FALSE(FromProto(static_cast<v1::AccessMode>(9)).ok());
}

TEST(ProtoConvertTest, DurationsFollowTheProtosRules) {
  google::protobuf::Duration d;
  d.set_seconds(2);
  d.set_nanos(500000000);
  EXPECT_EQ(*FromProto(d), absl::Milliseconds(2500));
  ToProto(absl::Milliseconds(-1500), &d);
  EXPECT_EQ(*FromProto(d), absl::Milliseconds(-1500));
  d.set_seconds(1);
  d.set_nanos(-1);  // signs must agree
  EXPECT_FALSE(FromProto(d).ok());
  d.set_seconds(0);
  d.set_nanos(1000000000);  // nanos out of range
  EXPECT_FALSE(FromProto(d).ok());
  // Seconds beyond the proto's 10,000 years (found by fuzz_rpc_requests: a
  // wait_timeout of 2^56 s was taken, and printed back wrong).
  d.set_nanos(0);
  d.set_seconds(int64_t{1} << 56);
  EXPECT_FALSE(FromProto(d).ok());
  d.set_seconds(-315576000001);
  EXPECT_FALSE(FromProto(d).ok());
  // The longest durations the proto allows survive a round trip exactly.
  for (int64_t seconds : {int64_t{315576000000}, int64_t{-315576000000}}) {
    d.set_seconds(seconds);
    d.set_nanos(seconds > 0 ? 999999999 : -999999999);
    absl::StatusOr<absl::Duration> taken = FromProto(d);
    ASSERT_TRUE(taken.ok()) << taken.status();
    google::protobuf::Duration back;
    ToProto(*taken, &back);
    EXPECT_EQ(back.seconds(), d.seconds());
    EXPECT_EQ(back.nanos(), d.nanos());
  }
}

TEST(ProtoConvertTest, StatusesKeepTheirCodeAndNameTheFlagOfTheirLimit) {
  grpc::Status plain = ToGrpcStatus(absl::NotFoundError("no such buffer"));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(plain.error_message(), "no such buffer");
  grpc::Status limited = ToGrpcStatus(
      LimitReached(Limit::kMaxBuffers, "too many buffers: 2 live"));
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(limited.error_message(),
            "too many buffers: 2 live (--max_buffers)");
  grpc::Status off = ToGrpcStatus(LimitError(
      absl::StatusCode::kFailedPrecondition, Limit::kPoolingOff, "off"));
  EXPECT_EQ(off.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(off.error_message(), "off (--pooling=false)");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(ProtoConvertTest, EveryLimitHasAFlag) {
  for (Limit limit :
       {Limit::kCapacity, Limit::kMaxBuffers, Limit::kMaxConnectionsPerUid,
        Limit::kMaxHoldsPerLease, Limit::kMaxLeasesPerConnection,
        Limit::kMaxDetachedLeasesPerUid, Limit::kPooledMaxSize,
        Limit::kPoolingOff}) {
    EXPECT_THAT(FlagFor(limit), ::testing::StartsWith("--"));
  }
}

TEST(ProtoConvertTest, ABufferKeepsEveryFieldOnTheWire) {
  BufferInfo info;
  info.handle = 3;
  info.name = "n";
  info.size = 100;
  info.charged_bytes = 128;
  info.backing = Backing::kMemfd;
  info.kind = BufferKind::kPooled;
  info.arena_id = 2;
  info.offset = 4096;
  info.owner = Identity{10, 1000, 1001};
  info.share = {{ShareRule::Scope::kUid, 5, AccessMode::kReadWrite}};
  info.created = absl::FromUnixMillis(1700000000123);
  info.holders = 2;
  v1::Buffer out;
  ToProto(info, &out);
  EXPECT_EQ(out.handle(), 3u);
  EXPECT_EQ(out.name(), "n");
  EXPECT_EQ(out.size(), 100u);
  EXPECT_EQ(out.charged_bytes(), 128u);
  EXPECT_EQ(out.kind(), v1::BUFFER_KIND_POOLED);
  EXPECT_EQ(out.arena_id(), 2u);
  EXPECT_EQ(out.offset(), 4096u);
  EXPECT_EQ(out.owner_pid(), 10);
  EXPECT_EQ(out.owner_uid(), 1000u);
  EXPECT_EQ(out.owner_gid(), 1001u);
  EXPECT_EQ(out.holders(), 2u);
  EXPECT_EQ(out.created().seconds(), 1700000000);
  EXPECT_EQ(out.created().nanos(), 123000000);
  ASSERT_EQ(out.share_size(), 1);
  EXPECT_EQ(out.share(0).scope(), v1::SHARE_SCOPE_UID);
  EXPECT_EQ(out.share(0).mode(), v1::ACCESS_MODE_READ_WRITE);
  // And back, as the share rules a request would carry.
  EXPECT_EQ(FromProto(out.share())->at(0), info.share[0]);
}

}  // namespace
}  // namespace shmbroker
