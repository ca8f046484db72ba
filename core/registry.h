// Registry: the daemon's authority on buffers, client connections, leases and
// holds.
//
// A client connection (ConnectionId) is opened with its kernel-verified
// identity and gets a default lease (core/lease.h has the lease model).
// Allocate creates a buffer with one hold under a lease (the connection's
// default one unless another is named); Attach adds a hold (subject to the
// buffer's ACL); Release drops one. A lease ending (revoked, expired, or its
// connection closed) drops every hold under it. A buffer is reclaimed (its
// memory object closed and unlinked, its bytes returned to the capacity) the
// moment its last hold goes. Counts live here, never in shared pages, so a
// crashed client cannot leave them wrong. Time comes from the injected Clock;
// ExpireLeases is driven from outside (the daemon's sweeper, or a test).
//
// Memory comes in two kinds. A dedicated buffer has a memory object of its
// own, charged its size in pages against the capacity. With EnablePooling,
// small owner-only memfd buffers are pooled instead: a slot or page run in
// an arena of the owner's (core/pooled_allocator.h). Arenas (charged whole)
// and dedicated buffers draw on one Capacity (core/capacity.h).
//
// The handoff (registry_handoff.cc): a holder seals a buffer, and Attach
// calls may wait for one to be created or sealed (core/waiter_table.h).
// Watch (registry_watch.cc): every change to the buffers (created, sealed,
// released) gets a revision and goes to the watchers it concerns
// (core/watch_hub.h). The value types the Registry takes and returns are in
// core/registry_types.h.
//
// Restart (registry_books.cc, registry_restore.cc): every change to the
// books goes to a BookSink (core/books.h), and a restarted daemon Restores
// the previous one's books. Its buffers come back without their memory:
// invisible to Attach, Describe and List until a client presents the fd
// (Present) or, for POSIX ones, the name is reopened; its leases come back
// owned by no connection until their holders Resume them. What nobody took
// back is dropped when the grace ends (EndRestoreGrace).
//
// Thread-safe: one mutex guards all state; memory objects and arenas are
// created, and dedicated memory destroyed, outside it. Lock order: the
// Registry's mutex, then the pooled allocator's.
#ifndef SHMBROKER_CORE_REGISTRY_H_
#define SHMBROKER_CORE_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/access.h"
#include "core/books.h"
#include "core/capacity.h"
#include "core/clock.h"
#include "core/identity.h"
#include "core/ids.h"
#include "core/lease.h"
#include "core/lease_table.h"
#include "core/limit.h"
#include "core/memory_object.h"
#include "core/pooled_allocator.h"
#include "core/registry_observer.h"
#include "core/registry_records.h"
#include "core/registry_types.h"
#include "core/room_waiters.h"
#include "core/tenant_quotas.h"
#include "core/visibility_index.h"
#include "core/waiter_table.h"
#include "core/watch_hub.h"

namespace shmbroker {

class Registry {
 public:
  // `observer` (not owned, may be null) must outlive the Registry.
  explicit Registry(RegistryOptions options, const Clock* clock = RealClock(),
                    RegistryObserver* observer = nullptr);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  const RegistryOptions& options() const { return options_; }

  // Turns pooling on (INVALID_ARGUMENT for bad options). Call once, before
  // the first Allocate.
  absl::Status EnablePooling(PooledAllocatorOptions options);
  // Null while pooling is off. Its Stats() are the pool's figures.
  const PooledAllocator* pool() const { return pool_.get(); }
  // Returns idle pooled memory to the OS (PooledAllocator::Scavenge); a
  // no-op while pooling is off. Call from a timer, without other locks.
  ScavengeResult Scavenge();

  // Opens a connection and grants its default lease. RESOURCE_EXHAUSTED when
  // the uid has max_connections_per_uid connections.
  absl::StatusOr<ConnectionId> OpenConnection(const Identity& identity);
  // The connection's default lease, or NOT_FOUND / FAILED_PRECONDITION.
  absl::StatusOr<LeaseInfo> DefaultLease(ConnectionId client) const;
  // Ends the connection's leases (detached ones live on) and reclaims what
  // nobody else holds. Unknown ids are a no-op (returns zeros).
  CloseResult CloseConnection(
      ConnectionId client, ReclaimReason reason = ReclaimReason::kClientClosed);

