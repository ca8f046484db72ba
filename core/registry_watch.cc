// Registry: Watch. The changes are recorded under the Registry's lock (so
// their order is the order of the changes, and List's revision matches what
// it lists); watchers' queues are woken after it is released (Deferred).
#include <utility>

#include "core/registry.h"

namespace shmbroker {

absl::StatusOr<WatchHub::Watch> Registry::Watch(const WatchSpec& spec,
                                                std::function<void()> wake) {
  Locked lock(this);
  absl::StatusOr<WatchHub::Watch> watch = watch_hub_.Add(spec, std::move(wake));
  observer_->OnWatchers(watch_hub_.size());
  return watch;
}

bool Registry::CancelWatch(WatcherId watcher) {
  Locked lock(this);
  const bool removed = watch_hub_.Remove(watcher);
  if (removed) observer_->OnWatchers(watch_hub_.size());
  return removed;
}

void Registry::PublishLocked(WatchEventType type, const BufferInfo& info,
                             Deferred& deferred, ReclaimReason reason) {
  if (watch_hub_.Publish(type, info, reason, deferred.watch_queues()) > 0) {
    observer_->OnWatchers(watch_hub_.size());
  }
}

}  // namespace shmbroker
