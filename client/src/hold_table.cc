#include "client/src/hold_table.h"

#include <fcntl.h>

#include <algorithm>
#include <utility>

namespace shmbroker::client {

uint64_t HoldTable::Register(uint64_t handle, uint64_t lease, int fd) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  entries_.emplace(id, Entry{handle, lease, fd});
  return id;
}

void HoldTable::Unregister(uint64_t id) {
  if (id == 0) return;
  absl::MutexLock lock(&mu_);
  entries_.erase(id);
}

std::vector<HoldTable::Hold> HoldTable::Snapshot(
    const std::function<bool(uint64_t lease)>& keep) const {
  std::vector<std::pair<uint64_t, Hold>> found;
  {
    // Duplicated under the lock: a Buffer unregisters before it closes.
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (!keep(entry.lease)) continue;
      UniqueFd fd(::fcntl(entry.fd, F_DUPFD_CLOEXEC, 0));
      if (!fd.valid()) continue;
      found.emplace_back(id, Hold{entry.handle, entry.lease, std::move(fd)});
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Hold> holds;
  holds.reserve(found.size());
  for (auto& [id, hold] : found) holds.push_back(std::move(hold));
  return holds;
}

size_t HoldTable::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace shmbroker::client