  absl::StatusOr<Grant> Allocate(ConnectionId client, const AllocateSpec& spec);
  absl::StatusOr<Grant> Attach(ConnectionId client, const BufferRef& ref,
                               AccessRequest request, LeaseId lease = 0);
  // Drops one hold on the buffer: under `lease` if given, else under the
  // connection's default lease, its other leases, or a detached lease of the
  // caller's uid, in that order. Returns the holders left.
  absl::StatusOr<uint32_t> Release(ConnectionId client, const BufferRef& ref,
                                   LeaseId lease = 0);
  absl::StatusOr<uint32_t> Release(ConnectionId client, Handle handle) {
    return Release(client, BufferRef::ByHandle(handle));
  }

  // Seals a buffer the caller holds and may write (a handoff's producer
  // says "complete"): from then on every grant of it is read-only, and
  // asking to attach it read-write is FAILED_PRECONDITION. The kernel
  // enforces it for a dedicated memfd buffer (MemoryObject::SealWrites):
  // that fails with FAILED_PRECONDITION while any process maps it writable.
  // A pooled or POSIX buffer is sealed in the daemon's books only: holders
  // that could write it still can (docs/api.md, "Seal"). Sealing a sealed
  // buffer is OK. Wakes the waiters for it.
  absl::StatusOr<BufferInfo> Seal(ConnectionId client, const BufferRef& ref);

  // Handoff waits (core/waiter_table.h). What a waiter finally gets: the
  // grant, or why not (DEADLINE_EXCEEDED naming the buffer and what was
  // awaited; FAILED_PRECONDITION when its connection closed; CANCELLED).
  using WaitDone = std::function<void(absl::StatusOr<Grant>)>;
  // Attaches buffer `name` as Attach does, once it exists (or exists and is
  // sealed) and the caller may see it: now, returning the grant, or later,
  // returning a waiter id and calling `done` exactly once, without the
  // Registry's lock, on the thread that created or sealed the buffer (or
  // expired, closed or cancelled the wait). Until then the caller learns
  // nothing of a buffer it may not see. RESOURCE_EXHAUSTED beyond
  // max_waiters_per_connection.
  absl::StatusOr<std::variant<Grant, WaiterId>> AttachOrWait(
      ConnectionId client, const std::string& name, AccessRequest request,
      LeaseId lease, WaitFor until, absl::Time deadline, WaitDone done);
  // Forgets a waiter without calling it; false when its callback already ran
  // or is about to.
  bool CancelWait(WaiterId waiter);
  // Ends waits whose deadline passed (DEADLINE_EXCEEDED), the Allocate
  // calls waiting for room too.
  void ExpireWaiters();
  std::optional<absl::Time> NextWaiterDeadline() const;

  // Back-pressure (registry_room.cc, core/room_waiters.h). Allocates as
  // Allocate does; but when the refusal is one that room coming back can
  // mend (RESOURCE_EXHAUSTED by --capacity, --max_buffers, --fd_reserve or
  // the uid's quotas) and the request alone fits those limits, waits
  // instead: returns a waiter id and calls `done` exactly once, without
  // the Registry's lock, with the grant when room comes back (waiters are
  // served first come, first served) or why not (DEADLINE_EXCEEDED at
  // `deadline` quoting the last refusal, FAILED_PRECONDITION when its
  // connection closed). Waiters count against max_waiters_per_connection
  // with the waiting Attach calls. After getting a waiter id, call
  // ServeRoomWaiters() once the caller's own locks are released: room may
  // have come back meanwhile.
  absl::StatusOr<std::variant<Grant, WaiterId>> AllocateOrWait(
      ConnectionId client, const AllocateSpec& spec, absl::Time deadline,
      WaitDone done);
  // Forgets a waiting Allocate without calling it; false when its callback
  // already ran or is about to.
  bool CancelAllocateWait(WaiterId waiter);
  // Serves the Allocate calls waiting for room, if room may have come back
  // since they were last tried. Called by whoever erases a buffer; cheap
  // when nothing changed.
  void ServeRoomWaiters();

