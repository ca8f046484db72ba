#include "server/grpc_acceptor.h"

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "server/logging.h"

namespace shmbroker {

void GrpcAcceptor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void GrpcAcceptor::Stop() {
  if (!thread_.joinable()) return;
  // Wakes the blocked accept() with EINVAL.
  ::shutdown(listener_, SHUT_RDWR);
  thread_.join();
}

void GrpcAcceptor::Run() {
  for (;;) {
    // gRPC needs a non-blocking fd: a blocking one hangs its event engine.
    int fd =
        ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        spdlog::error("gRPC accept: {} (raise the fd limit)",
                      std::strerror(errno));
        ::usleep(10000);  // let connections close instead of spinning
        continue;
      }
      if (errno != EINVAL) {
        spdlog::error("gRPC accept: {}", std::strerror(errno));
      }
      return;  // EINVAL: the listener was shut down
    }
    absl::StatusOr<Identity> identity = PeerCredentials(fd);
    if (!identity.ok()) {
      spdlog::warn("gRPC accept: {}", identity.status().ToString());
      ::close(fd);
      continue;
    }
    peers_->Set(fd, *identity);
    grpc::AddInsecureChannelFromFd(server_, fd);  // takes ownership
  }
}

}  // namespace shmbroker
