// The client library against the real daemon: allocate, attach, release,
// both backings, data across processes, seals and read-only holders.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/client.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

// The memory behind the buffers: every test runs with each kind, since to
// the application a pooled buffer must behave as a dedicated one.
struct Memory {
  client::Backing backing;
  client::Kind kind;
  const char* name;
};

class ClientLibraryTest : public DaemonTest,
                          public ::testing::WithParamInterface<Memory> {
 protected:
  client::AllocateOptions Options(uint64_t size, const std::string& name) {
    client::AllocateOptions options;
    options.size = size;
    options.name = name;
    options.backing = GetParam().backing;
    options.kind = GetParam().kind;
    return options;
  }
  bool pooled() const { return GetParam().kind == client::Kind::kPooled; }
};

TEST_P(ClientLibraryTest, AllocateMapsWritableMemoryOfTheRequestedSize) {
  auto buffer = client_->Allocate(Options(10000, "frames"));
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->size(), 10000u);
  EXPECT_FALSE(buffer->read_only());
  EXPECT_EQ(buffer->info().name, "frames");
  EXPECT_EQ(buffer->info().holders, 1u);
  EXPECT_EQ(buffer->info().owner_uid, ::getuid());
  EXPECT_EQ(buffer->info().owner_pid, ::getpid());
  std::memset(buffer->data(), 0xab, buffer->size());
  EXPECT_EQ(buffer->data()[9999], 0xab);
  struct stat st {};
  ASSERT_EQ(::fstat(buffer->fd(), &st), 0);
  if (pooled()) {
    // A 10240-byte slot (size class) at a 64-byte aligned offset in an
    // arena, which the fd refers to as a whole.
    EXPECT_EQ(buffer->kind(), client::Kind::kPooled);
    EXPECT_EQ(buffer->info().charged_bytes, 10240u);
    EXPECT_EQ(buffer->offset() % 64, 0u);
    EXPECT_EQ(st.st_size, 64 << 20);
    EXPECT_NE(buffer->info().arena_id, 0u);
  } else {
    EXPECT_EQ(buffer->kind(), client::Kind::kDedicated);
    EXPECT_EQ(buffer->info().charged_bytes, 12288u);
    EXPECT_EQ(buffer->offset(), 0u);
    EXPECT_EQ(st.st_size, 10000);
  }
}

TEST_P(ClientLibraryTest, DataWrittenHereIsReadByAnotherProcess) {
  auto buffer = client_->Allocate(Options(64, "greeting"));
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  const std::string text = "written by the test process, read by the CLI....";
  std::memset(buffer->data(), 0, buffer->size());
  std::memcpy(buffer->data(), text.data(), text.size());
  Finished cat = daemon_->Cli({"cat", "greeting"});
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, text + std::string(64 - text.size(), '\0'));
}

TEST_P(ClientLibraryTest, DataWrittenByAnotherProcessIsSeenHere) {
  Subprocess put(daemon_->CliArgs({"put", "from-cli", "--hold=60s"}),
                 "hello from the CLI");
  ASSERT_TRUE(put.WaitForOutput("from-cli", absl::Seconds(10)));
  auto attached = client_->Attach("from-cli");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_EQ(
      std::string(reinterpret_cast<char*>(attached->data()), attached->size()),
      "hello from the CLI");
  EXPECT_EQ(attached->info().holders, 2u);
}

