#include "server/grpc_connections.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/limit.h"

namespace shmbroker {
namespace {

bool Stat(int fd, dev_t* dev, ino_t* ino) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

}  // namespace

void GrpcConnections::ForgetFdLocked(int fd) {
  auto it = uid_of_fd_.find(fd);
  if (it == uid_of_fd_.end()) return;
  auto list = by_uid_.find(it->second);
  uid_of_fd_.erase(it);
  if (list == by_uid_.end()) return;
  std::vector<Entry>& entries = list->second;
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [fd](const Entry& e) { return e.fd == fd; }),
                entries.end());
  if (entries.empty()) by_uid_.erase(list);
}

void GrpcConnections::PruneLocked(uid_t uid) {
  auto list = by_uid_.find(uid);
  if (list == by_uid_.end()) return;
  std::vector<Entry>& entries = list->second;
  auto gone = [this](const Entry& e) {
    dev_t dev = 0;
    ino_t ino = 0;
    if (Stat(e.fd, &dev, &ino) && dev == e.dev && ino == e.ino) return false;
    uid_of_fd_.erase(e.fd);
    return true;
  };
  entries.erase(std::remove_if(entries.begin(), entries.end(), gone),
                entries.end());
  if (entries.empty()) by_uid_.erase(list);
}

absl::Status GrpcConnections::Admit(int fd, uid_t uid) {
  Entry entry{fd, 0, 0};
  const bool stated = Stat(fd, &entry.dev, &entry.ino);
  absl::MutexLock lock(&mu_);
  // The number was free for accept(): whatever had it before is closed.
  ForgetFdLocked(fd);
  auto own = own_max_.find(uid);
  const uint32_t max = own == own_max_.end() ? max_per_uid_ : own->second;
  auto list = by_uid_.find(uid);
  if (list != by_uid_.end() && list->second.size() >= max) {
    PruneLocked(uid);
    list = by_uid_.find(uid);
  }
  const size_t open = list == by_uid_.end() ? 0 : list->second.size();
  if (open >= max) {
    return LimitReached(
        Limit::kMaxGrpcConnectionsPerUid,
        absl::StrFormat("uid %d already has %d gRPC connections open, the "
                        "most allowed%s: this one is refused and will be "
                        "closed",
                        uid, open,
                        own == own_max_.end() ? "" : " (its own limit)"));
  }
  if (!stated) return absl::OkStatus();  // cannot be told apart; not counted
  by_uid_[uid].push_back(entry);
  uid_of_fd_[fd] = uid;
  return absl::OkStatus();
}

void GrpcConnections::SetOwnLimits(absl::flat_hash_map<uid_t, uint32_t> own) {
  absl::MutexLock lock(&mu_);
  own_max_ = std::move(own);
}

uint32_t GrpcConnections::OpenFor(uid_t uid) {
  absl::MutexLock lock(&mu_);
  PruneLocked(uid);
  auto list = by_uid_.find(uid);
  return list == by_uid_.end() ? 0 : static_cast<uint32_t>(list->second.size());
}

uint64_t GrpcConnections::Open() {
  absl::MutexLock lock(&mu_);
  std::vector<uid_t> uids;
  uids.reserve(by_uid_.size());
  for (const auto& [uid, entries] : by_uid_) uids.push_back(uid);
  for (uid_t uid : uids) PruneLocked(uid);
  return uid_of_fd_.size();
}

}  // namespace shmbroker
