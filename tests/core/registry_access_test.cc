// Registry: who sees and attaches what, listing, read-only grants, POSIX
// backing names and the injected clock.
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::kAllReadOnly;
using ::shmbroker::testing::kAllReadWrite;
using ::shmbroker::testing::kBob;
using ::shmbroker::testing::kRootId;
using ::shmbroker::testing::Mapping;
using ::shmbroker::testing::ShmExists;
using ::shmbroker::testing::ShmPath;
using ::shmbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Code = absl::StatusCode;

class RegistryAccessTest : public ::shmbroker::testing::RegistryTestBase {
 protected:
  std::vector<Handle> ListAll(const Identity& caller) {
    bool more = true;
    std::vector<Handle> handles;
    for (const BufferInfo& info : registry_->List(caller, 0, 1000, &more)) {
      handles.push_back(info.handle);
    }
    EXPECT_FALSE(more);
    return handles;
  }
};

TEST_F(RegistryAccessTest, StrangerCannotAttachOrDescribeOwnerOnlyBuffer) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle h = Alloc(alice, 1, "private");
  EXPECT_THAT(
      registry_->Attach(bob, BufferRef::ByHandle(h), AccessRequest::kReadOnly),
      StatusIs(Code::kPermissionDenied, HasSubstr("uid 2000")));
  EXPECT_THAT(
      registry_->Attach(bob, BufferRef::ByName("private"),
                        AccessRequest::kBestAllowed),
      StatusIs(Code::kPermissionDenied, HasSubstr("permission denied")));
  EXPECT_THAT(registry_->Describe(kBob, BufferRef::ByHandle(h)),
              StatusIs(Code::kPermissionDenied, HasSubstr("may not see")));
  EXPECT_EQ(Holders(h), 1);
  EXPECT_EQ(registry_->Stats().holds, 1u);
}

TEST_F(RegistryAccessTest, RootAttachesAndDescribesAnything) {
  ConnectionId alice = Open(kAlice);
  ConnectionId root = Open(kRootId);
  Handle h = Alloc(alice, 1);
  absl::StatusOr<Grant> grant = registry_->Attach(root, BufferRef::ByHandle(h),
                                                  AccessRequest::kReadWrite);
  ASSERT_THAT(grant, IsOk());
  EXPECT_EQ(grant->mode, AccessMode::kReadWrite);
  EXPECT_EQ(registry_->Describe(kRootId, BufferRef::ByHandle(h))->owner,
            kAlice);
}

TEST_F(RegistryAccessTest, ReadOnlyShareGivesAnFdThatCannotBeMappedWritable) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  absl::StatusOr<Grant> owner =
      registry_->Allocate(alice, Spec(5000, "pub", {kAllReadOnly}));
  ASSERT_THAT(owner, IsOk());
  Mapping writer(owner->fd_to_send(), 5000, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(writer.ok()) << std::strerror(writer.error());

  absl::StatusOr<Grant> reader = registry_->Attach(
      bob, BufferRef::ByName("pub"), AccessRequest::kBestAllowed);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->mode, AccessMode::kReadOnly);
  ASSERT_TRUE(reader->read_only_fd.valid());
  EXPECT_EQ(reader->fd_to_send(), reader->read_only_fd.get());
  EXPECT_NE(reader->fd_to_send(), owner->memory->fd());

  Mapping writable(reader->fd_to_send(), 5000, PROT_READ | PROT_WRITE);
  EXPECT_FALSE(writable.ok());
  EXPECT_EQ(writable.error(), EACCES);
  Mapping readable(reader->fd_to_send(), 5000, PROT_READ);
  ASSERT_TRUE(readable.ok()) << std::strerror(readable.error());
  std::memcpy(writer.data() + 4500, "published", 9);
  EXPECT_EQ(std::string(readable.data() + 4500, 9), "published");

  EXPECT_THAT(registry_->Attach(bob, BufferRef::ByName("pub"),
                                AccessRequest::kReadWrite),
              StatusIs(Code::kPermissionDenied, HasSubstr("read-only")));
  EXPECT_EQ(Holders(owner->buffer.handle), 2);
}

