// Restarts that must not trust what they cannot check (issue 14):
//   - a corrupt or truncated books file: the daemon starts, its log says
//     what it skipped, and the buffer whose record was lost is refused to
//     the client that presents it (the others are adopted);
//   - an fd presented for a buffer it is not the memory of, and a buffer
//     of another uid presented (by root): both refused, end to end, by a
//     raw fd-channel client (the client library presents only what it
//     holds, with its own fds).
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/restart_support.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

class RestartBooksFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shmbroker-rbooks-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0711);
    log_ = dir_ + "/daemon.log";
    Start();
  }
  void TearDown() override {
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Start() {
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{"--state_dir=" + state(),
                                 "--restart_grace=60s", "--socket_group=65534"},
        dir_, TestDaemon::Launch{.log_path = log_});
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
  }
  std::string state() const { return dir_ + "/state"; }

  std::string dir_;
  std::string log_;
  std::unique_ptr<TestDaemon> daemon_;
};

// The whole of what a client heard of its resumes.
struct Resumes {
  absl::Mutex mu;
  std::vector<client::ResumeReport> reports ABSL_GUARDED_BY(mu);
};

enum class Damage { kCorrupt, kTruncate };

class RestartBooksTest : public RestartBooksFixture,
                         public ::testing::WithParamInterface<Damage> {};

TEST_P(RestartBooksTest, ADamagedBooksFileIsSkippedAndNothingInItTrusted) {
  const bool corrupt = GetParam() == Damage::kCorrupt;
  Resumes heard;
  client::ClientOptions options;
  options.socket_path = daemon_->socket();
  options.on_resumed = [&heard](const client::ResumeReport& r) {
    absl::MutexLock lock(&heard.mu);
    heard.reports.push_back(r);
  };
  auto c = client::Client::Connect(options);
  ASSERT_TRUE(c.ok()) << c.status();
  // Eight buffers; the victim's record is the one damaged: in the middle
  // of the file (corrupt), or the last one (truncated in it).
  const int victim_at = corrupt ? 4 : 7;
  const std::string victim_name = "victim-of-damage";
  std::vector<client::Buffer> buffers;
  std::vector<uint64_t> kept;
  uint64_t victim = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string name =
        i == victim_at ? victim_name : absl::StrCat("intact-", i);
    auto b = (*c)->Allocate(
        {.size = 16384, .name = name, .kind = client::Kind::kDedicated});
    ASSERT_TRUE(b.ok()) << b.status();
    for (size_t j = 0; j < b->size(); ++j) {
      b->data()[j] = RestartPattern(b->handle(), j);
    }
    (i == victim_at ? victim : kept.emplace_back()) = b->handle();
    buffers.push_back(std::move(*b));
  }
  daemon_->Kill();
  daemon_.reset();

  // Damage the victim's records (its name is in each of them, and in no
  // other record).
  const std::string books_path = state() + "/books";
  std::string books = ReadWholeFile(books_path);
  ASSERT_FALSE(books.empty());
  const size_t first = books.find(victim_name);
  ASSERT_NE(first, std::string::npos);
  if (corrupt) {
    ASSERT_GT(first, books.size() / 4);
    ASSERT_LT(first, books.size() * 3 / 4);  // in the middle
    for (size_t at = first; at != std::string::npos;
         at = books.find(victim_name, at + 1)) {
      for (size_t i = 0; i < victim_name.size(); ++i) books[at + i] ^= 0x5a;
    }
  } else {
    books.resize(first + 3);  // mid-record
  }
  {
    std::ofstream out(books_path, std::ios::binary | std::ios::trunc);
    out << books;
  }

  Start();
  {
    const bool resumed = WaitFor("the client resumed", [&](std::string* seen) {
      absl::MutexLock lock(&heard.mu);
      *seen = absl::StrCat(heard.reports.size(), " resumes");
      return !heard.reports.empty();
    });
    ASSERT_TRUE(resumed);
    absl::MutexLock lock(&heard.mu);
    const client::ResumeReport& report = heard.reports[0];
    EXPECT_THAT(report.buffers_adopted, UnorderedElementsAreArray(kept));
    ASSERT_EQ(report.buffers_refused.size(), 1u);
    EXPECT_EQ(report.buffers_refused[0].first, victim);
    EXPECT_EQ(report.buffers_refused[0].second.code(),
              absl::StatusCode::kNotFound)
        << report.buffers_refused[0].second;
  }
  // Only the intact records are trusted: the victim is not live.
  EXPECT_TRUE(WaitForStatus(**c, "the seven intact buffers",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 7 && s.holds == 7;
                            }));
  EXPECT_EQ((*c)->Describe(victim_name).status().code(),
            absl::StatusCode::kNotFound);
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok()) << other.status();
  for (const client::Buffer& b : buffers) {
    if (b.handle() == victim) continue;
    auto attached = (*other)->Attach(b.info().name);
    ASSERT_TRUE(attached.ok()) << attached.status();
    EXPECT_EQ(RestartMismatch(attached->data(), attached->size(), b.handle()),
              "")
        << b.info().name;
  }
  const std::string log = ReadWholeFile(log_);
  EXPECT_THAT(log, HasSubstr(absl::StrCat("books in ", state())));
  if (corrupt) {
    EXPECT_THAT(log, AllOf(HasSubstr("skipped: a crc32 that does not match"),
                           HasSubstr("skipped 1 damaged records")));
  } else {
    EXPECT_THAT(log, AllOf(HasSubstr("a torn last record"),
                           HasSubstr("skipped 0 damaged records and a torn "
                                     "tail")));
  }
}

