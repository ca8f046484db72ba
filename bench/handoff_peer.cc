#include "bench/handoff_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace shmbroker::bench {
namespace {

constexpr uint8_t kFill = 0x5a;
constexpr size_t kPage = 4096;

std::string NameOf(const std::string& prefix, uint64_t i) {
  return absl::StrCat(prefix, "-", i);
}

bool WriteByte(char c) {
  for (;;) {
    const ssize_t n = ::write(STDOUT_FILENO, &c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<HandoffPeer>> HandoffPeer::Start(
    const std::string& self, const std::string& socket,
    const std::string& prefix) {
  std::unique_ptr<HandoffPeer> peer(new HandoffPeer());
  peer->prefix_ = prefix;
  // Built before fork(): the bench has threads, so the child may only make
  // async-signal-safe calls until exec.
  std::vector<std::string> args = {self,
                                   absl::StrCat("--handoff_consumer=", prefix),
                                   absl::StrCat("--socket=", socket)};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fds[1], STDOUT_FILENO);
    ::execv(self.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  peer->pid_ = pid;
  peer->acks_.reset(fds[0]);
  pollfd p{peer->acks_.get(), POLLIN, 0};
  if (::poll(&p, 1, 10000) != 1) {
    return absl::DeadlineExceededError(
        "the handoff consumer did not connect within 10s");
  }
  if (absl::Status s = peer->ReadAck('R'); !s.ok()) return s;
  return peer;
}

HandoffPeer::~HandoffPeer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

absl::Status HandoffPeer::ReadAck(char expected) {
  char ack = 0;
  ssize_t n;
  do {
    n = ::read(acks_.get(), &ack, 1);
  } while (n < 0 && errno == EINTR);
  if (n == 1 && ack == expected) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("the handoff consumer failed (%s; see its stderr)",
                      n == 1 ? "it reported an error" : "it exited"));
}

absl::Status HandoffPeer::Handoff(client::Client& producer,
                                  client::AllocateOptions options) {
  options.name = NameOf(prefix_, next_++);
  absl::StatusOr<client::Buffer> buffer = producer.Allocate(options);
  if (!buffer.ok()) return buffer.status();
  std::memset(buffer->data(), kFill, buffer->size());
  if (absl::Status s = buffer->Seal(); !s.ok()) return s;
  return ReadAck('A');
}

int RunHandoffConsumer(const std::string& socket, const std::string& prefix) {
  client::ClientOptions options;
  options.socket_path = socket;
  absl::StatusOr<std::unique_ptr<client::Client>> client =
      client::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "handoff consumer: %s\n",
                 client.status().ToString().c_str());
    WriteByte('E');
    return 1;
  }
  if (!WriteByte('R')) return 1;
  client::WaitOptions wait;
  wait.until = client::WaitOptions::Until::kSealed;
  wait.timeout = absl::Minutes(10);  // killed long before, when the run ends
  for (uint64_t i = 0;; ++i) {
    absl::StatusOr<client::Buffer> buffer =
        (*client)->AttachWhen(NameOf(prefix, i), wait);
    if (!buffer.ok()) {
      std::fprintf(stderr, "handoff consumer: %s\n",
                   buffer.status().ToString().c_str());
      WriteByte('E');
      return 1;
    }
    // Read every page, as a consumer of the data would.
    const volatile uint8_t* data = buffer->data();
    bool intact = true;
    for (size_t at = 0; at < buffer->size(); at += kPage) {
      intact &= data[at] == kFill;
    }
    if (!intact) {
      std::fprintf(stderr, "handoff consumer: %s does not hold the fill\n",
                   NameOf(prefix, i).c_str());
      WriteByte('E');
      return 1;
    }
    if (!WriteByte('A')) return 1;
  }
}

}  // namespace shmbroker::bench
