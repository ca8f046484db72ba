// The fd store (issue 14): under systemd, a daemon stopping for a restart
// (SIGTERM) leaves its memfd memory with the service manager, and the next
// daemon takes it back, so that buffers only the daemon held survive. No
// systemd runs here; the test is the service manager as sd_notify(3) and
// sd_listen_fds(3) define one: a datagram socket at $NOTIFY_SOCKET that
// receives READY=1, STOPPING=1 and FDSTORE=1 messages with their fds
// (SCM_RIGHTS), and a next start with those fds at 3, 4, ... and
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set.
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

class FakeServiceManager {
 public:
  struct Message {
    std::string text;
    std::vector<UniqueFd> fds;
  };

  explicit FakeServiceManager(const std::string& path) : path_(path) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    bound_ =
        fd_.valid() && ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address),
                              sizeof(address)) == 0;
  }
  ~FakeServiceManager() { ::unlink(path_.c_str()); }

  bool bound() const { return bound_; }
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  // The next message, waiting up to `timeout` for one.
  std::optional<Message> Receive(absl::Duration timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <=
        0) {
      return std::nullopt;
    }
    char text[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{text, sizeof(text)};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof(control);
    const ssize_t n =
        ::recvmsg(fd_.get(), &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    Message message;
    message.text.assign(text, static_cast<size_t>(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr;
         c = CMSG_NXTHDR(&header, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
        message.fds.emplace_back(fd);
      }
    }
    return message;
  }

  // What was sent and not yet received (or passed over by WaitForReady):
  // only for a sender that is done (exited, or past the point where it
  // sends).
  std::vector<Message> ReceiveQueued() {
    std::vector<Message> all = std::move(passed_);
    passed_.clear();
    while (std::optional<Message> m = Receive(absl::ZeroDuration())) {
      all.push_back(std::move(*m));
    }
    return all;
  }

  ::testing::AssertionResult WaitForReady() {
    const absl::Time deadline = absl::Now() + kStateDeadline;
    std::string seen;
    while (absl::Now() < deadline) {
      std::optional<Message> m = Receive(deadline - absl::Now());
      if (!m.has_value()) break;
      if (m->text == "READY=1") return ::testing::AssertionSuccess();
      absl::StrAppend(&seen, "\"", m->text, "\" ");
      passed_.push_back(std::move(*m));
    }
    return ::testing::AssertionFailure()
           << "no READY=1 at " << path_ << "; received: " << seen;
  }

 private:
  const std::string path_;
  UniqueFd fd_;
  bool bound_ = false;
  std::vector<Message> passed_;  // received before READY=1
};

// The value of `key` ("FDNAME") in a notify message, or "".
std::string Field(const std::string& text, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, key + "=")) return std::string(line);
  }
  return "";
}

// The fds stored (FDSTORE=1), by FDNAME.
std::map<std::string, UniqueFd> StoredFds(
    std::vector<FakeServiceManager::Message>& messages) {
  std::map<std::string, UniqueFd> stored;
  for (auto& m : messages) {
    if (Field(m.text, "FDSTORE") != "1" || m.fds.size() != 1) continue;
    stored[Field(m.text, "FDNAME")] = std::move(m.fds[0]);
  }
  return stored;
}

std::vector<std::string> Texts(
    const std::vector<FakeServiceManager::Message>& messages) {
  std::vector<std::string> texts;
  for (const auto& m : messages) texts.push_back(m.text);
  return texts;
}

// How many memfds the process `pid` has open.
int OpenMemfds(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().starts_with("/memfd:")) ++count;
  }
  return count;
}

class FdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shmbroker-fdstore-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_ = NewTempFile("shmbrokerd-fdstore-log");
    manager_ = std::make_unique<FakeServiceManager>(dir_ + "/notify.sock");
    ASSERT_TRUE(manager_->bound()) << std::strerror(errno);
  }
  void TearDown() override {
    daemon_.reset();
    manager_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    ::unlink(log_.c_str());
  }

  std::vector<std::string> Flags(const std::string& grace) {
    return {"--state_dir=" + dir_ + "/state", "--restart_grace=" + grace};
  }

  // Starts a daemon under the fake service manager, handing it `stored` as
  // systemd would: fds from 3 up, named, with LISTEN_PID its own pid.
  void Start(const std::string& grace,
             const std::map<std::string, UniqueFd>& stored = {}) {
    TestDaemon::Launch launch;
    launch.log_path = log_;
    launch.env = {manager_->env()};
    if (!stored.empty()) {
      std::vector<std::string> names;
      for (const auto& [name, fd] : stored) {
        names.push_back(name);
        launch.pass_fds.push_back(fd.get());
      }
      launch.env.push_back(absl::StrCat("LISTEN_FDS=", stored.size()));
      launch.env.push_back("LISTEN_FDNAMES=" + absl::StrJoin(names, ":"));
      // LISTEN_PID must be the daemon's pid: the shell's, which it keeps.
      launch.wrapper = {"/bin/sh", "-c",
                        "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\""};
    }
    daemon_ = std::make_unique<TestDaemon>(Flags(grace), dir_, launch);
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    ASSERT_TRUE(manager_->WaitForReady());
  }

  // `put NAME` of `bytes` under a detached lease, by a CLI that exits:
  // afterwards only the daemon holds the buffer. Returns its JSON.
  nlohmann::json PutDetached(const std::string& name, const std::string& kind,
                             const std::string& bytes) {
    Finished put = daemon_->Cli(
        {"put", name, "--kind=" + kind, "--detach", "--ttl=600s", "--json"},
        bytes);
    EXPECT_EQ(put.exit_code, 0) << put.err;
    return nlohmann::json::parse(put.out, nullptr, false);
  }

  // SIGTERM (a restart) and what the daemon sent the service manager.
  std::vector<FakeServiceManager::Message> StopForRestart() {
    Finished stopped = daemon_->Stop(SIGTERM);
    EXPECT_TRUE(ExitedCleanly(stopped));
    return manager_->ReceiveQueued();
  }

  std::string dir_;
  std::string log_;
  std::unique_ptr<FakeServiceManager> manager_;
  std::unique_ptr<TestDaemon> daemon_;
};

