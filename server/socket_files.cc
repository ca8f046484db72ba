#include "server/socket_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/default_socket.h"
#include "common/errno_status.h"

namespace shmbroker {
namespace {

absl::Status MakeDirectory(const std::string& dir, std::optional<gid_t> group) {
  std::error_code ec;
  std::filesystem::path path(dir);
  if (std::filesystem::exists(path, ec)) return absl::OkStatus();
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
  }
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("mkdir ", dir));
  }
  ::chmod(dir.c_str(), 0750);  // undo the umask
  if (group && ::chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chown ", dir));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> TakeLock(const std::string& lock_path,
                                  const std::string& socket_path) {
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return ErrnoToStatus(errno, absl::StrCat("flock ", lock_path));
    }
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
    int pid = 0;
    std::string who =
        (n > 0 &&
         absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)),
                          &pid))
            ? absl::StrCat(" (pid ", pid, ")")
            : "";
    return absl::FailedPreconditionError(
        absl::StrCat("another shmbrokerd", who, " is serving ", socket_path,
                     "; refusing to start (lock ", lock_path, " is held)"));
  }
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    return ErrnoToStatus(errno, absl::StrCat("write ", lock_path));
  }
  return fd;
}

absl::StatusOr<UniqueFd> Listen(const std::string& path, int type,
                                std::optional<gid_t> group) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "socket path %s is %d bytes; at most %d fit in a Unix socket address",
        path, path.size(), sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  // We hold the lock, so whatever sits at the path is a dead daemon's.
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("bind ", path));
  }
  // Nobody can connect before listen(), so there is no window at 0777-umask.
  if (::chmod(path.c_str(), 0660) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", path));
  }
  if (group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chown ", path));
  }
  if (::listen(fd.get(), 128) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("listen ", path));
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SocketFiles>> SocketFiles::Create(
    const std::string& socket_path, std::optional<gid_t> group) {
  std::unique_ptr<SocketFiles> files(new SocketFiles());
  files->socket_path_ = socket_path;
  files->fd_channel_path_ = FdChannelPath(socket_path);
  std::string dir = std::filesystem::path(socket_path).parent_path().string();
  if (!dir.empty()) {
    if (absl::Status s = MakeDirectory(dir, group); !s.ok()) return s;
  }
  absl::StatusOr<UniqueFd> lock =
      TakeLock(absl::StrCat(socket_path, ".lock"), socket_path);
  if (!lock.ok()) return lock.status();
  files->lock_ = std::move(*lock);
  absl::StatusOr<UniqueFd> grpc = Listen(socket_path, SOCK_STREAM, group);
  if (!grpc.ok()) return grpc.status();
  files->grpc_listener_ = std::move(*grpc);
  absl::StatusOr<UniqueFd> fds =
      Listen(files->fd_channel_path_, SOCK_SEQPACKET, group);
  if (!fds.ok()) return fds.status();
  files->fd_listener_ = std::move(*fds);
  return files;
}

SocketFiles::~SocketFiles() {
  // Only remove the sockets if they are ours (we hold the lock).
  if (!lock_.valid()) return;
  if (grpc_listener_.valid()) ::unlink(socket_path_.c_str());
  if (fd_listener_.valid()) ::unlink(fd_channel_path_.c_str());
}

}  // namespace shmbroker
