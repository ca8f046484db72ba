// The Registry's handoff: sealing (kernel-enforced for dedicated memfds,
// the daemon's books for pooled ones) and Attach calls that wait, without a
// thread, for a buffer to be created or sealed.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <optional>
#include <variant>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker::testing {
namespace {

using Code = absl::StatusCode;
using ::testing::AllOf;
using ::testing::HasSubstr;

class RegistryHandoffTest : public RegistryTestBase {
 protected:
  // A wait's outcome, once its callback ran.
  struct Outcome {
    std::optional<absl::StatusOr<Grant>> result;
    int calls = 0;
  };

  // Waits for `name`; the Outcome fills in when the callback runs.
  absl::StatusOr<std::variant<Grant, WaiterId>> Wait(
      ConnectionId client, const std::string& name, WaitFor until,
      Outcome* outcome, absl::Duration timeout = absl::Seconds(10)) {
    return registry_->AttachOrWait(client, name, AccessRequest::kBestAllowed, 0,
                                   until, clock_.Now() + timeout,
                                   [outcome](absl::StatusOr<Grant> grant) {
                                     outcome->result = std::move(grant);
                                     ++outcome->calls;
                                   });
  }

  static bool Waiting(const absl::StatusOr<std::variant<Grant, WaiterId>>& r) {
    return r.ok() && std::holds_alternative<WaiterId>(*r);
  }
};

TEST_F(RegistryHandoffTest, ASealedDedicatedMemfdCannotBeWrittenByAnyone) {
  ConnectionId alice = Open(kAlice);
  AllocateSpec spec = Spec(Pages(1), "frame");
  spec.kind = BufferKind::kDedicated;
  absl::StatusOr<Grant> grant = registry_->Allocate(alice, spec);
  ASSERT_THAT(grant, IsOk());
  const int fd = grant->memory->fd();
  ASSERT_EQ(::pwrite(fd, "data", 4, 0), 4);  // writable until sealed

  absl::StatusOr<BufferInfo> sealed =
      registry_->Seal(alice, BufferRef::ByName("frame"));
  ASSERT_THAT(sealed, IsOk());
  EXPECT_TRUE(sealed->sealed);
  EXPECT_TRUE(registry_->Describe(kAlice, BufferRef::ByName("frame"))->sealed);

  // The daemon's own read-write fd can no longer write: write(), a
  // writable shared mapping, fallocate.
  EXPECT_EQ(::pwrite(fd, "x", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(
      ::mmap(nullptr, Pages(1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
      MAP_FAILED);
  EXPECT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                        static_cast<off_t>(Pages(1))),
            -1);
  // A read-only shared mapping works, and cannot be made writable.
  void* ro = ::mmap(nullptr, Pages(1), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(ro, MAP_FAILED);
  EXPECT_EQ(std::string(static_cast<char*>(ro), 4), "data");
  EXPECT_NE(::mprotect(ro, Pages(1), PROT_READ | PROT_WRITE), 0);
  ::munmap(ro, Pages(1));

  // Later grants are read-only; asking for write access is refused.
  ConnectionId alice2 = Open(kAlice2);
  absl::StatusOr<Grant> reader = registry_->Attach(
      alice2, BufferRef::ByName("frame"), AccessRequest::kBestAllowed);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->mode, AccessMode::kReadOnly);
  EXPECT_TRUE(reader->read_only_fd.valid());
  EXPECT_THAT(registry_->Attach(alice2, BufferRef::ByName("frame"),
                                AccessRequest::kReadWrite),
              StatusIs(Code::kFailedPrecondition, HasSubstr("sealed")));
  // Sealing again is fine.
  EXPECT_THAT(registry_->Seal(alice, BufferRef::ByName("frame")), IsOk());
}

TEST_F(RegistryHandoffTest, SealingWhileAnyoneMapsItWritableIsRefused) {
  ConnectionId alice = Open(kAlice);
  AllocateSpec spec = Spec(Pages(1), "busy");
  spec.kind = BufferKind::kDedicated;
  absl::StatusOr<Grant> grant = registry_->Allocate(alice, spec);
  ASSERT_THAT(grant, IsOk());
  void* writable = ::mmap(nullptr, Pages(1), PROT_READ | PROT_WRITE, MAP_SHARED,
                          grant->memory->fd(), 0);
  ASSERT_NE(writable, MAP_FAILED);
  EXPECT_THAT(
      registry_->Seal(alice, BufferRef::ByName("busy")),
      StatusIs(Code::kFailedPrecondition, HasSubstr("maps it writable")));
  EXPECT_FALSE(registry_->Describe(kAlice, BufferRef::ByName("busy"))->sealed);
  ::munmap(writable, Pages(1));
  EXPECT_THAT(registry_->Seal(alice, BufferRef::ByName("busy")), IsOk());
}

TEST_F(RegistryHandoffTest, OnlyAHolderThatMayWriteSeals) {
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);
  ConnectionId bob = Open(kBob);
  Alloc(alice, 64, "shared", {kAllReadOnly});
  // Alice's other process holds nothing; Bob holds it read-only.
  EXPECT_THAT(registry_->Seal(alice2, BufferRef::ByName("shared")),
              StatusIs(Code::kPermissionDenied, HasSubstr("holds no")));
  ASSERT_THAT(registry_->Attach(bob, BufferRef::ByName("shared"),
                                AccessRequest::kBestAllowed),
              IsOk());
  EXPECT_THAT(registry_->Seal(bob, BufferRef::ByName("shared")),
              StatusIs(Code::kPermissionDenied, HasSubstr("may")));
  EXPECT_THAT(registry_->Seal(alice, BufferRef::ByName("nope")),
              StatusIs(Code::kNotFound, HasSubstr("no such buffer")));
}

TEST_F(RegistryHandoffTest, APosixBufferIsSealedInTheBooks) {
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 64, "named", {}, Backing::kPosix);
  absl::StatusOr<BufferInfo> sealed =
      registry_->Seal(alice, BufferRef::ByName("named"));
  ASSERT_THAT(sealed, IsOk());
  EXPECT_TRUE(sealed->sealed);
  ConnectionId alice2 = Open(kAlice2);
  absl::StatusOr<Grant> reader = registry_->Attach(
      alice2, BufferRef::ByName("named"), AccessRequest::kBestAllowed);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->mode, AccessMode::kReadOnly);
}

