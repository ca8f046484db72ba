// Registry: leases (grant, renew, revoke, inspect, expire) and how their end
// drops holds. Buffers and holds are in registry.cc.
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

// How many ended lease ids to remember for error messages.
constexpr size_t kEndedLeasesRemembered = 4096;

bool MayManage(const Identity& caller, const LeaseInfo& lease) {
  return caller.is_root() || caller.uid == lease.owner.uid;
}

}  // namespace

absl::StatusOr<LeaseInfo> Registry::GrantLease(ConnectionId client,
                                               absl::Duration ttl,
                                               bool detached) {
  absl::StatusOr<absl::Duration> granted = ClampTtl(options_.leases, ttl);
  if (!granted.ok()) return granted.status();
  Locked lock(this);
  auto it = connections_.find(client);
  if (it == connections_.end()) return ConnectionClosedError(client);
  return GrantLeaseLocked(it->second, client, *granted, detached,
                          /*is_default=*/false);
}

absl::StatusOr<LeaseInfo> Registry::GrantLeaseLocked(ConnectionRecord& client,
                                                     ConnectionId id,
                                                     absl::Duration ttl,
                                                     bool detached,
                                                     bool is_default) {
  const LeaseOptions& limits = options_.leases;
  const uid_t uid = client.identity.uid;
  if (!is_default) {
    // The default lease is in the set too, hence the + 1.
    if (client.leases.size() >= limits.max_leases_per_connection + 1) {
      return LimitReached(
          Limit::kMaxLeasesPerConnection,
          absl::StrFormat("client connection has %d leases besides its "
                          "default one, the most allowed",
                          client.leases.size() - 1));
    }
    auto per_uid = detached_per_uid_.find(uid);
    if (detached && per_uid != detached_per_uid_.end() &&
        per_uid->second >= limits.max_detached_leases_per_uid) {
      return LimitReached(
          Limit::kMaxDetachedLeasesPerUid,
          absl::StrFormat("uid %d has %d detached leases, the most allowed",
                          uid, per_uid->second));
    }
  }
  const absl::Time now = clock_->Now();
  LeaseInfo info;
  info.id = next_lease_++;
  info.owner = client.identity;
  info.client = id;
  info.detached = detached;
  info.connection_default = is_default;
  info.granted_ttl = ttl;
  info.granted = now;
  info.deadline = now + ttl;
  leases_.Add(info);
  client.leases.insert(info.id);
  if (detached) ++detached_per_uid_[uid];
  observer_->OnLeaseGranted(detached);
  BookLeaseLocked(info);
  return info;
}

absl::StatusOr<LeaseRecord*> Registry::UsableLeaseLocked(ConnectionId client,
                                                         LeaseId lease) {
  auto it = connections_.find(client);
  if (it == connections_.end()) return ConnectionClosedError(client);
  const ConnectionRecord& caller = it->second;
  const LeaseId id = lease == 0 ? caller.default_lease : lease;
  LeaseRecord* record = leases_.Find(id);
  if (record == nullptr) return LeaseGoneLocked(id);
  const LeaseInfo& info = record->info;
  if (info.client == client ||
      (info.detached && info.owner.uid == caller.identity.uid)) {
    return record;
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "permission denied: lease %d belongs to another client connection "
      "(pid %d uid %d); a connection may use its own leases and detached "
      "leases of its uid",
      id, info.owner.pid, info.owner.uid));
}