TEST_F(FdStoreTest, BuffersOnlyTheDaemonHeldComeBackFromTheFdStore) {
  ASSERT_NO_FATAL_FAILURE(Start("600s"));
  const std::string dedicated_bytes = "only the daemon holds this segment";
  const std::string pooled_bytes = "and this slot of a pooled arena";
  const nlohmann::json dedicated =
      PutDetached("dedicated", "dedicated", dedicated_bytes);
  const nlohmann::json pooled = PutDetached("pooled", "pooled", pooled_bytes);
  ASSERT_TRUE(dedicated.contains("handle")) << dedicated.dump();
  ASSERT_EQ(pooled.value("kind", ""), "pooled") << pooled.dump();
  const std::string buffer_name =
      absl::StrCat("shmbroker-buffer-", dedicated["handle"].get<uint64_t>());
  const std::string arena_name =
      absl::StrCat("shmbroker-arena-", pooled["arena"].get<uint64_t>());

  std::vector<FakeServiceManager::Message> sent = StopForRestart();
  const std::vector<std::string> texts = Texts(sent);
  EXPECT_NE(std::find(texts.begin(), texts.end(), "STOPPING=1"), texts.end())
      << absl::StrJoin(texts, " | ");
  std::map<std::string, UniqueFd> stored = StoredFds(sent);
  std::vector<std::string> names;
  for (const auto& [name, fd] : stored) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{arena_name, buffer_name}))
      << absl::StrJoin(texts, " | ");
  EXPECT_TRUE(absl::StrContains(
      ReadWholeFile(log_),
      "kept 2 memfd segments and arenas in the service manager's fd store"))
      << ReadWholeFile(log_);

  // No client presents anything, and the grace is long: what the consumer
  // reads came from the fd store.
  ASSERT_NO_FATAL_FAILURE(Start("600s", stored));
  EXPECT_TRUE(absl::StrContains(ReadWholeFile(log_), "took back 2 buffers (") &&
              absl::StrContains(ReadWholeFile(log_), "(2 of 2 fds adopted)"))
      << ReadWholeFile(log_);
  Finished cat = daemon_->Cli({"cat", "dedicated"});
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, dedicated_bytes);
  cat = daemon_->Cli({"cat", "pooled"});
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, pooled_bytes);

  // The new daemon emptied the store of what it took.
  std::vector<std::string> removed;
  for (const auto& m : manager_->ReceiveQueued()) {
    if (Field(m.text, "FDSTOREREMOVE") == "1") {
      removed.push_back(Field(m.text, "FDNAME"));
    }
  }
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{arena_name, buffer_name}));

  // And it stores them again at its own restart.
  stored = StoredFds(sent = StopForRestart());
  EXPECT_EQ(stored.size(), 2u) << absl::StrJoin(Texts(sent), " | ");
}

TEST_F(FdStoreTest, AStoredFdThatIsNotTheBookedObjectIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Start("600s"));
  const nlohmann::json a = PutDetached("a", "dedicated", "the bytes of a");
  const nlohmann::json b = PutDetached("b", "dedicated", "the bytes of b");
  ASSERT_TRUE(a.contains("handle") && b.contains("handle"));
  const std::string name_a =
      absl::StrCat("shmbroker-buffer-", a["handle"].get<uint64_t>());
  const std::string name_b =
      absl::StrCat("shmbroker-buffer-", b["handle"].get<uint64_t>());

  std::vector<FakeServiceManager::Message> sent = StopForRestart();
  std::map<std::string, UniqueFd> stored = StoredFds(sent);
  ASSERT_EQ(stored.size(), 2u) << absl::StrJoin(Texts(sent), " | ");
  // Each under the other's name.
  std::swap(stored[name_a], stored[name_b]);

  ASSERT_NO_FATAL_FAILURE(Start("2s", stored));
  const std::string log = ReadWholeFile(log_);
  for (const std::string& name : {name_a, name_b}) {
    EXPECT_TRUE(
        absl::StrContains(log, "closing " + name + " from the fd store"))
        << log;
  }
  EXPECT_TRUE(absl::StrContains(log, "took back 0 buffers")) << log;
  // Refused fds are closed, not kept: the daemon holds no memfd at all.
  EXPECT_EQ(OpenMemfds(daemon_->pid()), 0);
  Finished cat = daemon_->Cli({"cat", "a"});
  EXPECT_NE(cat.exit_code, 0) << cat.out;

  // As before the fd store: nobody presents them, and the grace drops them.
  EXPECT_TRUE(WaitFor("the grace to drop both buffers", [&](std::string* seen) {
    *seen = ReadWholeFile(log_);
    return absl::StrContains(*seen, "restart grace over: dropped 2 buffers");
  }));
}

}  // namespace
}  // namespace shmbroker::testing