  // Watch (core/watch_hub.h has the model and the errors): adds a watcher
  // whose queue already holds the changes after spec.after_revision, and
  // whose `wake` is called, without the Registry's lock, when its queue
  // needs draining.
  absl::StatusOr<WatchHub::Watch> Watch(const WatchSpec& spec,
                                        std::function<void()> wake);
  // Forgets a watcher; false when it is gone already (cancelled or lost).
  bool CancelWatch(WatcherId watcher);

  // Leases (registry_leases.cc). A connection may use (hold under, renew)
  // the leases it granted and detached leases of its uid; the owner's uid
  // and root may inspect and revoke any lease.
  absl::StatusOr<LeaseInfo> GrantLease(ConnectionId client, absl::Duration ttl,
                                       bool detached);
  // Renews `lease` (0: the connection's default lease) to a full TTL.
  absl::StatusOr<LeaseInfo> KeepAlive(ConnectionId client, LeaseId lease);
  absl::StatusOr<CloseResult> RevokeLease(const Identity& caller,
                                          LeaseId lease);
  // `client` resolves lease 0 to its default lease; may be 0 otherwise.
  absl::StatusOr<LeaseDetail> LeaseTimeToLive(const Identity& caller,
                                              ConnectionId client,
                                              LeaseId lease) const;
  // Leases owned by the caller's uid (all of them for root) with id >
  // `after`, ascending, at most `limit`; `*more` says whether others follow.
  std::vector<LeaseInfo> ListLeases(const Identity& caller, LeaseId after,
                                    size_t limit, bool* more) const;
  // Ends up to `max_leases` leases whose deadline has passed.
  CloseResult ExpireLeases(size_t max_leases);
  std::optional<absl::Time> NextLeaseDeadline() const;

