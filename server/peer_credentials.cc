#include "server/peer_credentials.h"

#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/errno_status.h"
#include "core/limit.h"

namespace shmbroker {

absl::StatusOr<Identity> PeerCredentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoToStatus(errno, "SO_PEERCRED");
  }
  return Identity{cred.pid, cred.uid, cred.gid};
}

absl::StatusOr<Identity> PeerTable::AdmitCall(const std::string& peer) const {
  int fd = -1;
  if (!absl::StartsWith(peer, "fd:") ||
      !absl::SimpleAtoi(absl::string_view(peer).substr(3), &fd)) {
    return absl::NotFoundError(absl::StrCat("unexpected gRPC peer \"", peer,
                                            "\": not an accepted connection"));
  }
  Peer found;
  {
    absl::MutexLock lock(&mu_);
    auto it = peers_.find(fd);
    if (it == peers_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no credentials for peer ", peer));
    }
    found = it->second;
  }
  if (!found.refusal.ok()) return found.refusal;
  // Outside the table's lock: calls of different connections do not wait
  // for each other.
  if (!found.calls->TryTake()) {
    return LimitReached(
        Limit::kMaxCallsPerSecond,
        absl::StrFormat("this gRPC connection made more than %d calls in a "
                        "second (after a burst of as many): slow down",
                        max_calls_per_second_));
  }
  return found.identity;
}

}  // namespace shmbroker
