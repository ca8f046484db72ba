#include "server/grpc_acceptor.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/limit.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"

namespace shmbroker {

void GrpcAcceptor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void GrpcAcceptor::Stop() {
  if (!thread_.joinable()) return;
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  // Wakes the blocked accept() with EINVAL.
  ::shutdown(listener_, SHUT_RDWR);
  thread_.join();
}

bool GrpcAcceptor::WaitForFds(int err) {
  for (;;) {
    const absl::Duration backoff = out_of_fds_.OnOutOfFds(err);
    // A refused gRPC client sees its connection close (UNAVAILABLE); the
    // client library learns why on the fd channel, which it opens first.
    out_of_fds_.RefuseWaiting(listener_, nullptr);
    if (stopping_.WaitForNotificationWithTimeout(backoff)) return false;
    if (out_of_fds_.Recovered()) return true;
  }
}

void GrpcAcceptor::Refuse(int fd, const Identity& identity, absl::Status why) {
  metrics_->LimitRefused(Limit::kMaxGrpcConnectionsPerUid);
  if (uint64_t suppressed = 0; LogRateLimits::Refusals().Allow(&suppressed)) {
    spdlog::warn("gRPC accept: refused pid {} uid {}: {}{}", identity.pid,
                 identity.uid, why.message(), SuppressedNote(suppressed));
  }
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) {
    ::close(fd);  // out of fds: the client sees a hang-up
    return;
  }
  if (refused_.size() >= kMaxRefused) {
    ::shutdown(refused_.front().dup.get(), SHUT_RDWR);
    refused_.pop_front();
  }
  peers_->Set(fd, identity, std::move(why));
  grpc::AddInsecureChannelFromFd(server_, fd);  // takes ownership
  refused_.push_back({std::move(dup), absl::Now() + kRefusedGrace});
}

absl::Duration GrpcAcceptor::ShutDueRefused() {
  const absl::Time now = absl::Now();
  while (!refused_.empty() && refused_.front().shut_at <= now) {
    // gRPC sees its end of the socket close, and closes its fd.
    ::shutdown(refused_.front().dup.get(), SHUT_RDWR);
    refused_.pop_front();
  }
  return refused_.empty() ? absl::InfiniteDuration()
                          : refused_.front().shut_at - now;
}

void GrpcAcceptor::Run() {
  for (;;) {
    const absl::Duration next = ShutDueRefused();
    pollfd waiting{listener_, POLLIN, 0};
    const int timeout = next == absl::InfiniteDuration()
                            ? -1
                            : static_cast<int>(absl::ToInt64Milliseconds(
                                  absl::Ceil(next, absl::Milliseconds(1))));
    const int ready = ::poll(&waiting, 1, timeout);
    if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
    // gRPC needs a non-blocking fd: a blocking one hangs its event engine.
    int fd =
        ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        // A blocking accept fails before it waits: retrying at once spins.
        if (!WaitForFds(errno)) return;
        continue;
      }
      if (errno != EINVAL) {
        spdlog::error("gRPC accept: {}", std::strerror(errno));
      }
      return;  // EINVAL: the listener was shut down
    }
    absl::StatusOr<Identity> identity = PeerCredentials(fd);
    if (uint64_t suppressed = 0;
        !identity.ok() && LogRateLimits::Refusals().Allow(&suppressed)) {
      spdlog::warn("gRPC accept: {}{}", identity.status().ToString(),
                   SuppressedNote(suppressed));
    }
    if (!identity.ok()) {
      ::close(fd);
      continue;
    }
    if (absl::Status admitted = connections_->Admit(fd, identity->uid);
        !admitted.ok()) {
      Refuse(fd, *identity, std::move(admitted));
      continue;
    }
    peers_->Set(fd, *identity);
    grpc::AddInsecureChannelFromFd(server_, fd);  // takes ownership
  }
}

}  // namespace shmbroker