  absl::StatusOr<BufferInfo> Describe(const Identity& caller,
                                      const BufferRef& ref) const;
  // Buffers `caller` may see with handle > `after`, ascending, at most
  // `limit`; `*more` says whether further ones exist; `*revision` (if not
  // null), the revision the page reflects (core/watch_hub.h).
  std::vector<BufferInfo> List(const Identity& caller, Handle after,
                               size_t limit, bool* more,
                               uint64_t* revision = nullptr) const;
  // With `tenants`, also what Tenants() gives, from the same hold of the
  // lock: a caller that wants both waits for it once (while a reclaim
  // takes it in steps, each wait is up to a step).
  RegistryStats Stats(std::vector<TenantUsage>* tenants = nullptr) const;
  // Usage per owner uid, largest first.
  std::vector<TenantUsage> Tenants() const;
  // What `uid` has charged against its quotas (--max_bytes_per_uid,
  // --max_buffers_per_uid): its live buffers, and those being allocated
  // (a pooled one at its size in whole pages until its slot is known).
  TenantQuotas::Usage QuotaUsage(uid_t uid) const;
  // Gives the uids in `own` their own quotas, in place of the defaults and
  // of any given before (--tenant_limits on SIGHUP). A quota at or above
  // the daemon's own limit is none, as for the defaults.
  void SetOwnQuotas(OwnQuotas own);
  // `uid`'s quotas as in force (0: none).
  UidQuota QuotaFor(uid_t uid) const;
  // Restart (core/books.h). Sets where the books go (null: nowhere). Call
  // before serving.
  void SetBookSink(BookSink* sink);
  // The books as they are now (what a rewrite of the journal writes).
  Books SnapshotBooks() const;
  // Restores a previous daemon's books: call once, after EnablePooling and
  // before any connection opens. POSIX buffers are reopened by name (and
  // checked to be the objects recorded); the others wait for Present.
  // Lease deadlines move `grace` later. Invalid entries are skipped.
  RestoreResult Restore(const Books& books, absl::Duration grace);
  // A client presents the memory of restored buffer `handle` (the segment,
  // or a pooled buffer's arena) that it held under `lease`: adopted if it
  // is the object the books recorded and the caller may hold the buffer.
  // OK when the buffer is live already (adopted by another client);
  // NOT_FOUND (not in the books), PERMISSION_DENIED (another uid's),
  // FAILED_PRECONDITION (not that object). The outcome is also kept for
  // Resume to report.
  // Returns the bytes this presentation brought back (0: live already).
  absl::StatusOr<uint64_t> Present(ConnectionId client, Handle handle,
                                   LeaseId lease, UniqueFd fd);
  // Takes restored leases over into `client` (same uid) and reports, per
  // handle, whether the buffer is live again.
  ResumeResult Resume(ConnectionId client, const std::vector<LeaseId>& leases,
                      const std::vector<Handle>& handles);
  // Ends the grace: drops every restored buffer whose memory nobody
  // presented (ReclaimReason::kNotResumed). Returns what it dropped.
  CloseResult EndRestoreGrace();
  // Restored buffers still waiting for their memory.
  uint64_t AwaitingMemory() const;
  // The memory to leave with a service manager when stopping for a restart:
  // every live memfd dedicated buffer, and every arena with a live buffer
  // in it, once (registry_kept.cc).
  std::vector<KeptMemory> MemoryToKeep() const;
  // Takes kept memory back after Restore, as if its holders had presented
  // it but without their uid or lease (the service manager only holds what
  // this daemon's predecessor gave it): the restored buffer `id`, or every
  // restored pooled buffer of arena `id`, if `fd` is the object the books
  // recorded. NOT_FOUND when no restored buffer awaits it;
  // FAILED_PRECONDITION when `fd` is not that object.
  absl::StatusOr<KeptAdoption> AdoptKept(KeptMemory::Kind kind, uint64_t id,
                                         UniqueFd fd);
  // The daemon is stopping for a restart: stop writing the books (the
  // shutdown's releases must not reach them) and leave POSIX names in
  // place for the successor.
  void StopBookingForRestart();

  // Bytes of live buffers' memory actually backed by pages (st_blocks), which
  // is less than allocated for memory never touched. One fstat per dedicated
  // buffer, made without the lock; the table is walked kResidentBytesStep
  // buffers per hold of the lock, so buffers made or gone meanwhile may be
  // counted or not.
  uint64_t ResidentBytes() const;
  static constexpr size_t kResidentBytesStep = 4096;

 private:
  using BufferRecord = registry_internal::BufferRecord;
  using ConnectionRecord = registry_internal::ConnectionRecord;
  using EndedLease = registry_internal::EndedLease;
  using DrainingLease = registry_internal::DrainingLease;
  using LiveCounts = registry_internal::LiveCounts;
  using BooksRewrite = registry_internal::BooksRewrite;
  using ArenaMemory = registry_internal::ArenaMemory;
  // What must happen once the mutex is released: memory to let go of,
  // waiters to call, and ended leases whose holds are to be dropped (in
  // steps, counted in `result` if given). Declared before the MutexLock, so
  // its destructor runs after the unlock.
  class Deferred {
   public:
    explicit Deferred(Registry* registry, CloseResult* result = nullptr)
        : registry_(registry), result_(result) {}
    ~Deferred();
    Deferred(const Deferred&) = delete;
    Deferred& operator=(const Deferred&) = delete;
    void Free(std::shared_ptr<const MemoryObject> memory) {
      memory_.push_back(std::move(memory));
    }
    void Drain(LeaseId ended) { draining_.push_back(ended); }
    void Wake(ConnectionId client, WaitDone done, absl::StatusOr<Grant> grant) {
      wakeups_.push_back({client, std::move(done), std::move(grant)});
    }
    std::vector<std::shared_ptr<WatchQueue>>* watch_queues() {
      return &watch_queues_;
    }

