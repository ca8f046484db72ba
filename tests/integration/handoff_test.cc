// The handoff with the real daemon and real processes: a consumer waits
// for a buffer, a producer fills and seals it, the consumer gets the bytes;
// the kernel keeps a sealed dedicated buffer immutable; waits end at their
// deadline or with their process, and learn nothing of what they may not
// see.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class HandoffTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--socket_group=" + std::to_string(kNobody)};
  }

  // Waits until the daemon counts `n` waiting Attach calls.
  ::testing::AssertionResult WaitersAre(uint64_t n) {
    return WaitFor(absl::StrCat(n, " waiters"), [&](std::string* seen) {
      absl::StatusOr<client::DaemonStatus> s = client_->Status();
      *seen =
          s.ok() ? absl::StrCat("waiters=", s->waiters, " clients=", s->clients)
                 : s.status().ToString();
      return s.ok() && s->waiters == n;
    });
  }

  client::DaemonStatus Status() {
    absl::StatusOr<client::DaemonStatus> s = client_->Status();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.value_or(client::DaemonStatus{});
  }

  // A consumer waits for `name` to be sealed; `put --seal` of that kind
  // hands it `data` under a detached lease and exits.
  void PutWhileAConsumerWaits(const std::string& name, const std::string& kind,
                              const std::string& data) {
    Subprocess consumer(
        daemon_->CliArgs({"get", name, "--wait=60s", "--sealed"}));
    ASSERT_TRUE(WaitersAre(1));
    Finished put = daemon_->Cli(
        {"put", name, "--seal", "--kind=" + kind, "--detach", "--ttl=60s"},
        data);
    ASSERT_EQ(put.exit_code, 0) << put.err;
    Finished got = consumer.Wait(absl::Seconds(20));
    EXPECT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(got.out, data);
  }

  client::Buffer Dedicated(const std::string& name, const std::string& data) {
    client::AllocateOptions options;
    options.size = data.size();
    options.name = name;
    options.kind = client::Kind::kDedicated;
    absl::StatusOr<client::Buffer> b = client_->Allocate(options);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return {};
    std::memcpy(b->data(), data.data(), data.size());
    return std::move(*b);
  }
};

TEST_F(HandoffTest, TheConsumerWaitsAndGetsTheSealedBytes) {
  Subprocess consumer(
      daemon_->CliArgs({"get", "frame", "--wait=60s", "--sealed"}));
  ASSERT_TRUE(WaitersAre(1));
  // Created is not enough: it waits for the seal.
  Finished put =
      daemon_->Cli({"put", "frame", "--detach", "--ttl=60s"}, "first draft");
  ASSERT_EQ(put.exit_code, 0) << put.err;
  ASSERT_TRUE(WaitersAre(1));
  Finished seal = daemon_->Cli({"seal", "frame", "--json"});
  ASSERT_EQ(seal.exit_code, 0) << seal.err;
  EXPECT_THAT(seal.out, HasSubstr("\"sealed\":true"));
  Finished got = consumer.Wait(absl::Seconds(20));
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, "first draft");
  ASSERT_TRUE(WaitersAre(0));
  Finished describe = daemon_->Cli({"describe", "frame", "--json"});
  EXPECT_THAT(describe.out, HasSubstr("\"sealed\":true"));
}

TEST_F(HandoffTest, PutWithSealHandsOffInOneCommand) {
  PutWhileAConsumerWaits("batch", "dedicated", "tensor bytes");
}

TEST_F(HandoffTest, APooledSealIsAppliedBeforeTheProducersNextCall) {
  Subprocess consumer(
      daemon_->CliArgs({"get", "slice", "--wait=60s", "--sealed"}));
  ASSERT_TRUE(WaitersAre(1));
  client::AllocateOptions options;
  options.size = 12;
  options.name = "slice";
  options.kind = client::Kind::kPooled;
  absl::StatusOr<client::Buffer> slice = client_->Allocate(options);
  ASSERT_TRUE(slice.ok()) << slice.status();
  std::memcpy(slice->data(), "pooled bytes", 12);
  // One-way (a kSeal frame): nothing to wait for, and in order with what
  // this client does next.
  ASSERT_TRUE(slice->Seal().ok());
  EXPECT_TRUE(slice->info().sealed);
  EXPECT_FALSE(slice->read_only()) << "the owner's arena stays writable";
  absl::StatusOr<client::BufferInfo> described = client_->Describe("slice");
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_TRUE(described->sealed);
  Finished got = consumer.Wait(absl::Seconds(20));
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, "pooled bytes");
}

TEST_F(HandoffTest, AProducerThatExitsRightAfterAOneWaySealStillSealsIt) {
  // put sends the seal frame and exits at once: the daemon reads what is
  // queued on the fd channel before it sees the hang-up.
  PutWhileAConsumerWaits("parting", "pooled", "last words");
}

