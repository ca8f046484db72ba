// RoomWaiters: Allocate calls waiting for room (back-pressure) instead of
// failing at once when the daemon's capacity, its buffer limit or the
// caller's uid quota is reached. Kept in arrival order, so that the
// Registry serves them first come, first served as memory comes back;
// indexed by deadline (expiry finds the due ones in O(log n)) and by client
// connection (closing one forgets its waiters; a limit bounds them). A
// waiter holds no thread: it is a record and a callback. Not thread-safe:
// the Registry guards it with its mutex.
#ifndef SHMBROKER_CORE_ROOM_WAITERS_H_
#define SHMBROKER_CORE_ROOM_WAITERS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/ids.h"
#include "core/registry_types.h"

namespace shmbroker {

// One waiting Allocate.
struct RoomWaiter {
  ConnectionId connection = 0;
  AllocateSpec spec;
  absl::Time since;     // when it began to wait
  absl::Time deadline;  // DEADLINE_EXCEEDED then
  // The latest refusal that made it wait: its deadline error quotes it and
  // carries its limit (so that the edge names the flag).
  absl::Status why;
  std::function<void(absl::StatusOr<Grant>)> done;
};

class RoomWaiters {
 public:
  // At the back of the line.
  uint64_t Add(RoomWaiter waiter) {
    const uint64_t id = next_id_++;
    Put(id, std::move(waiter));
    return id;
  }
  // Back in its place after an attempt that still found no room.
  void PutBack(uint64_t id, RoomWaiter waiter) { Put(id, std::move(waiter)); }

  // Takes the waiter out; nullopt if it is gone already.
  std::optional<RoomWaiter> Remove(uint64_t id) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    RoomWaiter waiter = std::move(it->second);
    by_id_.erase(it);
    by_deadline_.erase({waiter.deadline, id});
    auto mine = by_connection_.find(waiter.connection);
    mine->second.erase(id);
    if (mine->second.empty()) by_connection_.erase(mine);
    return waiter;
  }

  // Oldest first.
  std::vector<uint64_t> InOrder() const {
    std::vector<uint64_t> ids;
    ids.reserve(by_id_.size());
    for (const auto& [id, waiter] : by_id_) ids.push_back(id);
    return ids;
  }
  std::vector<uint64_t> ForConnection(ConnectionId connection) const {
    auto it = by_connection_.find(connection);
    if (it == by_connection_.end()) return {};
    return {it->second.begin(), it->second.end()};
  }
  size_t CountFor(ConnectionId connection) const {
    auto it = by_connection_.find(connection);
    return it == by_connection_.end() ? 0 : it->second.size();
  }
  // Those whose deadline is at or before `now`.
  std::vector<uint64_t> Due(absl::Time now) const {
    std::vector<uint64_t> due;
    for (const auto& [deadline, id] : by_deadline_) {
      if (deadline > now) break;
      due.push_back(id);
    }
    return due;
  }
  std::optional<absl::Time> NextDeadline() const {
    if (by_deadline_.empty()) return std::nullopt;
    return by_deadline_.begin()->first;
  }
  size_t size() const { return by_id_.size(); }
  bool empty() const { return by_id_.empty(); }

 private:
  void Put(uint64_t id, RoomWaiter waiter) {
    by_deadline_.insert({waiter.deadline, id});
    by_connection_[waiter.connection].insert(id);
    by_id_.emplace(id, std::move(waiter));
  }

  uint64_t next_id_ = 1;
  absl::btree_map<uint64_t, RoomWaiter> by_id_;  // ids grow: arrival order
  absl::btree_set<std::pair<absl::Time, uint64_t>> by_deadline_;
  absl::flat_hash_map<ConnectionId, absl::btree_set<uint64_t>> by_connection_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_ROOM_WAITERS_H_