   private:
    struct Wakeup {
      ConnectionId client;
      WaitDone done;
      absl::StatusOr<Grant> grant;
    };
    Registry* const registry_;
    CloseResult* const result_;
    std::vector<LeaseId> draining_;
    std::vector<std::shared_ptr<const MemoryObject>> memory_;
    std::vector<Wakeup> wakeups_;
    std::vector<std::shared_ptr<WatchQueue>> watch_queues_;  // to wake
  };
  // How every call takes mu_: it counts the calls queued for the lock, so
  // that DrainLeases can let them in between its steps (absl::Mutex is not
  // fair: a thread woken from its queue would find the lock taken again).
  class ABSL_SCOPED_LOCKABLE Locked {
   public:
    explicit Locked(const Registry* registry)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(registry->mu_)
        : registry_(registry) {
      registry_->lock_queued_.fetch_add(1, std::memory_order_relaxed);
      registry_->mu_.Lock();
      registry_->lock_queued_.fetch_sub(1, std::memory_order_relaxed);
      registry_->lock_taken_.fetch_add(1, std::memory_order_relaxed);
    }
    // A section that changed the books ends by writing them out, and with
    // a step of their rewrite if one is under way: the state is whole
    // again here, whereas a step inside it could read an entity between
    // its change and its record.
    ~Locked() ABSL_UNLOCK_FUNCTION() {
      if (registry_->books_changed_) registry_->FlushBooksLocked();
      registry_->mu_.Unlock();
    }
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;

   private:
    const Registry* const registry_;
  };
  // Between two steps of dropping holds: waits (1 ms at most) until the
  // calls queued for the lock have had it.
  void LetQueuedCallsIn() const ABSL_LOCKS_EXCLUDED(mu_);

