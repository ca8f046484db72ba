// Registry: the handoff. A producer seals a buffer; consumers wait, without
// a thread each, for it to be created or sealed (core/waiter_table.h), and
// are handed a grant the moment it is.
#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/buffer_name.h"
#include "core/limit.h"
#include "core/registry.h"

namespace shmbroker {

Registry::Deferred::~Deferred() {
  for (Wakeup& w : wakeups_) {
    w.done(registry_->FinishGrant(w.client, std::move(w.grant)));
  }
  for (const std::shared_ptr<WatchQueue>& queue : watch_queues_) queue->Wake();
  // If a buffer was erased: its memory (and fd) goes first, so that the
  // waiters find its room.
  memory_.clear();
  registry_->ServeRoomWaiters();
  if (!draining_.empty()) registry_->DrainLeases(draining_, result_);
}

absl::StatusOr<BufferInfo> Registry::Seal(ConnectionId client,
                                          const BufferRef& ref) {
  Deferred deferred(this);
  Locked lock(this);
  auto caller = connections_.find(client);
  if (caller == connections_.end()) return ConnectionClosedError(client);
  absl::StatusOr<Handle> handle = ResolveLocked(ref);
  if (!handle.ok()) return handle.status();
  BufferRecord& record = buffers_.at(*handle);
  // Only a holder may seal: the connection's leases, or a detached lease of
  // its uid (a producer that handed its hold to one).
  // The connection's own leases first; the scan for a detached lease of
  // its uid only when they hold nothing (rare, as in Release).
  auto holds_it = [&](const LeaseRecord* lease) {
    return lease != nullptr && lease->holds.contains(*handle);
  };
  bool holds = false;
  for (LeaseId id : caller->second.leases) {
    if (holds_it(leases_.Find(id))) {
      holds = true;
      break;
    }
  }
  for (auto it = leases_.all().begin(); !holds && it != leases_.all().end();
       ++it) {
    const LeaseInfo& info = it->second.info;
    holds = info.detached && info.owner.uid == caller->second.identity.uid &&
            holds_it(&it->second);
  }
  if (!holds) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: this client connection holds no reference to "
        "buffer %d (only a holder with write access may seal it)",
        *handle));
  }
  absl::StatusOr<AccessMode> mode =
      DecideAccess(caller->second.identity, record.owner, record.share(),
                   AccessRequest::kReadWrite);
  if (!mode.ok()) return mode.status();
  if (record.sealed) return record.Info(*handle);
  if (record.kind == BufferKind::kDedicated &&
      record.backing == Backing::kMemfd) {
    if (absl::Status s = MemoryLocked(record)->SealWrites(); !s.ok()) {
      return absl::Status(s.code(), absl::StrFormat("cannot seal buffer %d: %s",
                                                    *handle, s.message()));
    }
  }
  record.sealed = true;
  observer_->OnSeal();
  PublishLocked(WatchEventType::kSealed, record.Info(*handle), deferred);
  BookBufferLocked(*handle, record);
  WakeWaitersLocked(*handle, record, deferred);
  return record.Info(*handle);
}

absl::StatusOr<std::variant<Grant, WaiterId>> Registry::AttachOrWait(
    ConnectionId client, const std::string& name, AccessRequest request,
    LeaseId lease, WaitFor until, absl::Time deadline, WaitDone done) {
  if (absl::Status s = ValidateBufferName(name); !s.ok()) return s;
  absl::StatusOr<Grant> now;
  {
    Locked lock(this);
    auto caller = connections_.find(client);
    if (caller == connections_.end()) return ConnectionClosedError(client);
    // Fail now for what waiting cannot mend: a lease that is not usable.
    if (absl::StatusOr<LeaseRecord*> under = UsableLeaseLocked(client, lease);
        !under.ok()) {
      return under.status();
    }
    auto named = names_.find(name);
    const BufferRecord* record =
        named == names_.end() ? nullptr : &buffers_.at(named->second);
    const bool ready =
        record != nullptr && record->has_memory &&
        (until == WaitFor::kExists || record->sealed) &&
        MaySee(caller->second.identity, record->owner, record->share());
    if (ready) {
      now = AttachLocked(client, named->second, request, lease);
    } else {
      const size_t waiting =
          waiters_.CountFor(client) + room_waiters_.CountFor(client);
      if (waiting >= options_.max_waiters_per_connection) {
        return LimitReached(
            Limit::kMaxWaitersPerConnection,
            absl::StrFormat("client connection has %d waiting Attach and "
                            "Allocate calls, the most allowed",
                            waiting));
      }
      observer_->OnWaiters(waiters_.size() + 1);
      return waiters_.Add(
          {client, name, until, request, lease, deadline, std::move(done)});
    }
  }
  absl::StatusOr<Grant> grant = FinishGrant(client, std::move(now));
  if (!grant.ok()) return grant.status();
  return std::move(*grant);
}

bool Registry::CancelWait(WaiterId waiter) {
  Locked lock(this);
  const bool removed = waiters_.Remove(waiter).has_value();
  if (removed) observer_->OnWaiters(waiters_.size());
  return removed;
}

void Registry::ExpireWaiters() {
  Deferred deferred(this);
  Locked lock(this);
  ExpireRoomWaitersLocked(deferred);
  for (WaiterId id : waiters_.Due(clock_->Now())) {
    std::optional<Waiter<absl::StatusOr<Grant>>> w = waiters_.Remove(id);
    deferred.Wake(
        w->connection, std::move(w->done),
        absl::DeadlineExceededError(absl::StrFormat(
            "deadline passed waiting for buffer \"%s\" to be %s", w->name,
            w->until == WaitFor::kSealed ? "created and sealed" : "created")));
  }
  observer_->OnWaiters(waiters_.size());
}

std::optional<absl::Time> Registry::NextWaiterDeadline() const {
  Locked lock(this);
  std::optional<absl::Time> attach = waiters_.NextDeadline();
  std::optional<absl::Time> room = room_waiters_.NextDeadline();
  if (!attach.has_value()) return room;
  if (!room.has_value()) return attach;
  return std::min(*attach, *room);
}

void Registry::WakeWaitersLocked(Handle handle, const BufferRecord& record,
                                 Deferred& deferred) {
  if (record.name().empty()) return;
  for (WaiterId id : waiters_.ForName(record.extras->name)) {
    const Waiter<absl::StatusOr<Grant>>& w = *waiters_.Find(id);
    if (w.until == WaitFor::kSealed && !record.sealed) continue;
    // A waiter learns nothing of a buffer it may not see: it waits on.
    if (!MaySee(connections_.at(w.connection).identity, record.owner,
                record.share())) {
      continue;
    }
    absl::StatusOr<Grant> grant =
        AttachLocked(w.connection, handle, w.access, w.lease);
    std::optional<Waiter<absl::StatusOr<Grant>>> woken = waiters_.Remove(id);
    deferred.Wake(woken->connection, std::move(woken->done), std::move(grant));
  }
  observer_->OnWaiters(waiters_.size());
}

}  // namespace shmbroker
