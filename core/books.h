// Books: what a daemon must remember to resume after it restarts, and the
// sink the Registry writes it to as it changes.
//
// The memory survives a daemon's death in its clients' mappings; only the
// books are lost. So the Registry reports every change to them (a buffer
// made, sealed or gone, a lease granted, renewed or ended, a hold count
// changed) to a BookSink, with its mutex held, in the order they happen.
// The daemon's sink (server/books_journal.h) appends each to a journal in
// the state directory; the next daemon replays it into Books and hands them
// to Registry::Restore, which waits for the clients to present the memory
// again (docs/architecture.md, "Restart").
//
// Every change is an upsert or an erase of one entity, so replaying a
// journal is applying its records in order, and a snapshot of the live
// entities (BookSink::Rewrite), even one taken in steps while changes go
// on, is a journal too. Plain values, no locking.
#ifndef SHMBROKER_CORE_BOOKS_H_
#define SHMBROKER_CORE_BOOKS_H_

#include <sys/types.h>

#include <cstdint>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/time/time.h"
#include "core/identity.h"
#include "core/ids.h"
#include "core/memory_object.h"
#include "core/registry_types.h"

namespace shmbroker {

struct BookedBuffer {
  // holders and created are not kept (holds are booked on their own).
  BufferInfo info;
  // Its memory object's (a pooled buffer's: its arena's).
  MemoryIdentity memory;
};

struct BookedLease {
  LeaseId id = 0;
  Identity owner;
  bool detached = false;
  // A connection's default lease: ends with the connection once adopted.
  bool connection_default = false;
  absl::Duration ttl;
  absl::Time deadline;  // wall clock
};

struct Books {
  absl::btree_map<Handle, BookedBuffer> buffers;
  absl::btree_map<LeaseId, BookedLease> leases;
  // (lease, handle) -> holds of that buffer under that lease (> 0).
  absl::btree_map<std::pair<LeaseId, Handle>, uint32_t> holds;
  // Ids handed out so far: the next daemon continues above them, so that no
  // handle, lease or arena id means two things to a client that resumes.
  Handle last_handle = 0;
  LeaseId last_lease = 0;
  uint64_t last_arena = 0;
  // Of the last change the watchers saw (core/watch_hub.h).
  uint64_t revision = 0;
};

// Where the Registry writes its books. Called with the Registry's mutex
// held, in order: must be quick and must not call back into the Registry.
// Failing to write is the sink's to report (a log line, a metric); the
// Registry goes on.
class BookSink {
 public:
  virtual ~BookSink() = default;
  // A buffer created (with its memory), or changed (sealed).
  virtual void PutBuffer(const BookedBuffer& buffer, uint64_t revision) = 0;
  virtual void EraseBuffer(Handle handle, uint64_t revision) = 0;
  // A lease granted, renewed (new deadline) or adopted after a restart.
  virtual void PutLease(const BookedLease& lease) = 0;
  virtual void EraseLease(LeaseId lease) = 0;
  // The holds of `handle` under `lease` are now `count` (0: none).
  virtual void PutHolds(LeaseId lease, Handle handle, uint32_t count) = 0;
  // An arena id handed out (ids only grow).
  virtual void PutLastArena(uint64_t arena_id) = 0;
  // The changes above may be held back until Flush writes them out. The
  // Registry calls it at the end of every hold of its lock that changed
  // the books, before the lock goes and so before any caller hears of a
  // change: a drain step that drops 64 holds costs one write, not 128.
  virtual void Flush() {}
  // Whether the journal has grown enough that the Registry should rewrite
  // it from its live books.
  virtual bool WantsRewrite() const = 0;
  // A rewrite, in steps: a snapshot of 100,000 buffers would hold the
  // Registry's lock for tens of milliseconds, so the Registry hands its
  // live entities over a few hundred at a time, one step per hold of its
  // lock (core/registry_books.cc). BeginRewrite starts a new journal with
  // the ids of `ids` (last handle, lease and arena, revision; its entities
  // are ignored); from then on every change goes to the new journal too.
  // AddToRewrite adds `entities` (buffers, leases, holds; its ids are
  // ignored) as they are now. FinishRewrite puts the new journal in the
  // old one's place. Each writes the changes held back first. Since every
  // record is an upsert or an erase written in the order things happened, the
  // new journal replays to the live books whatever changed between the steps.
  // Each returns false when the rewrite failed and was given up (the sink
  // reports why); the old journal goes on.
  virtual bool BeginRewrite(const Books& ids) = 0;
  virtual bool AddToRewrite(const Books& entities) = 0;
  virtual bool FinishRewrite() = 0;
  // All three at once: replaces everything written so far with `books`.
  bool Rewrite(const Books& books) {
    return BeginRewrite(books) && AddToRewrite(books) && FinishRewrite();
  }
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_BOOKS_H_