  static absl::Status ConnectionClosedError(ConnectionId client);
  absl::StatusOr<Grant> DoAllocate(ConnectionId client,
                                   const AllocateSpec& spec);
  // Whether `spec` gets a pooled buffer; INVALID_ARGUMENT or
  // FAILED_PRECONDITION when it asks for one it cannot have.
  absl::StatusOr<bool> WantsPool(const AllocateSpec& spec) const;
  // A buffer reserved (handle, name, hold count, dedicated bytes) whose
  // memory is still to be made, unlocked.
  struct Pending {
    Handle handle = 0;
    LeaseId lease = 0;
    MemorySpec memory;
  };
  // `dedicated_pages` is 0 for a pooled buffer. Sets `*over_capacity` when
  // the capacity refused the pages. Charges the owner's quota the buffer
  // and its size in pages (QuotaBytesLocked).
  absl::StatusOr<Pending> ReserveLocked(ConnectionId client,
                                        const AllocateSpec& spec,
                                        uint64_t dedicated_pages,
                                        bool* over_capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges a dedicated buffer's pages to the capacity and to
  // allocated_bytes_, or says why the capacity refuses.
  absl::Status ChargeDedicatedLocked(uint64_t charged)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills in the memory of a pending buffer once created; undoes the
  // reservation if its lease ended meanwhile.
  absl::StatusOr<Grant> FinishAllocateLocked(
      Handle handle, LeaseId lease_id,
      const std::shared_ptr<const MemoryObject>& memory,
      const PooledBlock* block, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds a hold on a live buffer for `client` under `lease`, with the access
  // the ACL and its seal allow; the read-only fd is opened by FinishGrant.
  absl::StatusOr<Grant> AttachLocked(ConnectionId client, Handle handle,
                                     AccessRequest request, LeaseId lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Completes a grant without the lock: opens its read-only fd, dropping the
  // hold again if that fails.
  absl::StatusOr<Grant> FinishGrant(ConnectionId client,
                                    absl::StatusOr<Grant> grant)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Hands the buffer to the waiters for its name whose condition it now
  // meets and who may see it.
  void WakeWaitersLocked(Handle handle, const BufferRecord& record,
                         Deferred& deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The handle of the live (not pending) buffer `ref` names, or NOT_FOUND /
  // INVALID_ARGUMENT (bad name).
  absl::StatusOr<Handle> ResolveLocked(const BufferRef& ref) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lease `client` may put holds under: `lease`, or its default for 0.
  absl::StatusOr<LeaseRecord*> UsableLeaseLocked(ConnectionId client,
                                                 LeaseId lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND naming why `lease` is gone (revoked, expired, ...).
  absl::Status LeaseGoneLocked(LeaseId lease) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckHoldLimitLocked(const LeaseRecord& lease) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddHoldLocked(LeaseRecord& lease, Handle handle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops `count` holds of `lease` on `handle`; moves the memory of a
  // reclaimed buffer to `deferred` so it is destroyed after unlocking.
  uint32_t DropHoldsLocked(LeaseRecord& lease, Handle handle, uint32_t count,
                           Deferred& deferred, ReclaimReason reason,
                           CloseResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the lease: from now on it is gone for every caller, and a
  // connection whose default lease this is closes too. Its holds stay, in
  // draining_, until `deferred` drops them (DrainLeases).
  void EndLeaseLocked(LeaseId lease, ReclaimReason reason, Deferred& deferred,
                      CloseResult* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the holds of ended leases `ids`, reclaim_batch buffers per step,
  // the lock released and the thread asleep for reclaim_pause between
  // steps, then forgets the leases.
  void DrainLeases(const std::vector<LeaseId>& ids, CloseResult* result)
      ABSL_LOCKS_EXCLUDED(mu_);
  void CloseConnectionLocked(ConnectionId client, ReclaimReason reason,
                             Deferred& deferred, CloseResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<LeaseInfo> GrantLeaseLocked(ConnectionRecord& client,
                                             ConnectionId id,
                                             absl::Duration ttl, bool detached,
                                             bool is_default)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives a buffer its memory (it becomes live: Attach, List and Stats see
  // it). A pooled buffer's is its arena's, kept once in arena_memory_.
  void SetMemoryLocked(Handle handle, BufferRecord& record,
                       std::shared_ptr<const MemoryObject> memory)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The buffer's memory; null while it has none.
  std::shared_ptr<const MemoryObject> MemoryLocked(
      const BufferRecord& record) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lets go of the buffer's memory (it has none from now on); returns the
  // reference to destroy unlocked (Deferred::Free), null if others remain.
  std::shared_ptr<const MemoryObject> TakeMemoryLocked(BufferRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `room_back`: false for an allocation's own record failing before
  // anyone saw it: the room it gives back was never there for waiters.
  void EraseBufferLocked(Handle handle, bool room_back = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The books (registry_books.cc): each change as it happens.
  void BookBufferLocked(Handle handle, const BufferRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BookBufferGoneLocked(Handle handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BookLeaseLocked(const LeaseInfo& lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BookLeaseGoneLocked(LeaseId lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BookHoldsLocked(const LeaseRecord& lease, Handle handle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BookArenaLocked(uint64_t arena_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a change went to the books: Locked then calls FlushBooksLocked,
  // which flushes the sink, starts a rewrite if the sink wants one and
  // takes the next step of one under way. Const, as Locked is: a rewrite
  // changes the journal, not the Registry (its progress is mutable).
  void BooksChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    books_changed_ = true;
  }
  void FlushBooksLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Books SnapshotBooksLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A booked lease: live, or ended and still draining; null if neither.
  const LeaseRecord* BookedLeaseLocked(LeaseId id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adopts presented memory for a restored buffer (registry_restore.cc).
  absl::Status AdoptLocked(Handle handle, BufferRecord& record, UniqueFd fd,
                           Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The bytes a buffer has charged to its owner's quota: its charged_bytes,
  // or, while a pooled one has no slot yet, its size in whole pages.
  static uint64_t QuotaBytes(const BufferRecord& record);
  // `quota` with any limit at or above the daemon's own made none (0).
  UidQuota EffectiveQuota(UidQuota quota) const;
  // Whether `spec` alone fits the capacity and its caller's byte quota.
  bool CouldEverFit(ConnectionId client, const AllocateSpec& spec);
  void ServeRoomWaitersOnce();
  // Room may have come back: the waiters must be tried again.
  void MarkRoomDirtyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireRoomWaitersLocked(Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a change for the watchers (registry_watch.cc).
  void PublishLocked(WatchEventType type, const BufferInfo& info,
                     Deferred& deferred,
                     ReclaimReason reason = ReclaimReason::kRelease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  const Clock* const clock_;
  RegistryObserver* const observer_;  // never null (a no-op if none given)

  mutable absl::Mutex mu_;
  // Calls waiting for mu_ now, and how often it was taken (Locked).
  mutable std::atomic<uint32_t> lock_queued_{0};
  mutable std::atomic<uint64_t> lock_taken_{0};
  absl::btree_map<Handle, BufferRecord> buffers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Handle> names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ConnectionId, ConnectionRecord> connections_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uid_t, uint32_t> connections_per_uid_
      ABSL_GUARDED_BY(mu_);
  uint64_t allocated_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  LiveCounts live_ ABSL_GUARDED_BY(mu_);  // kept as buffers come and go
  // Live buffers' bytes and count per owner uid (Tenants), kept as they
  // come and go like live_.
  absl::flat_hash_map<uid_t, TenantUsage> live_by_uid_ ABSL_GUARDED_BY(mu_);
  // Live buffers by who may see them, for List pages of callers but root.
  VisibilityIndex visible_ ABSL_GUARDED_BY(mu_);
  TenantQuotas quotas_ ABSL_GUARDED_BY(mu_);
  uint64_t hold_count_ ABSL_GUARDED_BY(mu_) = 0;
  Handle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  ConnectionId next_connection_ ABSL_GUARDED_BY(mu_) = 1;

  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  LeaseId next_lease_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uid_t, uint32_t> detached_per_uid_ ABSL_GUARDED_BY(mu_);
  // The most recently ended leases (bounded), so that a late KeepAlive hears
  // why its lease is gone.
  absl::flat_hash_map<LeaseId, EndedLease> ended_ ABSL_GUARDED_BY(mu_);
  std::deque<LeaseId> ended_order_ ABSL_GUARDED_BY(mu_);
  // Ended leases whose holds are still being dropped: out of leases_, so
  // that no call finds them, but their holds are real until dropped.
  absl::flat_hash_map<LeaseId, DrainingLease> draining_ ABSL_GUARDED_BY(mu_);
  WaiterTable<absl::StatusOr<Grant>> waiters_ ABSL_GUARDED_BY(mu_);
  RoomWaiters room_waiters_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever room may have come back (a buffer erased, quotas
  // changed); `room_dirty_` says the waiters have not been tried since.
  std::atomic<uint64_t> room_generation_{0};
  std::atomic<bool> room_dirty_{false};
  std::atomic<bool> serving_room_{false};  // one thread serves at a time
  BookSink* books_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t booked_last_arena_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::optional<BooksRewrite> rewrite_ ABSL_GUARDED_BY(mu_);
  mutable bool books_changed_ ABSL_GUARDED_BY(mu_) = false;
  // Restored buffers awaiting memory.
  uint64_t awaiting_memory_ ABSL_GUARDED_BY(mu_) = 0;
  // The memory of the arenas that live pooled buffers are in, by arena id:
  // this daemon's, and the previous daemon's adopted so far.
  absl::flat_hash_map<uint64_t, ArenaMemory> arena_memory_ ABSL_GUARDED_BY(mu_);
  WatchHub watch_hub_ ABSL_GUARDED_BY(mu_);

  // Dedicated buffers (pending ones included) and arenas draw on it.
  Capacity capacity_;
  // Last, so that the allocator (which returns its arenas' bytes to the
  // capacity when destroyed) goes first. Set once by EnablePooling.
  std::unique_ptr<PooledAllocator> pool_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_REGISTRY_H_