TEST_F(RegistryAccessTest, ReadWriteShareAndOwnerReadOnlyRequest) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle h = Alloc(alice, 1, "", {kAllReadWrite});
  absl::StatusOr<Grant> rw = registry_->Attach(bob, BufferRef::ByHandle(h),
                                               AccessRequest::kBestAllowed);
  ASSERT_THAT(rw, IsOk());
  EXPECT_EQ(rw->mode, AccessMode::kReadWrite);
  EXPECT_FALSE(rw->read_only_fd.valid());

  // Even the owner gets a read-only fd when asking for read-only.
  absl::StatusOr<Grant> ro = registry_->Attach(alice, BufferRef::ByHandle(h),
                                               AccessRequest::kReadOnly);
  ASSERT_THAT(ro, IsOk());
  EXPECT_EQ(ro->mode, AccessMode::kReadOnly);
  ASSERT_TRUE(ro->read_only_fd.valid());
  Mapping writable(ro->fd_to_send(), 1, PROT_WRITE);
  EXPECT_EQ(writable.error(), EACCES);
}

TEST_F(RegistryAccessTest, DescribeShowsSharedBuffersToStrangers) {
  ConnectionId alice = Open(kAlice);
  Handle h = Alloc(alice, 1, "shared",
                   {ShareRule{.scope = ShareRule::Scope::kUid,
                              .id = kBob.uid,
                              .mode = AccessMode::kReadOnly}});
  absl::StatusOr<BufferInfo> info =
      registry_->Describe(kBob, BufferRef::ByName("shared"));
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->handle, h);
  EXPECT_EQ(info->owner, kAlice);
  ASSERT_EQ(info->share.size(), 1u);
  EXPECT_EQ(info->share[0].id, kBob.uid);
  const Identity carol{.pid = 300, .uid = 3000, .gid = 3000};
  EXPECT_THAT(registry_->Describe(carol, BufferRef::ByName("shared")),
              StatusIs(Code::kPermissionDenied, HasSubstr("uid 3000")));
}

TEST_F(RegistryAccessTest, ListShowsOnlyWhatTheCallerMaySee) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle alice_private = Alloc(alice, 1);
  Handle alice_shared = Alloc(alice, 1, "", {kAllReadOnly});
  Handle bob_private = Alloc(bob, 1);
  EXPECT_THAT(ListAll(kAlice), ElementsAre(alice_private, alice_shared));
  EXPECT_THAT(ListAll(kBob), ElementsAre(alice_shared, bob_private));
  EXPECT_THAT(ListAll(kRootId),
              ElementsAre(alice_private, alice_shared, bob_private));
  const Identity carol{.pid = 300, .uid = 3000, .gid = 3000};
  EXPECT_THAT(ListAll(carol), ElementsAre(alice_shared));
}

TEST_F(RegistryAccessTest, ListPagesThroughManyBuffersInHandleOrder) {
  ConnectionId alice = Open(kAlice);
  std::vector<Handle> all;
  for (int i = 0; i < 25; ++i) all.push_back(Alloc(alice, 1));

  std::vector<Handle> seen;
  std::vector<size_t> page_sizes;
  Handle after = 0;
  bool more = true;
  while (more) {
    std::vector<BufferInfo> page = registry_->List(kAlice, after, 10, &more);
    ASSERT_FALSE(page.empty());
    page_sizes.push_back(page.size());
    for (const BufferInfo& info : page) seen.push_back(info.handle);
    after = page.back().handle;
    ASSERT_LE(page_sizes.size(), 3u) << "pagination does not end";
  }
  EXPECT_THAT(page_sizes, ElementsAre(10, 10, 5));
  EXPECT_EQ(seen, all);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_THAT(registry_->List(kAlice, all.back(), 10, &more), IsEmpty());
  EXPECT_FALSE(more);
}

TEST_F(RegistryAccessTest, ListMoreIgnoresBuffersTheCallerCannotSee) {
  ConnectionId alice = Open(kAlice);
  std::vector<Handle> visible;
  for (int i = 0; i < 6; ++i) {
    Handle shared = Alloc(alice, 1, "", {kAllReadOnly});
    Alloc(alice, 1);  // private, interleaved
    visible.push_back(shared);
  }
  bool more = false;
  std::vector<BufferInfo> first = registry_->List(kBob, 0, 4, &more);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_TRUE(more);
  // Exactly the two remaining visible ones, then only private ones follow.
  std::vector<BufferInfo> second =
      registry_->List(kBob, first.back().handle, 2, &more);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1].handle, visible[5]);
  EXPECT_FALSE(more);
}

