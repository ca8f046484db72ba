// Registry: back-pressure. An Allocate that may wait and finds no room
// (capacity, the buffer limit, its uid's quota, the fd reserve) becomes a
// RoomWaiter (core/room_waiters.h) instead of failing. Whenever a buffer is
// erased, the thread that erased it serves the waiters, oldest first,
// outside the Registry's lock: each gets one more Allocate. A waiter still
// refused by a daemon-wide limit stops the round, so that a later, smaller
// request cannot take the room an earlier one waits for; one refused by
// its own uid's quota is passed over (the room it needs is its uid's own).
// Only one thread serves at a time; one that finds it busy leaves the
// round to the server, which looks again before it stops.
#include <unistd.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/limit.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

// Refusals that room coming back can mend.
std::optional<Limit> RoomLimit(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kResourceExhausted) {
    return std::nullopt;
  }
  std::optional<Limit> limit = LimitOf(status);
  if (!limit.has_value()) return std::nullopt;
  switch (*limit) {
    case Limit::kCapacity:
    case Limit::kMaxBuffers:
    case Limit::kFdReserve:
    case Limit::kMaxBytesPerUid:
    case Limit::kMaxBuffersPerUid:
      return limit;
    default:
      return std::nullopt;
  }
}

uint64_t WholePages(uint64_t size) {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return (size + kPage - 1) / kPage * kPage;
}

bool IsUidQuota(Limit limit) {
  return limit == Limit::kMaxBytesPerUid || limit == Limit::kMaxBuffersPerUid;
}

}  // namespace

absl::StatusOr<std::variant<Grant, WaiterId>> Registry::AllocateOrWait(
    ConnectionId client, const AllocateSpec& spec, absl::Time deadline,
    WaitDone done) {
  const uint64_t generation = room_generation_.load();
  absl::StatusOr<Grant> now = DoAllocate(client, spec);
  const std::optional<Limit> limit = RoomLimit(now.status());
  if (now.ok() || !limit.has_value() || !CouldEverFit(client, spec)) {
    observer_->OnAllocate(now.status().code());
    if (!now.ok()) return now.status();
    return std::move(*now);
  }
  Locked lock(this);
  if (!connections_.contains(client)) return ConnectionClosedError(client);
  const size_t waiting =
      waiters_.CountFor(client) + room_waiters_.CountFor(client);
  if (waiting >= options_.max_waiters_per_connection) {
    observer_->OnAllocate(absl::StatusCode::kResourceExhausted);
    return LimitReached(
        Limit::kMaxWaitersPerConnection,
        absl::StrFormat("client connection has %d waiting Attach and "
                        "Allocate calls, the most allowed (and no room now: "
                        "%s)",
                        waiting, now.status().message()));
  }
  const WaiterId id = room_waiters_.Add(
      {client, spec, clock_->Now(), deadline, now.status(), std::move(done)});
  observer_->OnRoomWaiters(room_waiters_.size());
  // Room that came back since the attempt served nobody: try again, once
  // the caller calls ServeRoomWaiters.
  if (room_generation_.load() != generation) room_dirty_ = true;
  return id;
}

bool Registry::CouldEverFit(ConnectionId client, const AllocateSpec& spec) {
  const uint64_t pages = WholePages(spec.size);
  Locked lock(this);
  auto caller = connections_.find(client);
  if (caller == connections_.end()) return false;
  const UidQuota quota = quotas_.For(caller->second.identity.uid);
  return pages <= options_.capacity_bytes &&
         (quota.max_bytes == 0 || pages <= quota.max_bytes);
}

bool Registry::CancelAllocateWait(WaiterId waiter) {
  Locked lock(this);
  const bool removed = room_waiters_.Remove(waiter).has_value();
  if (removed) observer_->OnRoomWaiters(room_waiters_.size());
  return removed;
}

void Registry::MarkRoomDirtyLocked() {
  // A waiter being tried is out of the table: while anyone serves, the
  // server must look again, or room freed during a failing attempt would
  // reach nobody until the next erase.
  if (!room_waiters_.empty() || serving_room_.load()) room_dirty_ = true;
}

void Registry::ServeRoomWaiters() {
  // Bounded: under constant churn the next erase serves the rest.
  for (int round = 0; round < 8 && room_dirty_.load(); ++round) {
    bool idle = false;
    if (!serving_room_.compare_exchange_strong(idle, true)) {
      return;  // whoever serves looks again before it stops
    }
    room_dirty_ = false;
    ServeRoomWaitersOnce();
    serving_room_ = false;
  }
}

void Registry::ServeRoomWaitersOnce() {
  std::vector<WaiterId> line;
  {
    Locked lock(this);
    line = room_waiters_.InOrder();
  }
  for (WaiterId id : line) {
    std::optional<RoomWaiter> waiter;
    {
      Locked lock(this);
      waiter = room_waiters_.Remove(id);
    }
    if (!waiter.has_value()) continue;  // expired, cancelled or closed
    absl::StatusOr<Grant> got = DoAllocate(waiter->connection, waiter->spec);
    if (const std::optional<Limit> limit = RoomLimit(got.status());
        limit.has_value()) {
      waiter->why = got.status();
      Locked lock(this);
      room_waiters_.PutBack(id, std::move(*waiter));
      if (!IsUidQuota(*limit)) return;  // the line waits behind it
      continue;
    }
    observer_->OnAllocate(got.status().code());
    observer_->OnRoomWaited(clock_->Now() - waiter->since);
    {
      Locked lock(this);
      observer_->OnRoomWaiters(room_waiters_.size());
    }
    waiter->done(std::move(got));
  }
}

void Registry::ExpireRoomWaitersLocked(Deferred& deferred) {
  for (WaiterId id : room_waiters_.Due(clock_->Now())) {
    std::optional<RoomWaiter> w = room_waiters_.Remove(id);
    observer_->OnAllocate(absl::StatusCode::kDeadlineExceeded);
    observer_->OnRoomWaited(clock_->Now() - w->since);
    std::string message =
        absl::StrFormat("deadline passed waiting for room for %d bytes: %s",
                        w->spec.size, w->why.message());
    const std::optional<Limit> limit = LimitOf(w->why);
    deferred.Wake(w->connection, std::move(w->done),
                  limit.has_value()
                      ? LimitError(absl::StatusCode::kDeadlineExceeded, *limit,
                                   std::move(message))
                      : absl::DeadlineExceededError(message));
  }
  observer_->OnRoomWaiters(room_waiters_.size());
}

}  // namespace shmbroker
