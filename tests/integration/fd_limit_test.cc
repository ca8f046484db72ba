// A daemon out of file descriptors (a low RLIMIT_NOFILE) refuses the
// allocation that would take its last fds, refuses new clients with a
// message naming the cause, neither spins nor floods its log while it
// cannot accept, says NOT_SERVING meanwhile, and serves again once fds come
// back.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/default_socket.h"
#include "common/fd_channel_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/raw_fd_channel.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

// utime + stime of `pid`, in seconds.
double CpuSeconds(pid_t pid) {
  const std::string stat = ReadWholeFile(absl::StrCat("/proc/", pid, "/stat"));
  // Fields after the command name (which may hold spaces) start at state,
  // field 3; utime and stime are fields 14 and 15.
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(stat.rfind(')') + 2), ' ');
  if (fields.size() < 13) return -1;
  const double ticks = std::strtod(fields[11].c_str(), nullptr) +
                       std::strtod(fields[12].c_str(), nullptr);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

off_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

// Opens an fd channel and reads the daemon's first frame: a Hello (the
// connection is open; its fd goes to *open) or an error (its text
// returned).
std::string OpenRaw(const std::string& socket, std::vector<int>* open) {
  absl::StatusOr<RawFdChannel> raw = DialFdChannel(FdChannelPath(socket));
  if (!raw.ok()) return raw.status().ToString();
  if (std::holds_alternative<fdchannel::Hello>(raw->first)) {
    open->push_back(raw->socket.release());
    return "";
  }
  if (const auto* error = std::get_if<fdchannel::ErrorText>(&raw->first)) {
    return error->text;
  }
  return "no greeting";
}

TEST(FdLimitTest, OutOfFdsRefusesClearlyWithoutSpinningAndRecovers) {
  const std::string log_path = NewTempFile("fdlimit-log");
  TestDaemon::Launch launch;
  // The hard limit too, so that the daemon cannot raise it.
  launch.wrapper = {"/usr/bin/prlimit", "--nofile=192:192", "--"};
  launch.log_path = log_path;
  // The raw fd channels below never renew their default leases: at the
  // default TTL (10 s) the daemon would end them, and their fds would come
  // free, in a run slow enough (one fresh-clone CI run beside the package
  // tests saw health SERVING again for 20 s after the refusal).
  auto daemon = std::make_unique<TestDaemon>(
      std::vector<std::string>{"--pooling=false", "--fd_reserve=24",
                               "--lease_default_ttl=1h",
                               "--max_clients_per_uid=1000"},
      "", launch);
  ASSERT_TRUE(daemon->started()) << daemon->startup_output();
  EXPECT_THAT(ReadWholeFile(log_path), HasSubstr("RLIMIT_NOFILE is 192"));
  auto client = daemon->Connect();
  ASSERT_TRUE(client.ok()) << client.status();

  // Dedicated buffers (an fd each) until the daemon keeps the rest.
  std::vector<client::Buffer> buffers;
  absl::Status refused;
  for (int i = 0; i < 400 && refused.ok(); ++i) {
    client::AllocateOptions options;
    options.size = 4096;
    auto buffer = (*client)->Allocate(options);
    if (buffer.ok()) {
      buffers.push_back(std::move(*buffer));
    } else {
      refused = buffer.status();
    }
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("out of file descriptors"));
  EXPECT_THAT(refused.message(), HasSubstr("--fd_reserve"));
  // 192 fds less the reserve and the daemon's own (about 40).
  EXPECT_GT(buffers.size(), 80u);
  EXPECT_LT(buffers.size(), 168u);

  // Client connections take the reserve, until accept runs out of fds.
  std::vector<int> raw;
  std::string error;
  for (int i = 0; i < 100 && error.empty(); ++i) {
    error = OpenRaw(daemon->socket(), &raw);
  }
  EXPECT_THAT(error, HasSubstr("out of file descriptors"));
  EXPECT_THAT(error, HasSubstr("RLIMIT_NOFILE 192"));
  EXPECT_GT(raw.size(), 4u);
  EXPECT_TRUE(WaitFor("health says NOT_SERVING", [&](std::string* seen) {
    auto serving = (*client)->Serving();
    *seen = serving.ok() ? absl::StrCat("serving=", *serving)
                         : serving.status().ToString();
    return serving.ok() && !*serving;
  })) << ReadWholeFile(log_path);

  // While it cannot accept, new clients are told why, on both sockets, and
  // the daemon burns no CPU and writes (almost) no log.
  const double cpu_before = CpuSeconds(daemon->pid());
  const off_t log_before = FileSize(log_path);
  const absl::Time start = absl::Now();
  for (int i = 0; i < 4; ++i) {
    client::ClientOptions grpc_only;
    grpc_only.socket_path = daemon->socket();
    grpc_only.open_client_connection = false;
    grpc_only.timeout = absl::Seconds(5);
    auto probe = client::Client::Connect(grpc_only);
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_FALSE((*probe)->Serving().value_or(false));
    auto fresh = daemon->Connect();
    ASSERT_FALSE(fresh.ok());
    EXPECT_EQ(fresh.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(fresh.status().message(),
                HasSubstr("shmbrokerd is out of file descriptors"));
  }
  const double waited = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = CpuSeconds(daemon->pid()) - cpu_before;
  // Four refusals take at least the first backoffs (0.1 + 0.2 + 0.4 s).
  EXPECT_GT(waited, 0.5);
  // A spinning acceptor would take about a core for all that time.
  EXPECT_LT(cpu, 0.1 + 0.1 * waited) << "over " << waited << " s";
  EXPECT_LT(FileSize(log_path) - log_before, 4096) << ReadWholeFile(log_path);

  // Fds come back: the daemon accepts and allocates again.
  for (int fd : raw) ::close(fd);
  buffers.clear();
  EXPECT_TRUE(WaitFor("a new client allocates", [&](std::string* seen) {
    auto fresh = daemon->Connect();
    if (!fresh.ok()) {
      *seen = fresh.status().ToString();
      return false;
    }
    client::AllocateOptions options;
    options.size = 4096;
    auto buffer = (*fresh)->Allocate(options);
    *seen = buffer.status().ToString();
    return buffer.ok();
  }));
  EXPECT_TRUE(WaitFor("health says SERVING", [&](std::string* seen) {
    auto serving = (*client)->Serving();
    *seen = serving.ok() ? absl::StrCat("serving=", *serving)
                         : serving.status().ToString();
    return serving.ok() && *serving;
  }));
  client->reset();
  daemon.reset();  // stops it and checks how it exited
  const std::string log = ReadWholeFile(log_path);
  EXPECT_LT(log.size(), 16384u) << log;
  EXPECT_THAT(log, HasSubstr("accepting connections again"));
  ::unlink(log_path.c_str());
}

}  // namespace
}  // namespace shmbroker::testing
