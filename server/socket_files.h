// SocketFiles: the daemon's files beside its socket path P.
//   P.lock  single-instance lock (flock). gRPC would silently unlink a live
//           daemon's socket, so a second daemon must fail here instead.
//   P       gRPC listener (mode 0660), accepted by the daemon itself.
//   P.fds   fd-channel listener (SOCK_SEQPACKET, mode 0660).
// The directory is created with mode 0750 if missing. Destruction closes the
// listeners and removes both sockets (the lock file stays; it is harmless).
#ifndef SHMBROKER_SERVER_SOCKET_FILES_H_
#define SHMBROKER_SERVER_SOCKET_FILES_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace shmbroker {

class SocketFiles {
 public:
  // FAILED_PRECONDITION when another daemon holds the lock; INVALID_ARGUMENT
  // for a path that does not fit a sockaddr_un.
  static absl::StatusOr<std::unique_ptr<SocketFiles>> Create(
      const std::string& socket_path, std::optional<gid_t> group);
  ~SocketFiles();

  const std::string& socket_path() const { return socket_path_; }
  const std::string& fd_channel_path() const { return fd_channel_path_; }
  int grpc_listener() const { return grpc_listener_.get(); }
  int fd_channel_listener() const { return fd_listener_.get(); }

 private:
  SocketFiles() = default;

  std::string socket_path_;
  std::string fd_channel_path_;
  UniqueFd lock_;
  UniqueFd grpc_listener_;
  UniqueFd fd_listener_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_SOCKET_FILES_H_
