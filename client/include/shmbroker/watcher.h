// shmbroker::Watcher: one Watch stream (Client::Watch): the changes to the
// buffers whose name starts with a prefix and that this process may see,
// each with its revision (docs/api.md, "Watch"). List + Watch:
//
//   auto listed = client->ListWithRevision();          // the state, at R
//   auto watcher = client->Watch("cam.", {.after_revision = listed->revision});
//   for (;;) {
//     auto event = (*watcher)->Next();                  // every change after R
//     if (!event.ok()) break;                           // the stream ended
//     if (event->type == WatchEvent::Type::kLost) ...   // fell behind: re-list
//   }
//
// Events are read ahead into memory as the daemon sends them. Thread-safe;
// destroying the Watcher cancels the stream. It may outlive its Client.
#ifndef SHMBROKER_CLIENT_WATCHER_H_
#define SHMBROKER_CLIENT_WATCHER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shmbroker/types.h"

namespace shmbroker::client {

struct WatchEvent {
  // kLost: this watcher fell behind (--watch_queue_events) and missed the
  // changes from `revision` on; it is the stream's last event.
  enum class Type { kCreated, kSealed, kReleased, kLost };
  // kReleased: why the buffer's last hold went.
  enum class Reason {
    kNone,
    kReleased,
    kClientGone,
    kLeaseExpired,
    kLeaseRevoked,
    kShutdown,
    kNotResumed  // the daemon restarted and nobody took the buffer back
  };
  Type type = Type::kCreated;
  uint64_t revision = 0;
  BufferInfo buffer;  // right after the change; empty for kLost
  Reason reason = Reason::kNone;
};
// "created", "sealed", "released", "lost"; "released", "client_gone",
// "lease_expired", "lease_revoked", "shutdown" ("" for kNone).
const char* WatchEventTypeName(WatchEvent::Type type);
const char* ReleaseReasonName(WatchEvent::Reason reason);

struct WatchOptions {
  // Changes with a revision above it (e.g. ListResult::revision); 0: from
  // now on.
  uint64_t after_revision = 0;
};

class Watcher {
 public:
  class Stream;  // internal
  explicit Watcher(std::unique_ptr<Stream> stream);
  ~Watcher();  // cancels, and waits for the stream to end
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // The next event, waiting until `deadline` (DEADLINE_EXCEEDED then; the
  // watch goes on). Once the stream has ended and its events are read: its
  // status (RESOURCE_EXHAUSTED after a kLost event, CANCELLED after Cancel,
  // UNAVAILABLE when the daemon went away).
  absl::StatusOr<WatchEvent> Next(absl::Time deadline = absl::InfiniteFuture());
  // Ends the stream; Next returns what was read, then CANCELLED.
  void Cancel();

 private:
  std::unique_ptr<Stream> stream_;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_WATCHER_H_