TEST_F(HandoffTest, TheDeadlineEndsTheWaitNamingTheBufferAndTheCondition) {
  Finished created = daemon_->Cli({"get", "never", "--wait=200ms"});
  EXPECT_EQ(created.exit_code, 1);
  EXPECT_THAT(created.err, HasSubstr("deadline passed waiting for buffer "
                                     "\"never\" to be created"));
  Finished sealed = daemon_->Cli({"get", "never", "--wait=200ms", "--sealed"});
  EXPECT_EQ(sealed.exit_code, 1);
  EXPECT_THAT(sealed.err, HasSubstr("to be created and sealed"));
  absl::StatusOr<client::Buffer> unsealed =
      client_->Allocate({64, "unsealed", client::Backing::kMemfd, {}});
  ASSERT_TRUE(unsealed.ok()) << unsealed.status();
  client::WaitOptions wait;
  wait.until = client::WaitOptions::Until::kSealed;
  wait.timeout = absl::Milliseconds(200);
  absl::StatusOr<client::Buffer> late = client_->AttachWhen("unsealed", wait);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded)
      << late.status();
  EXPECT_EQ(Status().waiters, 0u);
}

TEST_F(HandoffTest, ASealedDedicatedBufferCannotBeWrittenEvenByRoot) {
  ASSERT_TRUE(RunningAsRoot());
  client::Buffer buffer = Dedicated("immutable", "payload");
  ASSERT_TRUE(buffer.valid());
  ASSERT_TRUE(buffer.Seal().ok());
  EXPECT_TRUE(buffer.read_only());
  EXPECT_TRUE(buffer.info().sealed);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()), 7), "payload");
  const int fd = buffer.fd();
  EXPECT_EQ(::pwrite(fd, "x", 1, 0), -1) << "write";
  EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
            MAP_FAILED)
      << "writable mmap";
  EXPECT_NE(::mprotect(buffer.data(), 4096, PROT_READ | PROT_WRITE), 0)
      << "mprotect of the read-only mapping";
  // A writable reopen through /proc opens, but cannot write either.
  UniqueFd reopened(
      ::open(absl::StrCat("/proc/self/fd/", fd).c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(reopened.valid()) << std::strerror(errno);
  EXPECT_EQ(::pwrite(reopened.get(), "x", 1, 0), -1) << "write via /proc";
  EXPECT_EQ(::fallocate(reopened.get(),
                        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096),
            -1)
      << "fallocate";
  // Another process attaches it read-only, and sees the bytes.
  Finished cat = daemon_->Cli({"cat", "immutable"});
  EXPECT_EQ(cat.out, "payload");
  auto writer = daemon_->Connect();
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ((*writer)
                ->Attach("immutable", client::Access::kReadWrite)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(HandoffTest, SealingWhileAnotherHolderMapsItWritableIsRefused) {
  client::Buffer buffer = Dedicated("contended", "abc");
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok());
  absl::StatusOr<client::Buffer> writer =
      (*other)->Attach("contended", client::Access::kReadWrite);
  ASSERT_TRUE(writer.ok()) << writer.status();
  absl::Status refused = buffer.Seal();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("maps it writable"));
  // Still this process's to write, as before the attempt.
  EXPECT_FALSE(buffer.read_only());
  buffer.data()[0] = 'X';
  EXPECT_EQ(writer->data()[0], 'X');
  ASSERT_TRUE(writer->Release().ok());
  EXPECT_TRUE(buffer.Seal().ok());
}

TEST_F(HandoffTest, AKilledWaiterLeavesNothingBehind) {
  Subprocess consumer(daemon_->CliArgs({"get", "later", "--wait=60s"}));
  ASSERT_TRUE(WaitersAre(1));
  consumer.Signal(SIGKILL);
  consumer.Wait(absl::Seconds(20));
  ASSERT_TRUE(WaitersAre(0));
  ASSERT_TRUE(WaitFor("only our client connection", [&](std::string* seen) {
    absl::StatusOr<client::DaemonStatus> s = client_->Status();
    *seen = s.ok() ? absl::StrCat("clients=", s->clients, " holds=", s->holds)
                   : s.status().ToString();
    return s.ok() && s->clients == 1 && s->holds == 0;
  }));
  // The name comes later; nobody is handed it.
  absl::StatusOr<client::Buffer> later =
      client_->Allocate({64, "later", client::Backing::kMemfd, {}});
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(Status().holds, 1u);
}

TEST_F(HandoffTest, AWaiterOfAnotherUidLearnsNothingOfAnOwnerOnlyBuffer) {
  ASSERT_TRUE(RunningAsRoot());
  ShareCliWithOtherUids(*daemon_);
  Subprocess nobody(
      CliArgsAs(*daemon_, kNobody, {"get", "secret", "--wait=2s"}), "",
      CliEnvAs(*daemon_));
  ASSERT_TRUE(WaitersAre(1));
  client::Buffer secret = Dedicated("secret", "do not tell");
  ASSERT_TRUE(secret.Seal().ok());
  Finished got = nobody.Wait(absl::Seconds(20));
  EXPECT_EQ(got.exit_code, 1);
  EXPECT_EQ(got.out, "");
  // The same words as for a buffer that does not exist.
  EXPECT_THAT(got.err, HasSubstr("deadline passed waiting for buffer "
                                 "\"secret\" to be created"));
}

}  // namespace
}  // namespace shmbroker::testing
