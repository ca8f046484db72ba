// WatchHub: the change log and its watchers (see watch_hub.h).
#include "core/watch_hub.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/access.h"
#include "core/buffer_name.h"
#include "core/limit.h"

namespace shmbroker {

const char* WatchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kCreated:
      return "created";
    case WatchEventType::kSealed:
      return "sealed";
    case WatchEventType::kReleased:
      return "released";
    case WatchEventType::kLost:
      return "lost";
  }
  return "unknown";
}

std::optional<WatchEvent> WatchQueue::Pop() {
  absl::MutexLock lock(&mu_);
  if (!events_.empty()) {
    WatchEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }
  if (!lost_at_.has_value() || lost_sent_) return std::nullopt;
  lost_sent_ = true;
  WatchEvent lost;
  lost.type = WatchEventType::kLost;
  lost.revision = *lost_at_;
  return lost;
}

void WatchQueue::Wake() {
  absl::MutexLock lock(&wake_mu_);
  if (wake_) wake_();
}

void WatchQueue::Detach() {
  absl::MutexLock lock(&wake_mu_);
  wake_ = nullptr;
}

absl::Status WatchQueue::LostStatus() const {
  return LimitReached(
      Limit::kWatchQueueEvents,
      absl::StrFormat("watcher fell behind: %d events queued unsent, the "
                      "most allowed; List again and watch from its revision",
                      capacity_));
}

WatchQueue::PushResult WatchQueue::Push(const WatchEvent& event) {
  absl::MutexLock lock(&mu_);
  if (events_.size() >= capacity_) {
    lost_at_ = event.revision;
    return PushResult::kLost;
  }
  events_.push_back(event);
  return events_.size() == 1 ? PushResult::kQueuedWake : PushResult::kQueued;
}

absl::StatusOr<WatchHub::Watch> WatchHub::Add(const WatchSpec& spec,
                                              std::function<void()> wake) {
  if (!spec.prefix.empty()) {
    if (absl::Status s = ValidateBufferName(spec.prefix); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad prefix: ", s.message()));
    }
  }
  if (spec.after_revision > revision_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "revision %d is ahead of the daemon's (%d): the daemon may have "
        "restarted; List again and watch from its revision",
        spec.after_revision, revision_));
  }
  // Changes after `compacted` are all in the history.
  const uint64_t compacted = revision_ - history_.size();
  if (spec.after_revision != 0 && spec.after_revision < compacted) {
    return LimitError(
        absl::StatusCode::kOutOfRange, Limit::kWatchHistory,
        absl::StrFormat("revision %d is no longer kept (the oldest change "
                        "kept is %d); List again and watch from its revision",
                        spec.after_revision, compacted + 1));
  }
  uint32_t& in_scope = per_scope_[spec.scope];
  if (in_scope >= options_.max_watchers_per_connection) {
    return LimitReached(
        Limit::kMaxWatchersPerConnection,
        absl::StrFormat("%d watchers open on this connection, the most "
                        "allowed",
                        in_scope));
  }
  ++in_scope;
  const WatcherId id = next_id_++;
  auto queue =
      std::make_shared<WatchQueue>(options_.queue_events, std::move(wake));
  watchers_.emplace(id, Watcher{spec.watcher, spec.prefix, spec.scope, queue});
  if (spec.after_revision != 0) {
    std::vector<std::shared_ptr<WatchQueue>> unused;  // the caller pulls
    for (size_t i = spec.after_revision - compacted; i < history_.size(); ++i) {
      if (Offer(watchers_.at(id), history_[i], &unused)) {
        Remove(id);
        break;
      }
    }
  }
  return Watch{id, std::move(queue)};
}

bool WatchHub::Remove(WatcherId id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return false;
  auto scope = per_scope_.find(it->second.scope);
  if (--scope->second == 0) per_scope_.erase(scope);
  watchers_.erase(it);
  return true;
}

size_t WatchHub::Publish(WatchEventType type, const BufferInfo& buffer,
                         ReclaimReason reason,
                         std::vector<std::shared_ptr<WatchQueue>>* wake) {
  WatchEvent event{type, ++revision_, buffer, reason};
  std::vector<WatcherId> lost;
  for (auto& [id, watcher] : watchers_) {
    if (Offer(watcher, event, wake)) lost.push_back(id);
  }
  for (WatcherId id : lost) Remove(id);
  if (options_.history == 0) return lost.size();
  if (history_.size() == options_.history) history_.pop_front();
  history_.push_back(std::move(event));
  return lost.size();
}

bool WatchHub::Concerns(const Watcher& watcher, const BufferInfo& buffer) {
  return absl::StartsWith(buffer.name, watcher.prefix) &&
         MaySee(watcher.identity, buffer.owner, buffer.share);
}

bool WatchHub::Offer(const Watcher& watcher, const WatchEvent& event,
                     std::vector<std::shared_ptr<WatchQueue>>* wake) {
  if (!Concerns(watcher, event.buffer)) return false;
  switch (watcher.queue->Push(event)) {
    case WatchQueue::PushResult::kQueued:
      return false;
    case WatchQueue::PushResult::kQueuedWake:
      wake->push_back(watcher.queue);
      return false;
    case WatchQueue::PushResult::kLost:
      wake->push_back(watcher.queue);
      return true;
  }
  return false;
}

}  // namespace shmbroker