TEST_F(RegistryAccessTest, PosixBufferIsNamedAfterPrefixHandleAndRandom) {
  // Someone took the name the buffer would have had without its random
  // part: that stops nothing, and their object is left alone.
  const std::string predictable = registry_->options().shm_prefix + ".1";
  MemorySpec squatter_spec;
  squatter_spec.backing = Backing::kPosix;
  squatter_spec.size = 1;
  squatter_spec.shm_name = predictable;
  absl::StatusOr<std::unique_ptr<MemoryObject>> squatter =
      CreateMemoryObject(squatter_spec);
  ASSERT_THAT(squatter, IsOk());
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(::shmbroker::testing::kAlice2);
  absl::StatusOr<Grant> grant =
      registry_->Allocate(alice, Spec(6000, "", {}, Backing::kPosix));
  ASSERT_THAT(grant, IsOk());
  const Handle h = grant->buffer.handle;
  EXPECT_EQ(h, 1u);
  const std::string expected = grant->buffer.shm_name;
  EXPECT_THAT(expected,
              ::testing::MatchesRegex(predictable + "\\.[0-9a-f]{16}"));
  EXPECT_TRUE(ShmExists(predictable));
  EXPECT_EQ(grant->buffer.backing, Backing::kPosix);
  EXPECT_EQ(grant->memory->shm_name(), expected);
  struct stat st;
  ASSERT_EQ(::stat(ShmPath(expected).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 6000);
  EXPECT_EQ(registry_->Describe(kAlice, BufferRef::ByHandle(h))->shm_name,
            expected);
  grant->memory.reset();  // only the registry keeps the object now

  ASSERT_THAT(registry_->Attach(alice2, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed),
              IsOk());
  ASSERT_EQ(registry_->Release(alice, h).value(), 1u);
  EXPECT_TRUE(ShmExists(expected));  // still held by alice2
  ASSERT_EQ(registry_->Release(alice2, h).value(), 0u);
  EXPECT_FALSE(ShmExists(expected));
}

TEST_F(RegistryAccessTest, PosixNameIsUnlinkedWhenTheClientCloses) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> grant =
      registry_->Allocate(alice, Spec(1, "", {}, Backing::kPosix));
  ASSERT_THAT(grant, IsOk());
  const std::string name = grant->buffer.shm_name;
  grant->memory.reset();
  ASSERT_TRUE(ShmExists(name));
  EXPECT_EQ(registry_->CloseConnection(alice).buffers_reclaimed, 1u);
  EXPECT_FALSE(ShmExists(name));
}

TEST_F(RegistryAccessTest, MemfdBufferHasNoShmName) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> grant = AllocSpec(alice, 1);
  ASSERT_THAT(grant, IsOk());
  EXPECT_EQ(grant->buffer.shm_name, "");
}

TEST_F(RegistryAccessTest, FailedSegmentCreationGivesEverythingBack) {
  // Every segment is refused after it was created (its fd is past the
  // ceiling), so the posix object existed for a moment.
  RegistryOptions options = DefaultOptions();
  options.max_segment_fd = 1;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(
      registry_->Allocate(alice, Spec(1, "wanted", {}, Backing::kPosix)),
      StatusIs(Code::kResourceExhausted, HasSubstr("file descriptors")));
  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.buffers, 0u);
  EXPECT_EQ(stats.holds, 0u);
  // The name was released, and nothing is left in /dev/shm.
  EXPECT_EQ(
      registry_->Describe(kAlice, BufferRef::ByName("wanted")).status().code(),
      Code::kNotFound);
  const std::string prefix = registry_->options().shm_prefix.substr(1);
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    EXPECT_FALSE(absl::StartsWith(entry.path().filename().string(), prefix))
        << entry.path();
  }
}

TEST_F(RegistryAccessTest, CreatedTimeComesFromTheInjectedClock) {
  ConnectionId alice = Open(kAlice);
  Handle first = Alloc(alice, 1);
  clock_.Advance(absl::Seconds(90));
  absl::StatusOr<Grant> second = AllocSpec(alice, 1);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->buffer.created, kStart + absl::Seconds(90));
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(registry_->Describe(kAlice, BufferRef::ByHandle(first))->created,
            kStart);
}

}  // namespace
}  // namespace shmbroker
