#include "tests/integration/test_daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

#include "absl/strings/str_cat.h"
#include "common/default_socket.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"
#include "tests/common/raw_fd_channel.h"

namespace shmbroker::testing {

TestDaemon::TestDaemon(const std::vector<std::string>& flags,
                       const std::string& dir, const Launch& launch)
    : log_path_(launch.log_path) {
  if (log_path_.empty()) {
    log_path_ = NewTempFile("shmbrokerd-log");
    owns_log_ = true;
  }
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
  std::vector<std::string> argv = launch.wrapper;
  for (const std::string& arg :
       {std::string(DaemonPath()), "--socket=" + socket(),
        std::string("--metrics_address=127.0.0.1:0")}) {
    argv.push_back(arg);
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  process_ = std::make_unique<Subprocess>(argv, "", launch.env, log_path_,
                                          launch.pass_fds);
  pid_ = process_->pid();
  std::optional<std::string> out =
      process_->WaitForOutput("listening on", absl::Seconds(20));
  started_ = out.has_value();
  if (started_) {
    startup_output_ = *out;  // e.g. the metrics address
  } else {
    Finished f = process_->Wait(absl::Seconds(5));
    startup_output_ = f.out + ReadWholeFile(log_path_);
  }
}

TestDaemon::~TestDaemon() {
  if (started_) Stop();
  if (finished_.has_value()) {
    EXPECT_TRUE(ExitedCleanly(*finished_))
        << "shmbrokerd on " << socket() << " (pid " << pid_ << ")";
  }
  if (owns_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  if (owns_log_) ::unlink(log_path_.c_str());
}

Finished TestDaemon::Stop(int signal) {
  started_ = false;
  process_->Signal(signal);
  finished_ = process_->Wait(absl::Seconds(20));
  finished_->err = ReadWholeFile(log_path_);
  return *finished_;
}

Finished TestDaemon::Kill() {
  started_ = false;
  process_->Signal(SIGKILL);
  Finished f = process_->Wait(absl::Seconds(20));
  f.err = ReadWholeFile(log_path_);
  return f;
}

::testing::AssertionResult ExitedCleanly(const Finished& f) {
  std::string why;
  if (f.signal != 0) {
    why = absl::StrCat(
        "killed by signal ", f.signal, " (", strsignal(f.signal),
        f.signal == SIGKILL ? "; Stop() sends it after 20 s" : "", ")");
  } else if (f.exit_code != 0) {
    why = absl::StrCat("exit status ", f.exit_code);
  }
  for (const char* report :
       {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
    if (f.err.find(report) != std::string::npos) {
      absl::StrAppend(&why, why.empty() ? "" : "; ", "\"", report,
                      "\" on stderr");
    }
  }
  if (why.empty()) return ::testing::AssertionSuccess();
  constexpr size_t kTail = 6000;
  const size_t from = f.err.size() > kTail ? f.err.size() - kTail : 0;
  return ::testing::AssertionFailure()
         << "did not exit cleanly: " << why << "; stderr"
         << (from > 0 ? " (tail)" : "") << ":\n"
         << f.err.substr(from);
}

::testing::AssertionResult RunningAsRoot() {
  if (::geteuid() == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "needs root to switch uids: run as root, as CI does (euid "
         << ::geteuid() << ")";
}

::testing::AssertionResult StopProcess(pid_t pid) {
  if (::kill(pid, SIGSTOP) != 0) {
    return ::testing::AssertionFailure()
           << "kill(" << pid << ", SIGSTOP): " << std::strerror(errno);
  }
  return WaitFor("every thread of the process stopped", [&](std::string* seen) {
    const std::string tasks = absl::StrCat("/proc/", pid, "/task");
    std::error_code error;
    for (const auto& entry :
         std::filesystem::directory_iterator(tasks, error)) {
      const std::string status = ReadWholeFile(entry.path() / "status");
      if (status.find("State:\tT") == std::string::npos) {
        *seen = absl::StrCat("thread ", entry.path().filename().string(),
                             " still runs");
        return false;
      }
    }
    return !error;
  });
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

std::string StatusText(const client::DaemonStatus& s) {
  return absl::StrCat(
      "buffers=", s.buffers, " allocated=", s.allocated_bytes,
      " committed=", s.committed_bytes, " holds=", s.holds,
      " clients=", s.clients, " leases=", s.leases,
      " detached=", s.detached_leases, " arenas=", s.arenas.arenas,
      " pooled_live=", s.arenas.live_buffers,
      " pooled_in_use=", s.arenas.in_use_bytes,
      " scavenged_total=", s.arenas.scavenged_bytes_total,
      " arenas_released_total=", s.arenas.arenas_released_total);
}

::testing::AssertionResult WaitForStatus(
    client::Client& client, const std::string& what,
    const std::function<bool(const client::DaemonStatus&)>& condition) {
  return WaitFor(what, [&](std::string* seen) {
    auto status = client.Status();
    if (!status.ok()) {
      *seen = status.status().ToString();
      return false;
    }
    *seen = StatusText(*status);
    return condition(*status);
  });
}

void ShareCliWithOtherUids(const TestDaemon& daemon) {
  namespace fs = std::filesystem;
  const fs::path dir = daemon.dir();
  fs::copy_file(CliPath(), dir / "shmbroker");
  fs::copy_file(SHMBROKER_LIB_PATH, dir / "libshmbroker.so.0");
  ::chmod((dir / "shmbroker").c_str(), 0755);
  ::chmod((dir / "libshmbroker.so.0").c_str(), 0755);
}

std::vector<std::string> AsUid(uint32_t uid,
                               const std::vector<std::string>& command) {
  std::vector<std::string> argv = {
      "/usr/bin/setpriv", "--reuid=" + std::to_string(uid),
      "--regid=" + std::to_string(uid), "--clear-groups", "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::vector<std::string> CliArgsAs(const TestDaemon& daemon, uint32_t uid,
                                   const std::vector<std::string>& args) {
  std::vector<std::string> command = {daemon.dir() + "/shmbroker",
                                      "--socket=" + daemon.socket()};
  command.insert(command.end(), args.begin(), args.end());
  return AsUid(uid, command);
}

std::vector<std::string> CliEnvAs(const TestDaemon& daemon) {
  return {"LD_LIBRARY_PATH=" + daemon.dir()};
}

Finished RunCliAs(const TestDaemon& daemon, uint32_t uid,
                  const std::vector<std::string>& args,
                  const std::string& input) {
  return RunToEnd(CliArgsAs(daemon, uid, args), input, CliEnvAs(daemon));
}

std::string NewTempFile(const std::string& tag) {
  std::string path = "/tmp/shmbroker-" + tag + "-XXXXXX";
  const int fd = ::mkstemp(path.data());
  EXPECT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ::close(fd);
  return path;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int ConnectRawFdChannel(const std::string& socket, std::string* token) {
  absl::StatusOr<RawFdChannel> raw = DialFdChannel(FdChannelPath(socket));
  EXPECT_TRUE(raw.ok()) << raw.status();
  if (!raw.ok()) return -1;
  const auto* hello = std::get_if<fdchannel::Hello>(&raw->first);
  EXPECT_NE(hello, nullptr) << "the daemon's first frame is not a Hello";
  if (token != nullptr && hello != nullptr) {
    *token = fdchannel::TokenToHex(hello->token);
  }
  return raw->socket.release();
}

double Metric(const TestDaemon& daemon, const std::string& series) {
  std::smatch port;
  const std::string& out = daemon.startup_output();
  if (!std::regex_search(out, port, std::regex("127\\.0\\.0\\.1:(\\d+)"))) {
    return -1;
  }
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    return -1;
  }
  const std::string get = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (::write(fd.get(), get.data(), get.size()) !=
      static_cast<ssize_t>(get.size())) {
    return -1;
  }
  std::string body;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) {
    body.append(buf, static_cast<size_t>(n));
  }
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + series.size() + 2));
}

}  // namespace shmbroker::testing
