#include "core/lease_table.h"

#include <utility>

namespace shmbroker {

LeaseRecord& LeaseTable::Add(const LeaseInfo& info) {
  LeaseRecord& record = by_id_[info.id];
  record.info = info;
  by_deadline_.insert({info.deadline, info.id});
  return record;
}

LeaseRecord* LeaseTable::Find(LeaseId id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const LeaseRecord* LeaseTable::Find(LeaseId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

void LeaseTable::SetDeadline(LeaseRecord& record, absl::Time deadline) {
  by_deadline_.erase({record.info.deadline, record.info.id});
  record.info.deadline = deadline;
  by_deadline_.insert({deadline, record.info.id});
}

void LeaseTable::Erase(LeaseId id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  by_deadline_.erase({it->second.info.deadline, id});
  by_id_.erase(it);
}

LeaseRecord LeaseTable::Take(LeaseId id) {
  auto it = by_id_.find(id);
  by_deadline_.erase({it->second.info.deadline, id});
  LeaseRecord record = std::move(it->second);
  by_id_.erase(it);
  return record;
}

std::vector<LeaseId> LeaseTable::Due(absl::Time now, size_t max) const {
  std::vector<LeaseId> due;
  for (auto it = by_deadline_.begin();
       it != by_deadline_.end() && it->first <= now && due.size() < max; ++it) {
    due.push_back(it->second);
  }
  return due;
}

std::optional<absl::Time> LeaseTable::NextDeadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first;
}

}  // namespace shmbroker