TEST_P(ClientLibraryTest, HoldsAreCountedAndTheLastReleaseReclaims) {
  auto first = client_->Allocate(Options(4096, "counted"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = client_->Attach("counted");
  ASSERT_TRUE(second.ok()) << second.status();
  auto third = client_->AttachHandle(first->handle());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(client_->Describe("counted")->holders, 3u);

  ASSERT_TRUE(second->Release().ok());
  EXPECT_EQ(client_->Describe("counted")->holders, 2u);
  ASSERT_TRUE(first->Release().ok());
  // Destruction releases over the fd channel; the daemon applies it before
  // this client's next call, so Describe already sees the buffer gone.
  *third = client::Buffer();
  auto gone = client_->Describe("counted");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  auto status = client_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->buffers, 0u);
  EXPECT_EQ(status->allocated_bytes, 0u);
}

TEST_P(ClientLibraryTest, ReleasedNameCanBeTakenAgain) {
  {
    auto buffer = client_->Allocate(Options(100, "reused"));
    ASSERT_TRUE(buffer.ok()) << buffer.status();
  }
  auto again = client_->Allocate(Options(200, "reused"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->size(), 200u);
}

TEST_P(ClientLibraryTest, ReadOnlyHolderCannotWrite) {
  auto owner = client_->Allocate(Options(8192, "published"));
  ASSERT_TRUE(owner.ok()) << owner.status();
  std::memcpy(owner->data(), "v1", 2);
  auto reader = client_->Attach("published", client::Access::kReadOnly);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->read_only());
  EXPECT_EQ(std::memcmp(reader->data(), "v1", 2), 0);
  // The fd is O_RDONLY: no writable shared mapping, no write(2), and the
  // read-only mapping cannot be made writable.
  void* w = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED,
                   reader->fd(), 0);
  EXPECT_EQ(w, MAP_FAILED);
  EXPECT_EQ(errno, EACCES);
  EXPECT_EQ(::write(reader->fd(), "x", 1), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(::mprotect(reader->data(), 4096, PROT_READ | PROT_WRITE), -1);
  EXPECT_EQ(errno, EACCES);
  // Writes by the owner remain visible to the reader.
  std::memcpy(owner->data(), "v2", 2);
  EXPECT_EQ(std::memcmp(reader->data(), "v2", 2), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Memories, ClientLibraryTest,
    ::testing::Values(
        Memory{client::Backing::kMemfd, client::Kind::kDedicated, "memfd"},
        Memory{client::Backing::kPosix, client::Kind::kDefault, "posix"},
        Memory{client::Backing::kMemfd, client::Kind::kPooled, "pooled"}),
    [](const auto& info) { return std::string(info.param.name); });

using ClientLibrarySingleTest = DaemonTest;

TEST_F(ClientLibrarySingleTest, SealedMemfdCannotBeShrunkGrownOrResealed) {
  auto buffer =
      client_->Allocate({1 << 20, "sealed", client::Backing::kMemfd, {}});
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(::ftruncate(buffer->fd(), 4096), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(buffer->fd(), 2 << 20), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::fcntl(buffer->fd(), F_ADD_SEALS, F_SEAL_WRITE), -1);
  EXPECT_EQ(errno, EPERM);
  const int seals = ::fcntl(buffer->fd(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  // The memory is intact after the failed attempts.
  buffer->data()[(1 << 20) - 1] = 7;
  EXPECT_EQ(buffer->data()[(1 << 20) - 1], 7);
}

TEST_F(ClientLibrarySingleTest,
       PosixBufferIsOpenableByItsShmNameUntilReclaimed) {
  std::string shm_name;
  {
    auto buffer =
        client_->Allocate({4096, "named", client::Backing::kPosix, {}});
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    shm_name = buffer->info().shm_name;
    ASSERT_FALSE(shm_name.empty());
    EXPECT_THAT(shm_name, ::testing::Not(HasSubstr("named")));
    std::memcpy(buffer->data(), "by name", 7);
    int fd = ::shm_open(shm_name.c_str(), O_RDONLY, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    char got[7];
    ASSERT_EQ(::pread(fd, got, 7, 0), 7);
    EXPECT_EQ(std::string(got, 7), "by name");
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_uid, ::getuid());
    ::close(fd);
  }
  // The destructor's release goes over the fd channel, which no gRPC call
  // orders (a Ping may be answered before the daemon reads it): wait.
  EXPECT_TRUE(WaitFor("the name unlinked", [&](std::string* seen) {
    const int fd = ::shm_open(shm_name.c_str(), O_RDONLY, 0);
    const int error = errno;  // before close() can change it
    if (fd >= 0) {
      ::close(fd);
      *seen = "still opens";
      return false;
    }
    *seen = std::strerror(error);
    return error == ENOENT;
  }));
}

TEST_F(ClientLibrarySingleTest, ListPagesThroughManyBuffers) {
  std::vector<client::Buffer> held;
  for (int i = 0; i < 250; ++i) {
    auto b = client_->Allocate({1, "", client::Backing::kMemfd, {}});
    ASSERT_TRUE(b.ok()) << b.status();
    held.push_back(std::move(*b));
  }
  auto listed = client_->List();  // 100 per page by default: three pages
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 250u);
  for (size_t i = 1; i < listed->size(); ++i) {
    EXPECT_LT((*listed)[i - 1].handle, (*listed)[i].handle);
  }
}

// A client that connects while the daemon is too busy to answer at once
// waits for its handshake, within its call's timeout, instead of failing
// UNAVAILABLE. The connection attempt used to give up after 100 ms, which
// 64 clients starting at once on two cores outlasted.
TEST_F(ClientLibrarySingleTest, AClientConnectingToABusyDaemonWaitsForIt) {
  ASSERT_TRUE(StopProcess(daemon_->pid()));
  absl::Cleanup resume = [&] { ::kill(daemon_->pid(), SIGCONT); };
  client::ClientOptions options;
  options.socket_path = daemon_->socket();
  options.open_client_connection = false;  // gRPC only: its handshake
  auto late = client::Client::Connect(options);
  ASSERT_TRUE(late.ok()) << late.status();
  std::future<absl::Status> ping =
      std::async(std::launch::async, [&] { return (*late)->Ping(); });
  // The stall itself: the daemon stays stopped for five times gRPC's
  // shortest connection attempt.
  absl::SleepFor(absl::Milliseconds(500));
  std::move(resume).Invoke();
  const absl::Status pinged = ping.get();
  EXPECT_TRUE(pinged.ok()) << pinged;
}

}  // namespace
}  // namespace shmbroker::testing