TEST_F(RegistryHandoffTest, AWaiterIsHandedTheBufferWhenItIsCreated) {
  ConnectionId consumer = Open(kAlice2);
  Outcome outcome;
  ASSERT_TRUE(Waiting(Wait(consumer, "next", WaitFor::kExists, &outcome)));
  EXPECT_EQ(outcome.calls, 0);
  ConnectionId producer = Open(kAlice);
  Handle h = Alloc(producer, 64, "next");
  ASSERT_EQ(outcome.calls, 1);
  ASSERT_THAT(*outcome.result, IsOk());
  EXPECT_EQ((*outcome.result)->buffer.handle, h);
  EXPECT_EQ(Holders(h), 2);  // the producer's and the consumer's
  EXPECT_EQ(registry_->Stats().holds, 2u);
  // An existing buffer is attached at once.
  Outcome unused;
  absl::StatusOr<std::variant<Grant, WaiterId>> now =
      Wait(consumer, "next", WaitFor::kExists, &unused);
  ASSERT_THAT(now, IsOk());
  EXPECT_TRUE(std::holds_alternative<Grant>(*now));
  EXPECT_EQ(Holders(h), 3);
}

TEST_F(RegistryHandoffTest, AWaiterForTheSealWaitsPastCreation) {
  ConnectionId consumer = Open(kAlice2);
  ConnectionId producer = Open(kAlice);
  Outcome outcome;
  ASSERT_TRUE(Waiting(Wait(consumer, "batch", WaitFor::kSealed, &outcome)));
  Handle h = Alloc(producer, 64, "batch");
  EXPECT_EQ(outcome.calls, 0);
  ASSERT_THAT(registry_->Seal(producer, BufferRef::ByHandle(h)), IsOk());
  ASSERT_EQ(outcome.calls, 1);
  ASSERT_THAT(*outcome.result, IsOk());
  EXPECT_EQ((*outcome.result)->mode, AccessMode::kReadOnly);
  EXPECT_TRUE((*outcome.result)->buffer.sealed);
}

TEST_F(RegistryHandoffTest, AWaiterLearnsNothingOfABufferItMayNotSee) {
  ConnectionId bob = Open(kBob);
  ConnectionId alice = Open(kAlice);
  Outcome outcome;
  ASSERT_TRUE(Waiting(
      Wait(bob, "private", WaitFor::kExists, &outcome, absl::Seconds(5))));
  Alloc(alice, 64, "private");  // owner-only: Bob may not see it
  EXPECT_EQ(outcome.calls, 0);
  EXPECT_EQ(registry_->NextWaiterDeadline(), clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  registry_->ExpireWaiters();
  ASSERT_EQ(outcome.calls, 1);
  // The same message as for a buffer that does not exist.
  EXPECT_THAT(*outcome.result,
              StatusIs(Code::kDeadlineExceeded,
                       HasSubstr("waiting for buffer \"private\" to be "
                                 "created")));
  EXPECT_FALSE(registry_->NextWaiterDeadline().has_value());
}

TEST_F(RegistryHandoffTest, CancelledAndClosedWaitersAreForgotten) {
  ConnectionId consumer = Open(kAlice2);
  Outcome cancelled, closed;
  auto first = Wait(consumer, "x", WaitFor::kExists, &cancelled);
  ASSERT_TRUE(Waiting(first));
  EXPECT_TRUE(registry_->CancelWait(std::get<WaiterId>(*first)));
  EXPECT_FALSE(registry_->CancelWait(std::get<WaiterId>(*first)));
  ASSERT_TRUE(Waiting(Wait(consumer, "x", WaitFor::kExists, &closed)));
  registry_->CloseConnection(consumer);
  EXPECT_EQ(cancelled.calls, 0);
  ASSERT_EQ(closed.calls, 1);
  EXPECT_THAT(*closed.result,
              StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
  // Nothing is left to wake or to hold.
  ConnectionId producer = Open(kAlice);
  Alloc(producer, 64, "x");
  EXPECT_EQ(registry_->Stats().holds, 1u);
  EXPECT_FALSE(registry_->NextWaiterDeadline().has_value());
}

TEST_F(RegistryHandoffTest, WaitersPerConnectionAreBounded) {
  RegistryOptions options = DefaultOptions();
  options.max_waiters_per_connection = 2;
  Reset(options);
  ConnectionId consumer = Open(kAlice);
  Outcome a, b, c;
  ASSERT_TRUE(Waiting(Wait(consumer, "a", WaitFor::kExists, &a)));
  ASSERT_TRUE(Waiting(Wait(consumer, "b", WaitFor::kExists, &b)));
  EXPECT_THAT(Wait(consumer, "c", WaitFor::kExists, &c),
              AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("2 waiting")),
                    RefusedBy(Limit::kMaxWaitersPerConnection)));
  EXPECT_THAT(Wait(Open(kAlice2), "c", WaitFor::kExists, &c), IsOk());
  EXPECT_THAT(Wait(consumer, "bad/name", WaitFor::kExists, &c),
              StatusIs(Code::kInvalidArgument, HasSubstr("name")));
}

}  // namespace
}  // namespace shmbroker::testing