INSTANTIATE_TEST_SUITE_P(Damages, RestartBooksTest,
                         ::testing::Values(Damage::kCorrupt, Damage::kTruncate),
                         [](const ::testing::TestParamInfo<Damage>& info) {
                           return info.param == Damage::kCorrupt ? "Corrupt"
                                                                 : "Truncated";
                         });

// A new fd of the memfd a CLI holder (pid) maps.
UniqueFd OpenMemfdOf(pid_t pid) {
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string target = std::filesystem::read_symlink(it->path(), ec);
    if (absl::StartsWith(target, "/memfd:")) {
      return UniqueFd(::open(it->path().c_str(), O_RDWR | O_CLOEXEC));
    }
  }
  return UniqueFd();
}

class RestartRefusalTest : public RestartBooksFixture {};

TEST_F(RestartRefusalTest, AForeignFdAndAnotherUidsBufferAreRefused) {
  ASSERT_TRUE(RunningAsRoot());
  ShareCliWithOtherUids(*daemon_);
  const std::vector<std::string> alloc = {"alloc", "64KiB", "--kind=dedicated",
                                          "--hold=120s"};
  auto args = [&](const std::string& name) {
    std::vector<std::string> a = alloc;
    a.push_back("--name=" + name);
    return a;
  };
  Subprocess mine(daemon_->CliArgs(args("mine")));
  Subprocess theirs(CliArgsAs(*daemon_, kNobody, args("theirs")), "",
                    CliEnvAs(*daemon_));
  ASSERT_TRUE(mine.WaitForOutput("mine", absl::Seconds(10)));
  ASSERT_TRUE(theirs.WaitForOutput("theirs", absl::Seconds(10)));
  uint64_t mine_handle = 0, theirs_handle = 0, mine_lease = 0, theirs_lease = 0;
  {
    auto c = daemon_->Connect();
    ASSERT_TRUE(c.ok()) << c.status();
    auto m = (*c)->Describe("mine");
    auto t = (*c)->Describe("theirs");
    ASSERT_TRUE(m.ok() && t.ok()) << m.status() << t.status();
    mine_handle = m->handle;
    theirs_handle = t->handle;
    ASSERT_EQ(t->owner_uid, kNobody);
    auto leases = (*c)->ListLeases();
    ASSERT_TRUE(leases.ok()) << leases.status();
    for (const client::LeaseInfo& l : *leases) {
      if (l.owner_pid == mine.pid() && l.holds == 1) mine_lease = l.id;
      if (l.owner_pid == theirs.pid() && l.holds == 1) theirs_lease = l.id;
    }
    ASSERT_NE(mine_lease, 0u);
    ASSERT_NE(theirs_lease, 0u);
  }
  UniqueFd mine_fd = OpenMemfdOf(mine.pid());
  UniqueFd theirs_fd = OpenMemfdOf(theirs.pid());
  ASSERT_TRUE(mine_fd.valid() && theirs_fd.valid());

  // The holders die while the daemon is down: their books wait for them.
  daemon_->Kill();
  daemon_.reset();
  mine.Signal(SIGKILL);
  theirs.Signal(SIGKILL);
  mine.Wait();
  theirs.Wait();
  Start();

  std::string token;
  UniqueFd raw(ConnectRawFdChannel(daemon_->socket(), &token));
  auto stub = v1::Broker::NewStub(grpc::CreateChannel(
      "unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  int frames = 0;
  auto present = [&](uint64_t handle, uint64_t lease, int fd) {
    ASSERT_TRUE(fdchannel::SentWhole(fdchannel::SendFrame(
        raw.get(), fdchannel::Encode(fdchannel::Present{handle, lease}), fd,
        0)));
    ++frames;
  };
  auto resume = [&](const std::vector<uint64_t>& handles) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(fdchannel::kConnectionTokenKey, token);
    ctx.AddMetadata(fdchannel::kFramesSentKey, std::to_string(frames));
    v1::ResumeRequest request;
    for (uint64_t h : handles) request.add_handles(h);
    v1::ResumeResponse response;
    const grpc::Status status = stub->Resume(&ctx, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };

  // Root presents "mine" (its own uid's, under its own uid's lease) with
  // the memory of another buffer, and "theirs" (uid 65534's) with its very
  // memory: both refused.
  present(mine_handle, mine_lease, theirs_fd.get());
  present(theirs_handle, theirs_lease, theirs_fd.get());
  v1::ResumeResponse refused = resume({mine_handle, theirs_handle});
  ASSERT_EQ(refused.buffers_size(), 2);
  EXPECT_EQ(refused.buffers(0).handle(), mine_handle);
  EXPECT_NE(refused.buffers(0).error_code(), 0);
  EXPECT_THAT(
      refused.buffers(0).error_message(),
      HasSubstr(absl::StrCat("the fd presented for buffer ", mine_handle)));
  EXPECT_EQ(refused.buffers(1).handle(), theirs_handle);
  EXPECT_EQ(refused.buffers(1).error_code(),
            static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_THAT(refused.buffers(1).error_message(),
              HasSubstr(absl::StrCat("no lease ", theirs_lease, " of uid 0")));
  auto c = daemon_->Connect();
  ASSERT_TRUE(c.ok()) << c.status();
  for (const char* name : {"mine", "theirs"}) {
    EXPECT_EQ((*c)->Describe(name).status().code(), absl::StatusCode::kNotFound)
        << name << " is live";
  }
  EXPECT_EQ(
      Metric(*daemon_, "shmbroker_restore_buffers_total{result=\"refused\"}"),
      2);

  // "mine" with its own memory is taken: the refusal was the fd's.
  present(mine_handle, mine_lease, mine_fd.get());
  v1::ResumeResponse adopted = resume({mine_handle});
  ASSERT_EQ(adopted.buffers_size(), 1);
  EXPECT_EQ(adopted.buffers(0).error_code(), 0)
      << adopted.buffers(0).error_message();
  auto described = (*c)->Describe("mine");
  EXPECT_TRUE(described.ok()) << described.status();
  EXPECT_EQ((*c)->Describe("theirs").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace shmbroker::testing