absl::Status Registry::LeaseGoneLocked(LeaseId lease) const {
  auto ended = ended_.find(lease);
  if (ended == ended_.end()) {
    return absl::NotFoundError(absl::StrFormat("no such lease: %d", lease));
  }
  const char* how = "ended";
  switch (ended->second.reason) {
    case ReclaimReason::kLeaseExpired:
      how = "expired (not renewed within its TTL)";
      break;
    case ReclaimReason::kLeaseRevoked:
      how = "was revoked";
      break;
    case ReclaimReason::kClientClosed:
      how = "ended with its client connection";
      break;
    case ReclaimReason::kShutdown:
      how = "ended at shutdown";
      break;
    case ReclaimReason::kNotResumed:
      how = "was not resumed after the daemon restarted";
      break;
    case ReclaimReason::kRelease:
      break;
  }
  return absl::NotFoundError(
      absl::StrFormat("lease %d %s at %s; its holds were dropped", lease, how,
                      absl::FormatTime(absl::RFC3339_full, ended->second.when,
                                       absl::UTCTimeZone())));
}

absl::StatusOr<LeaseInfo> Registry::KeepAlive(ConnectionId client,
                                              LeaseId lease) {
  Locked lock(this);
  absl::StatusOr<LeaseRecord*> record = UsableLeaseLocked(client, lease);
  if (!record.ok()) return record.status();
  leases_.SetDeadline(**record, clock_->Now() + (*record)->info.granted_ttl);
  observer_->OnKeepAlive();
  BookLeaseLocked((*record)->info);
  return (*record)->info;
}

absl::StatusOr<CloseResult> Registry::RevokeLease(const Identity& caller,
                                                  LeaseId lease) {
  CloseResult result;
  {
    // The holds are dropped when `deferred` goes, after the unlock.
    Deferred deferred(this, &result);
    Locked lock(this);
    const LeaseRecord* record = leases_.Find(lease);
    if (record == nullptr) return LeaseGoneLocked(lease);
    if (!MayManage(caller, record->info)) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "permission denied: uid %d may not revoke lease %d of uid %d",
          caller.uid, lease, record->info.owner.uid));
    }
    EndLeaseLocked(lease, ReclaimReason::kLeaseRevoked, deferred, &result);
  }
  return result;
}

absl::StatusOr<LeaseDetail> Registry::LeaseTimeToLive(const Identity& caller,
                                                      ConnectionId client,
                                                      LeaseId lease) const {
  Locked lock(this);
  if (lease == 0) {
    auto it = connections_.find(client);
    if (it == connections_.end()) {
      return absl::InvalidArgumentError(
          "bad lease id 0: the default lease needs a client connection");
    }
    lease = it->second.default_lease;
  }
  const LeaseRecord* record = leases_.Find(lease);
  if (record == nullptr) return LeaseGoneLocked(lease);
  if (!MayManage(caller, record->info)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: uid %d may not inspect lease %d of uid %d",
        caller.uid, lease, record->info.owner.uid));
  }
  LeaseDetail detail{record->info, {}};
  detail.holds.assign(record->holds.begin(), record->holds.end());
  std::sort(detail.holds.begin(), detail.holds.end());
  return detail;
}

std::vector<LeaseInfo> Registry::ListLeases(const Identity& caller,
                                            LeaseId after, size_t limit,
                                            bool* more) const {
  std::vector<LeaseInfo> out;
  *more = false;
  Locked lock(this);
  const auto& all = leases_.all();
  out.reserve(std::min(limit, all.size()));
  for (auto it = all.upper_bound(after); it != all.end(); ++it) {
    if (!MayManage(caller, it->second.info)) continue;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    out.push_back(it->second.info);
  }
  return out;
}

CloseResult Registry::ExpireLeases(size_t max_leases) {
  CloseResult result;
  {
    Deferred deferred(this, &result);  // drops the holds, unlocked
    Locked lock(this);
    const absl::Time now = clock_->Now();
    // One more than asked tells whether the sweep must come back at once.
    std::vector<LeaseId> due = leases_.Due(now, max_leases + 1);
    result.more_due = due.size() > max_leases;
    if (result.more_due) due.pop_back();
    for (LeaseId id : due) {
      // Ending a default lease closes its connection, which may end others
      // of the due ones first.
      const LeaseRecord* record = leases_.Find(id);
      if (record == nullptr) continue;
      result.expired_deadlines.push_back(record->info.deadline);
      EndLeaseLocked(id, ReclaimReason::kLeaseExpired, deferred, &result);
    }
  }
  return result;
}

