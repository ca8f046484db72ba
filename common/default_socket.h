// Where the daemon listens and the CLI connects when --socket is not given.
// Header-only so that daemon and clients agree by construction.
#ifndef SHMBROKER_COMMON_DEFAULT_SOCKET_H_
#define SHMBROKER_COMMON_DEFAULT_SOCKET_H_

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace shmbroker {

// $SHMBROKER_SOCKET, else /run/shmbroker/broker.sock for root, else
// $XDG_RUNTIME_DIR/shmbroker/broker.sock (or /tmp/shmbroker-<uid>/broker.sock
// when XDG_RUNTIME_DIR is unset).
inline std::string DefaultSocketPath() {
  if (const char* env = std::getenv("SHMBROKER_SOCKET"); env && *env) {
    return env;
  }
  if (geteuid() == 0) return "/run/shmbroker/broker.sock";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) {
    return std::string(xdg) + "/shmbroker/broker.sock";
  }
  return "/tmp/shmbroker-" + std::to_string(geteuid()) + "/broker.sock";
}

// The fd channel listens beside the gRPC socket.
inline std::string FdChannelPath(const std::string& socket_path) {
  return socket_path + ".fds";
}

}  // namespace shmbroker

#endif  // SHMBROKER_COMMON_DEFAULT_SOCKET_H_
