#include "tests/integration/test_daemon.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::testing {

TestDaemon::TestDaemon(const std::vector<std::string>& flags,
                       const std::string& dir) {
  if (dir.empty()) {
    char tmpl[] = "/tmp/shmbroker-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    // Other uids in the tests must reach the socket directory inside.
    ::chmod(dir_.c_str(), 0711);
    owns_dir_ = true;
  } else {
    dir_ = dir;
  }
  // Tests run in parallel: each daemon serves metrics on a port of its own.
  std::vector<std::string> argv = {DaemonPath(), "--socket=" + socket(),
                                   "--metrics_address=127.0.0.1:0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  process_ = std::make_unique<Subprocess>(argv);
  std::optional<std::string> out =
      process_->WaitForOutput("listening on", absl::Seconds(20));
  started_ = out.has_value();
  if (!started_) {
    Finished f = process_->Wait(absl::Seconds(5));
    startup_output_ = f.out + f.err;
  }
}

TestDaemon::~TestDaemon() {
  if (started_) Stop();
  if (owns_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Finished TestDaemon::Stop() {
  started_ = false;
  process_->Signal(SIGTERM);
  return process_->Wait(absl::Seconds(20));
}

absl::StatusOr<std::unique_ptr<client::Client>> TestDaemon::Connect() const {
  client::ClientOptions options;
  options.socket_path = socket();
  return client::Client::Connect(options);
}

std::vector<std::string> TestDaemon::CliArgs(
    const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {CliPath(), "--socket=" + socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Finished TestDaemon::Cli(const std::vector<std::string>& args,
                         const std::string& input) const {
  return RunToEnd(CliArgs(args), input);
}

void ShareCliWithOtherUids(const TestDaemon& daemon) {
  namespace fs = std::filesystem;
  const fs::path dir = daemon.dir();
  fs::copy_file(CliPath(), dir / "shmbroker");
  fs::copy_file(SHMBROKER_LIB_PATH, dir / "libshmbroker.so.0");
  ::chmod((dir / "shmbroker").c_str(), 0755);
  ::chmod((dir / "libshmbroker.so.0").c_str(), 0755);
}

std::vector<std::string> CliArgsAs(const TestDaemon& daemon, uint32_t uid,
                                   const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/setpriv",
                                   "--reuid=" + std::to_string(uid),
                                   "--regid=" + std::to_string(uid),
                                   "--clear-groups",
                                   "--",
                                   daemon.dir() + "/shmbroker",
                                   "--socket=" + daemon.socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::string> CliEnvAs(const TestDaemon& daemon) {
  return {"LD_LIBRARY_PATH=" + daemon.dir()};
}

int ConnectRawFdChannel(const std::string& socket, std::string* token) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket + ".fds";
  std::strcpy(addr.sun_path, path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  fdchannel::Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(fd, &frame, 0);
  absl::StatusOr<fdchannel::FromDaemon> hello =
      fdchannel::DecodeFromDaemon(got.envelope, frame);
  EXPECT_TRUE(hello.ok()) << hello.status();
  EXPECT_TRUE(hello.ok() && std::holds_alternative<fdchannel::Hello>(*hello));
  if (token != nullptr && hello.ok()) {
    *token = fdchannel::TokenToHex(std::get<fdchannel::Hello>(*hello).token);
  }
  return fd;
}

}  // namespace shmbroker::testing
