#include "server/grpc_acceptor.h"

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

void GrpcAcceptor::Run() {
  for (;;) {
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
    peers_->Set(fd, *identity);
    grpc::AddInsecureChannelFromFd(server_, fd);  // takes ownership
  }
}

}  // namespace shmbroker
