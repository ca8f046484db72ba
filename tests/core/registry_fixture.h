// A fixture for Registry tests: a registry on a fake clock with a small
// capacity, identities, and helpers that fail the test on unexpected errors.
#ifndef SHMBROKER_TESTS_CORE_REGISTRY_FIXTURE_H_
#define SHMBROKER_TESTS_CORE_REGISTRY_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker::testing {

inline constexpr Identity kAlice{.pid = 100, .uid = 1000, .gid = 1000};
inline constexpr Identity kAlice2{.pid = 101, .uid = 1000, .gid = 1000};
inline constexpr Identity kBob{.pid = 200, .uid = 2000, .gid = 2000};
inline constexpr Identity kRootId{.pid = 1, .uid = 0, .gid = 0};

class RegistryTestBase : public ::testing::Test {
 protected:
  static inline const absl::Time kStart =
      absl::FromUnixSeconds(1700000000);  // any fixed instant

  RegistryTestBase() : clock_(kStart) { Reset(DefaultOptions()); }

  static RegistryOptions DefaultOptions() {
    RegistryOptions options;
    options.capacity_bytes = 64 * PageSize();
    options.shm_prefix = UniqueShmName("reg");
    return options;
  }

  void Reset(RegistryOptions options) {
    registry_ = std::make_unique<Registry>(std::move(options), &clock_);
  }

  ConnectionId Open(const Identity& identity) {
    absl::StatusOr<ConnectionId> client = registry_->OpenConnection(identity);
    EXPECT_THAT(client, IsOk());
    return client.value_or(0);
  }

  // Allocates and returns the handle (0 after a failure, which is reported).
  Handle Alloc(ConnectionId client, uint64_t size, std::string name = "",
               std::vector<ShareRule> share = {},
               Backing backing = Backing::kMemfd) {
    absl::StatusOr<Grant> grant = registry_->Allocate(
        client, Spec(size, std::move(name), std::move(share), backing));
    EXPECT_THAT(grant, IsOk());
    return grant.ok() ? grant->buffer.handle : 0;
  }

  absl::StatusOr<Grant> AllocSpec(ConnectionId client, uint64_t size,
                                  std::string name = "") {
    return registry_->Allocate(client, Spec(size, std::move(name)));
  }

  static AllocateSpec Spec(uint64_t size, std::string name = "",
                           std::vector<ShareRule> share = {},
                           Backing backing = Backing::kMemfd) {
    AllocateSpec spec;
    spec.size = size;
    spec.name = std::move(name);
    spec.backing = backing;
    spec.share = std::move(share);
    return spec;
  }

  // Holders of a live buffer as the owner sees it; -1 when it is gone.
  int64_t Holders(Handle handle) {
    absl::StatusOr<BufferInfo> info =
        registry_->Describe(kRootId, BufferRef::ByHandle(handle));
    return info.ok() ? static_cast<int64_t>(info->holders) : -1;
  }

  static uint64_t Pages(uint64_t n) { return n * PageSize(); }

  ManualClock clock_;
  std::unique_ptr<Registry> registry_;
};

inline const ShareRule kAllReadOnly{.scope = ShareRule::Scope::kAll,
                                    .mode = AccessMode::kReadOnly};
inline const ShareRule kAllReadWrite{.scope = ShareRule::Scope::kAll,
                                     .mode = AccessMode::kReadWrite};

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_CORE_REGISTRY_FIXTURE_H_
