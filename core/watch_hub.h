// WatchHub: the daemon's log of buffer changes, and the watchers that follow
// it (etcd's and Kubernetes' List + Watch).
//
// Every change to the set of buffers (one created, sealed, or released: its
// last hold gone, for a ReclaimReason) gets the next revision, daemon-wide,
// one more per change. The daemon starts at revision 1, before any change;
// List reports the revision it reflects, and a watch from there ("after
// revision R") misses nothing. The last WatchOptions::history changes are
// kept, so a watch may start in the recent past; an older start is
// OUT_OF_RANGE (the client lists again), a future one INVALID_ARGUMENT.
//
// A watcher has an identity (it sees only buffers it may see: MaySee, as
// List), a name prefix, and a bounded queue (WatchQueue). A watcher whose
// queue is full is lost: the hub forgets it, and its queue ends with one
// kLost event naming the first revision it missed. Watchers per scope (a
// client connection, or a gRPC connection without one) are bounded.
//
// Not thread-safe: the Registry guards the hub with its mutex. WatchQueue is
// thread-safe (a leaf lock): the hub fills it under the Registry's lock, its
// consumer drains it without.
#ifndef SHMBROKER_CORE_WATCH_HUB_H_
#define SHMBROKER_CORE_WATCH_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/identity.h"
#include "core/registry_observer.h"
#include "core/registry_types.h"

namespace shmbroker {

using WatcherId = uint64_t;

enum class WatchEventType { kCreated, kSealed, kReleased, kLost };
// "created", "sealed", "released", "lost".
const char* WatchEventTypeName(WatchEventType type);

struct WatchEvent {
  WatchEventType type = WatchEventType::kCreated;
  // kLost: the first revision the watcher missed.
  uint64_t revision = 0;
  // The buffer as it was right after the change (empty for kLost).
  BufferInfo buffer;
  // kReleased: why its last hold went.
  ReclaimReason reason = ReclaimReason::kRelease;
};

// What a watcher asks for.
struct WatchSpec {
  Identity watcher;
  // Buffers whose name starts with it; empty: every buffer, unnamed ones too.
  std::string prefix;
  // Events with a revision above it; 0: from now on.
  uint64_t after_revision = 0;
  // What --max_watchers_per_connection counts by (e.g. the client
  // connection); opaque to the hub.
  std::string scope;
};

// One watcher's bounded queue. Thread-safe.
class WatchQueue {
 public:
  WatchQueue(size_t capacity, std::function<void()> wake)
      : capacity_(capacity), wake_(std::move(wake)) {}

  // The next event, or nullopt while none waits. A lost queue yields what it
  // held, then one kLost event, then nothing more.
  std::optional<WatchEvent> Pop() ABSL_LOCKS_EXCLUDED(mu_);
  // Calls the consumer's wake function (unless detached). The Registry calls
  // it without its lock when the queue had been empty, or was lost.
  void Wake() ABSL_LOCKS_EXCLUDED(wake_mu_);
  // No Wake reaches the consumer once this returns (it waits for a running
  // one): call it before destroying what the wake function points to.
  void Detach() ABSL_LOCKS_EXCLUDED(wake_mu_);
  // Why a lost queue ended (RESOURCE_EXHAUSTED naming the
  // watch_queue_events limit), to finish the stream with after kLost.
  absl::Status LostStatus() const;

 private:
  friend class WatchHub;
  enum class PushResult { kQueued, kQueuedWake, kLost };
  PushResult Push(const WatchEvent& event) ABSL_LOCKS_EXCLUDED(mu_);

  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> lost_at_ ABSL_GUARDED_BY(mu_);
  bool lost_sent_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex wake_mu_;  // taken before the consumer's locks, never in mu_
  std::function<void()> wake_ ABSL_GUARDED_BY(wake_mu_);
};

class WatchHub {
 public:
  explicit WatchHub(WatchOptions options) : options_(options) {}

  // The revision of the last change (1 before any).
  uint64_t revision() const { return revision_; }
  // Continues from a previous daemon's revision (core/books.h), with no
  // history: a watch from before it is told to list again.
  void ContinueFrom(uint64_t revision) {
    if (revision > revision_) revision_ = revision;
  }
  size_t size() const { return watchers_.size(); }

  struct Watch {
    WatcherId id = 0;
    std::shared_ptr<WatchQueue> queue;  // holds the replayed events already
  };
  // Adds a watcher whose queue calls `wake` (WatchQueue::Wake). Errors:
  // INVALID_ARGUMENT (bad prefix, future revision), OUT_OF_RANGE (a
  // revision no longer kept; names the watch_history limit),
  // RESOURCE_EXHAUSTED (max_watchers_per_connection in its scope).
  absl::StatusOr<Watch> Add(const WatchSpec& spec, std::function<void()> wake);
  // Forgets a watcher; false when it is gone already (cancelled or lost).
  bool Remove(WatcherId id);
  // Records a change to `buffer` under the next revision and queues it for
  // the watchers it concerns. Appends to `wake` the queues to wake once the
  // Registry's lock is released; returns how many watchers were lost.
  size_t Publish(WatchEventType type, const BufferInfo& buffer,
                 ReclaimReason reason,
                 std::vector<std::shared_ptr<WatchQueue>>* wake);

 private:
  struct Watcher {
    Identity identity;
    std::string prefix;
    std::string scope;
    std::shared_ptr<WatchQueue> queue;
  };
  static bool Concerns(const Watcher& watcher, const BufferInfo& buffer);
  // Queues `event` for the watcher if it concerns it; true when its queue
  // was full (the watcher is lost: the caller forgets it).
  bool Offer(const Watcher& watcher, const WatchEvent& event,
             std::vector<std::shared_ptr<WatchQueue>>* wake);

  const WatchOptions options_;
  uint64_t revision_ = 1;
  std::deque<WatchEvent> history_;  // the last changes, oldest first
  absl::btree_map<WatcherId, Watcher> watchers_;
  absl::flat_hash_map<std::string, uint32_t> per_scope_;
  WatcherId next_id_ = 1;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_WATCH_HUB_H_
