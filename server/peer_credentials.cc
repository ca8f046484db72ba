#include "server/peer_credentials.h"

#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace shmbroker {

absl::StatusOr<Identity> PeerCredentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoToStatus(errno, "SO_PEERCRED");
  }
  return Identity{cred.pid, cred.uid, cred.gid};
}

absl::StatusOr<Identity> PeerTable::Lookup(const std::string& peer) const {
  int fd = -1;
  if (!absl::StartsWith(peer, "fd:") ||
      !absl::SimpleAtoi(absl::string_view(peer).substr(3), &fd)) {
    return absl::NotFoundError(absl::StrCat("unexpected gRPC peer \"", peer,
                                            "\": not an accepted connection"));
  }
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) {
    return absl::NotFoundError(absl::StrCat("no credentials for peer ", peer));
  }
  if (!it->second.refusal.ok()) return it->second.refusal;
  return it->second.identity;
}

}  // namespace shmbroker
