#include "core/memory_object.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::Mapping;
using ::shmbroker::testing::ShmExists;
using ::shmbroker::testing::ShmPath;
using ::shmbroker::testing::StatusIs;
using ::shmbroker::testing::UniqueShmName;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kSize = 3 * 4096 + 100;  // not a whole number of pages

std::unique_ptr<MemoryObject> MustCreate(const MemorySpec& spec) {
  absl::StatusOr<std::unique_ptr<MemoryObject>> object =
      CreateMemoryObject(spec);
  EXPECT_THAT(object, IsOk());
  return object.ok() ? std::move(*object) : nullptr;
}

MemorySpec Memfd(uint64_t size) {
  MemorySpec spec;
  spec.backing = Backing::kMemfd;
  spec.size = size;
  return spec;
}

MemorySpec Posix(uint64_t size, std::string name) {
  MemorySpec spec;
  spec.backing = Backing::kPosix;
  spec.size = size;
  spec.shm_name = std::move(name);
  return spec;
}

TEST(MemfdObjectTest, IsSizedAsRequested) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  EXPECT_EQ(object->size(), kSize);
  EXPECT_EQ(object->backing(), Backing::kMemfd);
  EXPECT_EQ(object->shm_name(), "");
  struct stat st;
  ASSERT_EQ(::fstat(object->fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(MemfdObjectTest, FdIsCloseOnExecAndCarriesTheLabel) {
  MemorySpec spec = Memfd(4096);
  spec.label = "label-for-test";
  std::unique_ptr<MemoryObject> object = MustCreate(spec);
  ASSERT_NE(object, nullptr);
  EXPECT_NE(::fcntl(object->fd(), F_GETFD) & FD_CLOEXEC, 0);
  char target[256] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(object->fd());
  ASSERT_GT(::readlink(link.c_str(), target, sizeof(target) - 1), 0);
  EXPECT_THAT(target, HasSubstr("memfd:label-for-test"));
}

TEST(MemfdObjectTest, IsSealedAgainstShrinkGrowAndNewSeals) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  EXPECT_EQ(::fcntl(object->fd(), F_GET_SEALS),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

TEST(MemfdObjectTest, TruncatingEitherWayFailsWithEperm) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  errno = 0;
  EXPECT_EQ(::ftruncate(object->fd(), 4096), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(::ftruncate(object->fd(), 2 * kSize), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(::ftruncate(object->fd(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  struct stat st;
  ASSERT_EQ(::fstat(object->fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
}

TEST(MemfdObjectTest, AddingASealFailsWithEperm) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  // A holder sealing writes would break every writer.
  errno = 0;
  EXPECT_EQ(::fcntl(object->fd(), F_ADD_SEALS, F_SEAL_WRITE), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::fcntl(object->fd(), F_GET_SEALS) & F_SEAL_WRITE, 0);
}

TEST(MemfdObjectTest, IsWritableThroughItsFd) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  Mapping rw(object->fd(), kSize, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(rw.ok()) << std::strerror(rw.error());
  rw.data()[kSize - 1] = 'z';  // the last byte, past the last whole page
  EXPECT_EQ(rw.data()[kSize - 1], 'z');
}

TEST(MemfdObjectTest, DestructionClosesTheFd) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(4096));
  ASSERT_NE(object, nullptr);
  const int fd = object->fd();
  ASSERT_NE(::fcntl(fd, F_GETFD), -1);
  object.reset();
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

// Read-only holders get a separate O_RDONLY description: they can read what
// writers store but can never map the pages writable.
void ExpectReadOnlyReopenWorks(const MemoryObject& object) {
  absl::StatusOr<UniqueFd> ro = object.OpenReadOnly();
  ASSERT_THAT(ro, IsOk());
  ASSERT_TRUE(ro->valid());
  EXPECT_NE(ro->get(), object.fd());
  EXPECT_EQ(::fcntl(ro->get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_NE(::fcntl(ro->get(), F_GETFD) & FD_CLOEXEC, 0);

  Mapping writable(ro->get(), object.size(), PROT_READ | PROT_WRITE);
  EXPECT_FALSE(writable.ok());
  EXPECT_EQ(writable.error(), EACCES);

  Mapping rw(object.fd(), object.size(), PROT_READ | PROT_WRITE);
  ASSERT_TRUE(rw.ok()) << std::strerror(rw.error());
  Mapping readable(ro->get(), object.size(), PROT_READ);
  ASSERT_TRUE(readable.ok()) << std::strerror(readable.error());
  std::memcpy(rw.data(), "hello", 5);
  rw.data()[object.size() - 1] = '!';
  EXPECT_EQ(std::string(readable.data(), 5), "hello");
  EXPECT_EQ(readable.data()[object.size() - 1], '!');

  // Nor can the read-only mapping be upgraded afterwards.
  errno = 0;
  EXPECT_EQ(::mprotect(readable.data(), object.size(), PROT_READ | PROT_WRITE),
            -1);
  EXPECT_EQ(errno, EACCES);
}

TEST(MemfdObjectTest, OpenReadOnlyCannotBeMappedWritable) {
  std::unique_ptr<MemoryObject> object = MustCreate(Memfd(kSize));
  ASSERT_NE(object, nullptr);
  ExpectReadOnlyReopenWorks(*object);
}

TEST(PosixShmObjectTest, OpenReadOnlyCannotBeMappedWritable) {
  std::unique_ptr<MemoryObject> object =
      MustCreate(Posix(kSize, UniqueShmName("ro")));
  ASSERT_NE(object, nullptr);
  ExpectReadOnlyReopenWorks(*object);
}

TEST(PosixShmObjectTest, ExistsWithMode0600WhileAliveAndIsUnlinkedAfter) {
  const std::string name = UniqueShmName("life");
  ASSERT_FALSE(ShmExists(name));
  std::unique_ptr<MemoryObject> object = MustCreate(Posix(kSize, name));
  ASSERT_NE(object, nullptr);
  EXPECT_EQ(object->backing(), Backing::kPosix);
  EXPECT_EQ(object->shm_name(), name);
  EXPECT_EQ(object->size(), kSize);

  struct stat st;
  ASSERT_EQ(::stat(ShmPath(name).c_str(), &st), 0) << ShmPath(name);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_NE(::fcntl(object->fd(), F_GETFD) & FD_CLOEXEC, 0);

  object.reset();
  EXPECT_FALSE(ShmExists(name));
}

TEST(PosixShmObjectTest, RandomSuffixMakesEachNameNewAndUnpredictable) {
  const std::string base = UniqueShmName("rand");
  MemorySpec spec = Posix(4096, base);
  spec.random_suffix = true;
  // The base name itself, taken by someone else, is no obstacle.
  std::unique_ptr<MemoryObject> squatter = MustCreate(Posix(4096, base));
  ASSERT_NE(squatter, nullptr);
  std::unique_ptr<MemoryObject> first = MustCreate(spec);
  std::unique_ptr<MemoryObject> second = MustCreate(spec);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_THAT(first->shm_name(),
              ::testing::MatchesRegex(base + "\\.[0-9a-f]{16}"));
  EXPECT_THAT(second->shm_name(),
              ::testing::MatchesRegex(base + "\\.[0-9a-f]{16}"));
  EXPECT_NE(first->shm_name(), second->shm_name());
  EXPECT_TRUE(ShmExists(first->shm_name()));
  const std::string name = first->shm_name();
  first.reset();
  EXPECT_FALSE(ShmExists(name));
  EXPECT_TRUE(ShmExists(base));  // the squatter's object is left alone
}

TEST(PosixShmObjectTest, TakenNameIsAlreadyExistsAndLeavesTheFirstAlone) {
  const std::string name = UniqueShmName("dup");
  std::unique_ptr<MemoryObject> first = MustCreate(Posix(4096, name));
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(CreateMemoryObject(Posix(8192, name)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(name)));
  // The failed create must not unlink or resize the name it does not own.
  struct stat st;
  ASSERT_EQ(::stat(ShmPath(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
  first.reset();
  EXPECT_FALSE(ShmExists(name));
}

TEST(PosixShmObjectTest, PagesOutliveTheObjectWhileMapped) {
  const std::string name = UniqueShmName("outlive");
  std::unique_ptr<MemoryObject> object = MustCreate(Posix(4096, name));
  ASSERT_NE(object, nullptr);
  Mapping map(object->fd(), 4096, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(map.ok());
  std::memcpy(map.data(), "still", 5);
  object.reset();
  EXPECT_FALSE(ShmExists(name));
  EXPECT_EQ(std::string(map.data(), 5), "still");
}

TEST(PosixShmObjectTest, RootDaemonGivesTheObjectToTheOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  MemorySpec spec = Posix(4096, UniqueShmName("chown"));
  spec.owner_uid = 4321;
  spec.owner_gid = 8765;
  std::unique_ptr<MemoryObject> object = MustCreate(spec);
  ASSERT_NE(object, nullptr);
  struct stat st;
  ASSERT_EQ(::fstat(object->fd(), &st), 0);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 8765u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(PosixShmObjectTest, RejectsNamesThatAreNotOneAbsoluteComponent) {
  const std::string base = UniqueShmName("bad");
  for (const std::string& name :
       {std::string(), std::string("/"), base.substr(1), base + "/x"}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(
        CreateMemoryObject(Posix(4096, name)),
        StatusIs(absl::StatusCode::kInternal, HasSubstr("bad shm name")));
  }
  EXPECT_FALSE(ShmExists(base));
}

TEST(ErrnoToStatusTest, MapsErrnoToCodesAndKeepsTheErrnoText) {
  EXPECT_THAT(ErrnoToStatus(ENOMEM, "memfd_create"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("memfd_create"),
                             HasSubstr(std::strerror(ENOMEM)))));
  for (int err : {ENOSPC, EMFILE, ENFILE}) {
    EXPECT_EQ(ErrnoToStatus(err, "x").code(),
              absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(ErrnoToStatus(EEXIST, "x").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoToStatus(EACCES, "x").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoToStatus(EIO, "x").code(), absl::StatusCode::kInternal);
}

TEST(BackingNameTest, NamesEachBacking) {
  EXPECT_STREQ(BackingName(Backing::kMemfd), "memfd");
  EXPECT_STREQ(BackingName(Backing::kPosix), "posix");
}

}  // namespace
}  // namespace shmbroker
