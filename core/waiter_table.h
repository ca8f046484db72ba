// WaiterTable: Attach calls waiting for a named buffer to exist, or to exist
// and be sealed (the consumer's half of a handoff). Indexed by name (the
// Registry looks there when a buffer is created or sealed), by deadline
// (expiry finds the due ones in O(log n)) and by client connection (closing
// one forgets its waiters; a limit bounds them). A waiter holds no thread:
// it is a record and a callback. Not thread-safe: the Registry guards it
// with its mutex.
#ifndef SHMBROKER_CORE_WAITER_TABLE_H_
#define SHMBROKER_CORE_WAITER_TABLE_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "core/access.h"
#include "core/ids.h"

namespace shmbroker {

using WaiterId = uint64_t;

// What a waiting Attach waits for.
enum class WaitFor { kExists, kSealed };

// One waiting Attach. `T` is what its callback receives.
template <typename T>
struct Waiter {
  ConnectionId connection = 0;
  std::string name;
  WaitFor until = WaitFor::kExists;
  AccessRequest access = AccessRequest::kBestAllowed;
  LeaseId lease = 0;
  absl::Time deadline;
  std::function<void(T)> done;
};

template <typename T>
class WaiterTable {
 public:
  WaiterId Add(Waiter<T> waiter) {
    const WaiterId id = next_id_++;
    by_name_[waiter.name].insert(id);
    by_deadline_.insert({waiter.deadline, id});
    by_connection_[waiter.connection].insert(id);
    by_id_.emplace(id, std::move(waiter));
    return id;
  }

  // Takes the waiter out of the table; nullopt if it is gone already.
  std::optional<Waiter<T>> Remove(WaiterId id) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    Waiter<T> waiter = std::move(it->second);
    by_id_.erase(it);
    EraseFrom(by_name_, waiter.name, id);
    EraseFrom(by_connection_, waiter.connection, id);
    by_deadline_.erase({waiter.deadline, id});
    return waiter;
  }

  const Waiter<T>* Find(WaiterId id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &it->second;
  }
  // Waiters for `name`, oldest first.
  std::vector<WaiterId> ForName(const std::string& name) const {
    return Sorted(by_name_, name);
  }
  std::vector<WaiterId> ForConnection(ConnectionId connection) const {
    return Sorted(by_connection_, connection);
  }
  size_t CountFor(ConnectionId connection) const {
    auto it = by_connection_.find(connection);
    return it == by_connection_.end() ? 0 : it->second.size();
  }
  // Waiters whose deadline is at or before `now`, earliest first.
  std::vector<WaiterId> Due(absl::Time now) const {
    std::vector<WaiterId> due;
    for (auto it = by_deadline_.begin();
         it != by_deadline_.end() && it->first <= now; ++it) {
      due.push_back(it->second);
    }
    return due;
  }
  std::optional<absl::Time> NextDeadline() const {
    if (by_deadline_.empty()) return std::nullopt;
    return by_deadline_.begin()->first;
  }
  size_t size() const { return by_id_.size(); }

 private:
  template <typename Key>
  using Index = absl::flat_hash_map<Key, absl::flat_hash_set<WaiterId>>;

  template <typename Key>
  static void EraseFrom(Index<Key>& index, const Key& key, WaiterId id) {
    auto it = index.find(key);
    if (it == index.end()) return;
    it->second.erase(id);
    if (it->second.empty()) index.erase(it);
  }
  template <typename Key>
  static std::vector<WaiterId> Sorted(const Index<Key>& index, const Key& key) {
    auto it = index.find(key);
    if (it == index.end()) return {};
    std::vector<WaiterId> ids(it->second.begin(), it->second.end());
    std::sort(ids.begin(), ids.end());  // ids grow: oldest first
    return ids;
  }

  WaiterId next_id_ = 1;
  absl::flat_hash_map<WaiterId, Waiter<T>> by_id_;
  Index<std::string> by_name_;
  Index<ConnectionId> by_connection_;
  absl::btree_set<std::pair<absl::Time, WaiterId>> by_deadline_;
};

inline const char* WaitForName(WaitFor until) {
  return until == WaitFor::kSealed ? "sealed" : "created";
}

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_WAITER_TABLE_H_
