// Registry: limits that protect the daemon itself (its file descriptors).
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "common/unique_fd.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::RefusedBy;
using ::shmbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Code = absl::StatusCode;

class RegistryLimitsTest : public ::shmbroker::testing::RegistryTestBase {};

// The lowest fd number free now (what the next segment would get).
int NextFd() {
  UniqueFd probe(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return probe.get();
}

TEST_F(RegistryLimitsTest, SegmentPastTheFdCeilingIsRefusedAndLeavesNothing) {
  // Room for exactly two more segments below the ceiling.
  RegistryOptions options = DefaultOptions();
  options.max_segment_fd = static_cast<uint64_t>(NextFd()) + 2;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  Handle first = Alloc(alice, 1);
  Handle second = Alloc(alice, 1, "", {}, Backing::kPosix);
  EXPECT_THAT(AllocSpec(alice, 1),
              AllOf(StatusIs(Code::kResourceExhausted,
                             HasSubstr("out of file descriptors")),
                    RefusedBy(Limit::kFdReserve)));
  EXPECT_EQ(registry_->Stats().buffers, 2u);
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(2));
  // The refused segment's fd was closed: the next one gets it once a
  // segment goes.
  ASSERT_EQ(registry_->Release(alice, first).value(), 0u);
  EXPECT_THAT(AllocSpec(alice, 1), IsOk());
  ASSERT_EQ(registry_->Release(alice, second).value(), 0u);
}

}  // namespace
}  // namespace shmbroker
