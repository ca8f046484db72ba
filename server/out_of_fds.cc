#include "server/out_of_fds.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/base/const_init.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "server/logging.h"

namespace shmbroker {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);

// Serializes every guard's closing and reopening of its spare (see the
// header): the fd table they race on is the process's.
ABSL_CONST_INIT absl::Mutex spare_lock(absl::kConstInit);

}  // namespace

OutOfFdsGuard::OutOfFdsGuard(const char* socket, Metrics* metrics,
                             std::function<void(bool)> on_blocked)
    : socket_(socket), metrics_(metrics), on_blocked_(std::move(on_blocked)) {
  absl::MutexLock lock(&spare_lock);
  ReopenSpare();
}

void OutOfFdsGuard::ReopenSpare() {
  if (!spare_.valid()) spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

std::string OutOfFdsGuard::Why() const {
  return absl::StrFormat(
      "shmbrokerd is out of file descriptors (%s; RLIMIT_NOFILE %d): it "
      "takes no new connections until buffers or connections close; retry "
      "later, or raise its fd limit",
      std::strerror(err_), SoftFdLimit());
}

absl::Duration OutOfFdsGuard::OnOutOfFds(int err) {
  if (blocked_) {
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    return backoff_;
  }
  blocked_ = true;
  err_ = err;
  backoff_ = kFirstBackoff;
  since_ = absl::Now();
  refused_ = 0;
  if (on_blocked_) on_blocked_(true);
  uint64_t suppressed = 0;
  logged_ = episodes_.Allow(&suppressed);
  if (logged_) {
    spdlog::error(
        "{} accept: {} (RLIMIT_NOFILE {}): refusing new connections and "
        "retrying every {} to {} until fds come back{}",
        socket_, std::strerror(err), SoftFdLimit(),
        absl::FormatDuration(kFirstBackoff), absl::FormatDuration(kMaxBackoff),
        SuppressedNote(suppressed));
  }
  return backoff_;
}

bool OutOfFdsGuard::Recovered() {
  {
    absl::MutexLock lock(&spare_lock);
    ReopenSpare();
    if (!spare_.valid()) return false;
    UniqueFd probe(::fcntl(spare_.get(), F_DUPFD_CLOEXEC, 0));
    if (!probe.valid()) return false;
  }
  blocked_ = false;
  if (on_blocked_) on_blocked_(false);
  if (logged_) {
    spdlog::info("{}: accepting connections again after {} ({} refused)",
                 socket_, absl::FormatDuration(absl::Now() - since_), refused_);
  }
  return true;
}

void OutOfFdsGuard::RefuseWaiting(int listener,
                                  const std::function<void(int)>& tell) {
  for (;;) {
    pollfd waiting{listener, POLLIN, 0};
    if (::poll(&waiting, 1, 0) != 1 || (waiting.revents & POLLIN) == 0) return;
    absl::MutexLock lock(&spare_lock);
    ReopenSpare();
    if (!spare_.valid()) return;
    spare_.reset();  // its number is now free for accept
    UniqueFd socket(
        ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    const int accept_errno = errno;
    const bool accepted = socket.valid();
    if (accepted) {
      if (tell) tell(socket.get());
      ++refused_;
      metrics_->ConnectionRefused(socket_);
    }
    socket.reset();
    ReopenSpare();
    if (!accepted && accept_errno != ECONNABORTED && accept_errno != EINTR) {
      return;
    }
  }
}

}  // namespace shmbroker