std::optional<absl::Time> Registry::NextLeaseDeadline() const {
  Locked lock(this);
  return leases_.NextDeadline();
}

void Registry::EndLeaseLocked(LeaseId id, ReclaimReason reason,
                              Deferred& deferred, CloseResult* result) {
  if (leases_.Find(id) == nullptr) return;
  // A lease may carry any number of holds (up to max_holds_per_lease):
  // dropping them all here could hold the lock for tens of milliseconds.
  // The lease leaves the table now, so that no call can use it again, and
  // its holds go in steps once the lock is released (DrainLeases).
  DrainingLease& draining =
      draining_.insert_or_assign(id, DrainingLease{leases_.Take(id), reason})
          .first->second;
  deferred.Drain(id);
  const LeaseInfo info = draining.record.info;
  ++result->leases_ended;
  observer_->OnLeaseEnded(reason);
  if (info.detached) {
    if (--detached_per_uid_[info.owner.uid] == 0) {
      detached_per_uid_.erase(info.owner.uid);
    }
  }
  ended_[id] = EndedLease{reason, clock_->Now()};
  ended_order_.push_back(id);
  if (ended_order_.size() > kEndedLeasesRemembered) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
  auto client = connections_.find(info.client);
  if (client == connections_.end()) return;
  client->second.leases.erase(id);
  if (info.connection_default) {
    // Without its default lease a connection is over (it stopped renewing,
    // or an operator revoked it): end it as if it had hung up.
    result->connections_closed.push_back(info.client);
    CloseConnectionLocked(info.client, reason, deferred, result);
  }
}

void Registry::DrainLeases(const std::vector<LeaseId>& ids,
                           CloseResult* result) {
  size_t next = 0;  // ids before it are drained and forgotten
  while (next < ids.size()) {
    uint64_t dropped = 0;
    {
      Deferred step(this);  // frees this step's memory, unlocked
      Locked lock(this);
      const uint64_t batch =
          std::max<uint32_t>(options_.leases.reclaim_batch, 1);
      std::vector<std::pair<Handle, uint32_t>> holds;
      while (next < ids.size() && dropped < batch) {
        auto it = draining_.find(ids[next]);
        LeaseRecord& lease = it->second.record;
        // Copied first: DropHoldsLocked edits lease.holds.
        holds.clear();
        for (const auto& hold : lease.holds) {
          if (holds.size() == batch - dropped) break;
          holds.push_back(hold);
        }
        for (const auto& [handle, count] : holds) {
          DropHoldsLocked(lease, handle, count, step, it->second.reason,
                          result);
        }
        dropped += holds.size();
        if (!lease.holds.empty()) break;  // the batch is used up
        BookLeaseGoneLocked(ids[next]);
        draining_.erase(it);
        ++next;
      }
    }
    observer_->OnReclaimStep(dropped);
    if (next < ids.size()) {
      if (options_.leases.reclaim_pause > absl::ZeroDuration()) {
        absl::SleepFor(options_.leases.reclaim_pause);
      }
      LetQueuedCallsIn();
    }
  }
}

void Registry::LetQueuedCallsIn() const {
  const uint32_t queued = lock_queued_.load(std::memory_order_relaxed);
  if (queued == 0) return;
  const uint64_t target = lock_taken_.load(std::memory_order_relaxed) + queued;
  // Bounded: under a steady stream of calls the queue never empties, and
  // the reclaim must go on.
  const absl::Time until = absl::Now() + absl::Milliseconds(1);
  while (lock_taken_.load(std::memory_order_relaxed) < target &&
         absl::Now() < until) {
    std::this_thread::yield();
  }
}

}  // namespace shmbroker
