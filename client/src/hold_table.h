// HoldTable: the holds this process's live Buffers keep, with the memory
// behind each (a dedicated buffer's fd, or a pooled buffer's arena fd), so
// that after a daemon restart the library can present every one of them to
// the new daemon (docs/api.md, "Restart"). A Buffer registers when it is
// made and unregisters before it closes its fd or drops its arena (release,
// Disown, destruction); a move keeps the registration. Disowned buffers have
// no fd here, so they cannot be presented. Internal to the client library.
// Thread-safe: Buffers on different threads register concurrently.
#ifndef SHMBROKER_CLIENT_SRC_HOLD_TABLE_H_
#define SHMBROKER_CLIENT_SRC_HOLD_TABLE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"

namespace shmbroker::client {

class HoldTable {
 public:
  // One live hold, with its own duplicate of the memory's fd (so that the
  // Buffer may close its fd meanwhile without another file taking its
  // number).
  struct Hold {
    uint64_t handle = 0;
    uint64_t lease = 0;
    UniqueFd fd;
  };

  // `fd` stays the Buffer's (or its arena's); it must stay open until
  // Unregister. Returns the registration's id (never 0).
  uint64_t Register(uint64_t handle, uint64_t lease, int fd)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Does nothing for id 0.
  void Unregister(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Every live hold whose lease `keep(lease)` accepts, ordered by
  // registration. An fd that cannot be duplicated (out of fds) is left out.
  std::vector<Hold> Snapshot(const std::function<bool(uint64_t lease)>& keep)
      const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    uint64_t handle;
    uint64_t lease;
    int fd;
  };
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_HOLD_TABLE_H_
