// The daemon's flags: defaults that work, bad values refused naming the
// flag, and the arena clamped to a sixteenth of the capacity.
#include "server/config.h"

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "common/byte_size.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(shmbroker::ByteSize, capacity);
ABSL_DECLARE_FLAG(uint64_t, max_buffers);
ABSL_DECLARE_FLAG(shmbroker::ByteSize, max_bytes_per_uid);
ABSL_DECLARE_FLAG(uint64_t, max_buffers_per_uid);
ABSL_DECLARE_FLAG(uint32_t, max_connections_per_uid);
ABSL_DECLARE_FLAG(std::string, log_format);
ABSL_DECLARE_FLAG(std::string, shm_prefix);
ABSL_DECLARE_FLAG(absl::Duration, lease_min_ttl);
ABSL_DECLARE_FLAG(absl::Duration, reclaim_pause);
ABSL_DECLARE_FLAG(absl::Duration, idle_connection_timeout);
ABSL_DECLARE_FLAG(absl::Duration, grpc_keepalive_timeout);

namespace shmbroker {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  absl::FlagSaver saver_;  // each test's flags are undone after it
};

TEST_F(ConfigTest, DefaultsMakeAWorkingDaemon) {
  absl::StatusOr<ServerConfig> config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->registry.capacity_bytes, DefaultCapacity());
  EXPECT_GT(config->registry.capacity_bytes, 0u);
  EXPECT_EQ(config->registry.max_buffers, 100000u);
  EXPECT_EQ(config->registry.leases.default_ttl, absl::Seconds(10));
  EXPECT_FALSE(config->socket_path.empty());
  EXPECT_THAT(config->registry.shm_prefix,
              ::testing::StartsWith("/shmbroker."));
}

TEST_F(ConfigTest, PerUidQuotasDefaultToHalfOfTheDaemonsLimits) {
  absl::SetFlag(&FLAGS_capacity, ByteSize{64 << 20});
  absl::SetFlag(&FLAGS_max_buffers, 1001);
  absl::StatusOr<ServerConfig> config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->registry.max_bytes_per_uid, uint64_t{32} << 20);
  EXPECT_EQ(config->registry.max_buffers_per_uid, 500u);
  EXPECT_EQ(config->max_grpc_connections_per_uid, 256u);
  // Set explicitly; never above the daemon's own limit.
  absl::SetFlag(&FLAGS_max_bytes_per_uid, ByteSize{1 << 20});
  absl::SetFlag(&FLAGS_max_buffers_per_uid, 10);
  config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->registry.max_bytes_per_uid, uint64_t{1} << 20);
  EXPECT_EQ(config->registry.max_buffers_per_uid, 10u);
  absl::SetFlag(&FLAGS_max_bytes_per_uid, ByteSize{1 << 30});
  absl::SetFlag(&FLAGS_max_buffers_per_uid, 5000);
  config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->registry.max_bytes_per_uid, uint64_t{64} << 20);
  EXPECT_EQ(config->registry.max_buffers_per_uid, 1001u);
  absl::SetFlag(&FLAGS_max_connections_per_uid, 0);
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--max_connections_per_uid"));
}

TEST_F(ConfigTest, EveryLimitHasAFlag) {
  for (int i = 0; i < kLimitCount; ++i) {
    EXPECT_THAT(FlagFor(static_cast<Limit>(i)), ::testing::StartsWith("--"))
        << i;
  }
  EXPECT_STREQ(FlagFor(Limit::kMaxBytesPerUid), "--max_bytes_per_uid");
  EXPECT_STREQ(FlagFor(Limit::kMaxBuffersPerUid), "--max_buffers_per_uid");
  EXPECT_STREQ(FlagFor(Limit::kMaxGrpcConnectionsPerUid),
               "--max_connections_per_uid");
}

TEST_F(ConfigTest, BadValuesAreRefusedNamingTheFlag) {
  absl::SetFlag(&FLAGS_max_buffers, 0);
  EXPECT_THAT(ConfigFromFlags().status().message(), HasSubstr("--max_buffers"));
  absl::SetFlag(&FLAGS_max_buffers, 10);
  absl::SetFlag(&FLAGS_log_format, "xml");
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--log_format=xml"));
  absl::SetFlag(&FLAGS_log_format, "text");
  absl::SetFlag(&FLAGS_shm_prefix, "../etc");
  EXPECT_THAT(ConfigFromFlags().status().message(), HasSubstr("--shm_prefix"));
  absl::SetFlag(&FLAGS_shm_prefix, "shmbroker");
  absl::SetFlag(&FLAGS_lease_min_ttl, absl::Seconds(30));
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--lease_min_ttl"));
  absl::SetFlag(&FLAGS_lease_min_ttl, absl::Seconds(1));
  absl::SetFlag(&FLAGS_reclaim_pause, absl::Milliseconds(5));
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--reclaim_pause"));
  absl::SetFlag(&FLAGS_reclaim_pause, absl::Microseconds(1));
  absl::SetFlag(&FLAGS_capacity, ByteSize{uint64_t{1} << 51});
  EXPECT_THAT(ConfigFromFlags().status().message(), HasSubstr("--capacity"));
  absl::SetFlag(&FLAGS_capacity, ByteSize{0});
  absl::SetFlag(&FLAGS_idle_connection_timeout, absl::Seconds(-1));
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--idle_connection_timeout"));
  absl::SetFlag(&FLAGS_idle_connection_timeout, absl::ZeroDuration());
  EXPECT_TRUE(ConfigFromFlags().ok());  // 0: never
  absl::SetFlag(&FLAGS_grpc_keepalive_timeout, absl::ZeroDuration());
  EXPECT_THAT(ConfigFromFlags().status().message(),
              HasSubstr("--grpc_keepalive_timeout"));
}

TEST_F(ConfigTest, EveryLimitNamesItsFlag) {
  EXPECT_STREQ(FlagFor(Limit::kFdReserve), "--fd_reserve");
  EXPECT_STREQ(FlagFor(Limit::kCapacity), "--capacity");
  absl::StatusOr<ServerConfig> config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->fd_reserve, 128u);
  EXPECT_EQ(config->idle_connection_timeout, absl::Minutes(5));
  EXPECT_EQ(config->registry.leases.reclaim_pause, absl::Microseconds(1));
}

TEST_F(ConfigTest, AnArenaIsAtMostASixteenthOfTheCapacity) {
  absl::SetFlag(&FLAGS_capacity, ByteSize{uint64_t{256} << 20});
  absl::StatusOr<ServerConfig> config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->pooling);
  EXPECT_EQ(config->pool.arena_size, uint64_t{16} << 20);
  absl::SetFlag(&FLAGS_capacity, ByteSize{uint64_t{8} << 20});
  config = ConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->pooling);
  EXPECT_THAT(config->pooling_off_reason, HasSubstr("under 16MiB"));
}

}  // namespace
}  // namespace shmbroker
