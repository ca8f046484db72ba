// LeaseTable: live leases by id, indexed by deadline so that expiry finds the
// due ones in O(log n) each, however many leases are live. Each record keeps
// the holds under its lease (handle -> count). Not thread-safe: the Registry
// guards it with its mutex.
#ifndef SHMBROKER_CORE_LEASE_TABLE_H_
#define SHMBROKER_CORE_LEASE_TABLE_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/time/time.h"
#include "core/lease.h"

namespace shmbroker {

struct LeaseRecord {
  LeaseInfo info;  // info.holds kept current
  // A btree, not a hash map: ~19 bytes per hold instead of 22-36 (#15,
  // metadata per buffer), and draining takes holds from its front in
  // O(log n), where a hash map's begin() scans what was erased before.
  absl::btree_map<Handle, uint32_t> holds;
};

class LeaseTable {
 public:
  // Adds a lease; `info.id` must be new. Returns the stored record, which
  // stays valid until Erase(info.id).
  LeaseRecord& Add(const LeaseInfo& info);
  LeaseRecord* Find(LeaseId id);
  const LeaseRecord* Find(LeaseId id) const;
  // Moves the lease's deadline (a renewal).
  void SetDeadline(LeaseRecord& record, absl::Time deadline);
  void Erase(LeaseId id);
  // Removes the lease and returns its record (the lease ended, but its
  // holds are still to be dropped). `id` must be in the table.
  LeaseRecord Take(LeaseId id);

  // Ids of at most `max` leases whose deadline is at or before `now`,
  // earliest deadline first.
  std::vector<LeaseId> Due(absl::Time now, size_t max) const;
  std::optional<absl::Time> NextDeadline() const;
  size_t size() const { return by_id_.size(); }

  // Ascending by id.
  const absl::btree_map<LeaseId, LeaseRecord>& all() const { return by_id_; }

 private:
  absl::btree_map<LeaseId, LeaseRecord> by_id_;
  absl::btree_set<std::pair<absl::Time, LeaseId>> by_deadline_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_LEASE_TABLE_H_
