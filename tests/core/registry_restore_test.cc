// The books (core/books.h) and a restarted Registry taking them back: what
// the registry books as it changes, Restore, Present, Resume and the end of
// the grace, with real memory objects (memfd, POSIX shm, pooled arenas).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/core/books_recorder.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class RegistryRestoreTest : public RegistryTestBase {
 protected:
  RegistryRestoreTest() {
    RegistryOptions options = DefaultOptions();
    options.capacity_bytes = 1 << 30;
    prefix_ = options.shm_prefix;
    Reset(options);
    EXPECT_THAT(registry_->EnablePooling(PoolOptions()), IsOk());
    registry_->SetBookSink(&recorder_);
  }

  static PooledAllocatorOptions PoolOptions() {
    PooledAllocatorOptions pool;
    pool.arena_size = 4 << 20;
    return pool;
  }

  // A second daemon's registry on the same prefix, restored from what the
  // first one booked.
  RestoreResult Restart(absl::Duration grace = absl::Seconds(15)) {
    Books books = recorder_.books;
    RegistryOptions options = DefaultOptions();
    options.capacity_bytes = 1 << 30;
    options.shm_prefix = prefix_;
    // The old one goes as a SIGTERMed daemon's does: its books and names
    // stay.
    registry_->StopBookingForRestart();
    old_ = std::move(registry_);
    Reset(options);
    EXPECT_THAT(registry_->EnablePooling(PoolOptions()), IsOk());
    RestoreResult result = registry_->Restore(books, grace);
    registry_->SetBookSink(&recorder_);
    recorder_.books = registry_->SnapshotBooks();
    return result;
  }

  static void Fill(const Grant& grant, char c) {
    void* p = ::mmap(nullptr, grant.buffer.offset + grant.buffer.size,
                     PROT_READ | PROT_WRITE, MAP_SHARED, grant.memory->fd(), 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memset(static_cast<char*>(p) + grant.buffer.offset, c,
                grant.buffer.size);
    ::munmap(p, grant.buffer.offset + grant.buffer.size);
  }
  static char FirstByte(const Grant& grant) {
    const int fd = grant.fd_to_send();
    void* p = ::mmap(nullptr, grant.buffer.offset + grant.buffer.size,
                     PROT_READ, MAP_SHARED, fd, 0);
    EXPECT_NE(p, MAP_FAILED);
    const char c = static_cast<char*>(p)[grant.buffer.offset];
    ::munmap(p, grant.buffer.offset + grant.buffer.size);
    return c;
  }
  static AllocateSpec Dedicated(uint64_t size, std::string name) {
    AllocateSpec spec = Spec(size, std::move(name));
    spec.kind = BufferKind::kDedicated;
    return spec;
  }
  static UniqueFd Dup(const Grant& grant) {
    return UniqueFd(::fcntl(grant.memory->fd(), F_DUPFD_CLOEXEC, 0));
  }

  std::string prefix_;
  BooksRecorder recorder_;
  std::unique_ptr<Registry> old_;
};

TEST_F(RegistryRestoreTest, TheBooksFollowEveryChangeAndMatchASnapshot) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> pooled = registry_->Allocate(alice, Spec(100, "p"));
  ASSERT_THAT(pooled, IsOk());
  EXPECT_EQ(pooled->buffer.kind, BufferKind::kPooled);
  const Handle dedicated =
      Alloc(alice, Pages(2), "d", {kAllReadOnly}, Backing::kMemfd);
  const Handle posix = Alloc(alice, Pages(1), "x", {}, Backing::kPosix);
  absl::StatusOr<LeaseInfo> detached =
      registry_->GrantLease(alice, absl::Seconds(30), /*detached=*/true);
  ASSERT_THAT(detached, IsOk());
  ASSERT_THAT(registry_->Attach(alice, BufferRef::ByHandle(dedicated),
                                AccessRequest::kBestAllowed, detached->id),
              IsOk());
  ASSERT_THAT(registry_->Seal(alice, BufferRef::ByHandle(dedicated)), IsOk());
  ASSERT_THAT(registry_->Release(alice, posix), IsOk());

  const Books snapshot = registry_->SnapshotBooks();
  const Books& booked = recorder_.books;
  EXPECT_EQ(booked.buffers.size(), 2u);
  EXPECT_FALSE(booked.buffers.contains(posix));
  EXPECT_TRUE(booked.buffers.at(dedicated).info.sealed);
  EXPECT_EQ(booked.holds.size(), snapshot.holds.size());
  EXPECT_EQ(booked.holds.at({detached->id, dedicated}), 1u);
  EXPECT_EQ(booked.leases.size(), snapshot.leases.size());
  EXPECT_TRUE(booked.leases.at(detached->id).detached);
  EXPECT_EQ(booked.buffers.at(pooled->buffer.handle).memory,
            pooled->memory->identity());
  EXPECT_EQ(booked.last_arena, pooled->buffer.arena_id);
  EXPECT_EQ(booked.revision, snapshot.revision);

  // A rewrite replaces the journal with the same books.
  recorder_.want_rewrite = true;
  ASSERT_THAT(registry_->Release(alice, BufferRef::ByHandle(dedicated),
                                 registry_->DefaultLease(alice)->id),
              IsOk());
  EXPECT_EQ(recorder_.rewrites, 1);
  EXPECT_EQ(recorder_.books.holds, registry_->SnapshotBooks().holds);
}

TEST_F(RegistryRestoreTest, ARewriteGoesInStepsWhileTheBooksChange) {
  // 1,200 buffers, 500 of them held under a second lease too: more than
  // one step's worth of buffers, and of one lease's holds.
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> second =
      registry_->GrantLease(alice, absl::Seconds(30), /*detached=*/false);
  ASSERT_THAT(second, IsOk());
  std::vector<Handle> handles;
  for (int i = 0; i < 1200; ++i) {
    absl::StatusOr<Grant> g = registry_->Allocate(alice, Spec(64));
    ASSERT_THAT(g, IsOk());
    handles.push_back(g->buffer.handle);
    if (i < 500) {
      ASSERT_THAT(registry_->Attach(alice, BufferRef::ByHandle(handles.back()),
                                    AccessRequest::kBestAllowed, second->id),
                  IsOk());
    }
  }

  // Each call below is one hold of the lock that books a change, so one
  // step; the books change between the steps: buffers come and go, and
  // the second lease ends with its 500 holds (dropped in steps of its own).
  recorder_.want_rewrite = true;
  size_t next_release = 0;
  int calls = 0;
  for (; recorder_.rewrites == 0 && calls < 200; ++calls) {
    if (calls == 4) {
      ASSERT_THAT(registry_->RevokeLease(kAlice, second->id), IsOk());
      continue;
    }
    absl::StatusOr<Grant> g = registry_->Allocate(alice, Spec(64));
    ASSERT_THAT(g, IsOk());
    handles.push_back(g->buffer.handle);
    ASSERT_THAT(registry_->Release(alice, handles[next_release++]), IsOk());
  }
  ASSERT_EQ(recorder_.rewrites, 1) << "after " << calls << " calls";
  // 1,200 buffers and 1,700 holds, 256 entities a step: a dozen steps.
  EXPECT_GE(recorder_.steps, 8);
  EXPECT_LE(recorder_.largest_step, RegistryOptions().books_rewrite_step);

  // The rewritten books are the live ones (and have had every change since).
  const Books live = registry_->SnapshotBooks();
  const Books& booked = recorder_.books;
  std::vector<Handle> live_buffers, booked_buffers;
  for (const auto& [handle, buffer] : live.buffers) {
    live_buffers.push_back(handle);
  }
  for (const auto& [handle, buffer] : booked.buffers) {
    booked_buffers.push_back(handle);
  }
  EXPECT_EQ(booked_buffers, live_buffers);
  EXPECT_EQ(booked.holds, live.holds);
  std::vector<LeaseId> live_leases, booked_leases;
  for (const auto& [id, lease] : live.leases) live_leases.push_back(id);
  for (const auto& [id, lease] : booked.leases) booked_leases.push_back(id);
  EXPECT_EQ(booked_leases, live_leases);
  EXPECT_EQ(booked.last_handle, live.last_handle);
  EXPECT_EQ(booked.last_lease, live.last_lease);
  EXPECT_EQ(booked.last_arena, live.last_arena);
}

TEST_F(RegistryRestoreTest, PresentedMemoryComesBackWithItsBytesAndHolds) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> dedicated =
      registry_->Allocate(alice, Dedicated(Pages(2), "d"));
  absl::StatusOr<Grant> pooled = registry_->Allocate(alice, Spec(100, "p"));
  absl::StatusOr<Grant> pooled2 = registry_->Allocate(alice, Spec(200));
  ASSERT_THAT(dedicated, IsOk());
  ASSERT_THAT(pooled, IsOk());
  ASSERT_THAT(pooled2, IsOk());
  ASSERT_EQ(dedicated->buffer.kind, BufferKind::kDedicated);
  ASSERT_EQ(pooled->buffer.kind, BufferKind::kPooled);
  ASSERT_EQ(pooled->buffer.arena_id, pooled2->buffer.arena_id);
  Fill(*dedicated, 'd');
  Fill(*pooled, 'p');
  const LeaseId lease = registry_->DefaultLease(alice)->id;
  // What the client keeps across the restart: its fds.
  UniqueFd dedicated_fd = Dup(*dedicated);
  UniqueFd arena_fd = Dup(*pooled);
  UniqueFd arena_fd2 = Dup(*pooled2);
  const uint64_t old_arena = pooled->buffer.arena_id;
  dedicated->memory.reset();
  pooled->memory.reset();
  pooled2->memory.reset();

  RestoreResult restored = Restart();
  EXPECT_EQ(restored.buffers, 3u);
  EXPECT_EQ(restored.leases, 1u);
  EXPECT_EQ(restored.holds, 3u);
  EXPECT_EQ(registry_->AwaitingMemory(), 3u);
  // Invisible until presented.
  const ConnectionId again = Open(kAlice2);
  EXPECT_THAT(registry_->Attach(again, BufferRef::ByName("d"),
                                AccessRequest::kBestAllowed),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));

  EXPECT_THAT(registry_->Present(again, dedicated->buffer.handle, lease,
                                 std::move(dedicated_fd)),
              IsOkAndHolds(Pages(2)));
  EXPECT_THAT(registry_->Present(again, pooled->buffer.handle, lease,
                                 std::move(arena_fd)),
              IsOk());
  EXPECT_THAT(registry_->Present(again, pooled2->buffer.handle, lease,
                                 std::move(arena_fd2)),
              IsOk());
  EXPECT_EQ(registry_->AwaitingMemory(), 0u);
  ResumeResult resumed = registry_->Resume(
      again, {lease}, {dedicated->buffer.handle, pooled->buffer.handle});
  ASSERT_EQ(resumed.leases.size(), 1u);
  EXPECT_THAT(resumed.leases[0].second, IsOk());
  EXPECT_THAT(resumed.buffers[0].second, IsOk());
  EXPECT_THAT(resumed.buffers[1].second, IsOk());
  // The lease is the new connection's now: renewable, and its holds work.
  EXPECT_THAT(registry_->KeepAlive(again, lease), IsOk());

  absl::StatusOr<Grant> d = registry_->Attach(again, BufferRef::ByName("d"),
                                              AccessRequest::kBestAllowed);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(FirstByte(*d), 'd');
  absl::StatusOr<Grant> p = registry_->Attach(again, BufferRef::ByName("p"),
                                              AccessRequest::kBestAllowed);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(FirstByte(*p), 'p');
  // A new pooled buffer gets a new arena, with an id the old one never had.
  absl::StatusOr<Grant> fresh = registry_->Allocate(again, Spec(100));
  ASSERT_THAT(fresh, IsOk());
  EXPECT_GT(fresh->buffer.arena_id, old_arena);

  // Releasing everything gives every byte back.
  d->memory.reset();
  p->memory.reset();
  fresh->memory.reset();
  registry_->CloseConnection(again);
  EXPECT_EQ(registry_->Stats().buffers, 0u);
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
  EXPECT_EQ(registry_->Stats().holds, 0u);
  EXPECT_TRUE(recorder_.books.buffers.empty());
  EXPECT_TRUE(recorder_.books.holds.empty());
}

TEST_F(RegistryRestoreTest, PresentingTheWrongMemoryOrAnotherUidsIsRefused) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> a =
      registry_->Allocate(alice, Dedicated(Pages(1), "a"));
  absl::StatusOr<Grant> b =
      registry_->Allocate(alice, Dedicated(Pages(1), "b"));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  const LeaseId lease = registry_->DefaultLease(alice)->id;
  UniqueFd a_fd = Dup(*a);
  UniqueFd b_fd = Dup(*b);
  UniqueFd b_fd2 = Dup(*b);
  Restart();

  const ConnectionId bob = Open(kBob);
  EXPECT_THAT(registry_->Present(bob, b->buffer.handle, lease, std::move(b_fd)),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  const ConnectionId alice2 = Open(kAlice2);
  // b's memory offered as a's.
  EXPECT_THAT(
      registry_->Present(alice2, a->buffer.handle, lease, std::move(b_fd2)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("not the memory object the books recorded")));
  EXPECT_THAT(registry_->Present(alice2, 999, lease, std::move(a_fd)),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ResumeResult bob_resumed =
      registry_->Resume(bob, {lease}, {b->buffer.handle});
  EXPECT_THAT(bob_resumed.leases[0].second,
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // Resume reports a refused presentation with the refusal's own code.
  EXPECT_THAT(bob_resumed.buffers[0].second,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("permission denied")));
  ResumeResult resumed =
      registry_->Resume(alice2, {lease, 12345}, {a->buffer.handle});
  EXPECT_THAT(resumed.leases[0].second, IsOk());
  EXPECT_THAT(
      resumed.leases[1].second,
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("not in the books")));
  EXPECT_THAT(resumed.buffers[0].second,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not the memory object")));
  EXPECT_EQ(registry_->AwaitingMemory(), 2u);
}

TEST_F(RegistryRestoreTest, WhatNobodyPresentsGoesWhenTheGraceEnds) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> detached =
      registry_->GrantLease(alice, absl::Seconds(30), /*detached=*/true);
  ASSERT_THAT(detached, IsOk());
  AllocateSpec spec = Dedicated(Pages(3), "orphan");
  spec.lease = detached->id;
  ASSERT_THAT(registry_->Allocate(alice, spec), IsOk());
  RestoreResult restored = Restart(absl::Seconds(15));
  EXPECT_EQ(restored.buffers, 1u);
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(3));
  // The detached lease lives on, its deadline pushed back by the grace.
  absl::StatusOr<LeaseDetail> lease =
      registry_->LeaseTimeToLive(kAlice, 0, detached->id);
  ASSERT_THAT(lease, IsOk());
  EXPECT_GE(lease->info.deadline, clock_.Now() + absl::Seconds(45));

  CloseResult dropped = registry_->EndRestoreGrace();
  EXPECT_EQ(dropped.buffers_reclaimed, 1u);
  EXPECT_EQ(dropped.bytes_reclaimed, Pages(3));
  EXPECT_EQ(registry_->Stats().buffers, 0u);
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
  EXPECT_EQ(registry_->AwaitingMemory(), 0u);
  EXPECT_FALSE(recorder_.books.buffers.contains(1));
}

// The record keeps an arena id in 32 bits and an arena's memory once for
// all its buffers (core/registry_records.h): books that break either are
// refused, not believed.
TEST_F(RegistryRestoreTest, BooksAnArenaCannotHaveAreRefused) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> p1 = registry_->Allocate(alice, Spec(100, "p1"));
  absl::StatusOr<Grant> p2 = registry_->Allocate(alice, Spec(200, "p2"));
  // As large as an arena: p2 fits in it wherever its slot is.
  absl::StatusOr<Grant> d =
      registry_->Allocate(alice, Dedicated(PoolOptions().arena_size, "d"));
  ASSERT_THAT(p1, IsOk());
  ASSERT_THAT(p2, IsOk());
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(p1->buffer.kind, BufferKind::kPooled);
  ASSERT_EQ(p1->buffer.arena_id, p2->buffer.arena_id);
  const LeaseId lease = registry_->DefaultLease(alice)->id;
  UniqueFd arena_fd = Dup(*p1);
  UniqueFd d_fd = Dup(*d);
  // p2 booked as in another object (d's) under the same arena id; a third
  // pooled buffer under an arena id no daemon hands out; and a last arena
  // id past every one.
  recorder_.books.buffers.at(p2->buffer.handle).memory =
      recorder_.books.buffers.at(d->buffer.handle).memory;
  BookedBuffer far = recorder_.books.buffers.at(p1->buffer.handle);
  far.info.handle = 900;
  far.info.name = "far";
  far.info.arena_id = uint64_t{1} << 32;
  recorder_.books.buffers.emplace(900, far);
  recorder_.books.holds[{lease, 900}] = 1;
  recorder_.books.last_handle = 900;
  recorder_.books.last_arena = uint64_t{1} << 40;

  RestoreResult restored = Restart();
  EXPECT_EQ(restored.buffers, 3u);
  EXPECT_EQ(restored.skipped, 2u);
  EXPECT_THAT(restored.problems,
              ::testing::ElementsAre(
                  HasSubstr("buffer 900: a bad arena id 4294967296"),
                  HasSubstr("last arena id 1099511627776 is out of range")));

  const ConnectionId again = Open(kAlice2);
  EXPECT_THAT(
      registry_->Present(again, p1->buffer.handle, lease, std::move(arena_fd)),
      IsOk());
  EXPECT_THAT(
      registry_->Present(again, p2->buffer.handle, lease, std::move(d_fd)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("another object than its other buffers'")));
  EXPECT_EQ(registry_->AwaitingMemory(), 2u);  // p2 and d

  // No arena ids are left: a pooled buffer is refused saying so, and one
  // whose kind the daemon chooses falls back to a dedicated segment.
  AllocateSpec pooled = Spec(100);
  pooled.kind = BufferKind::kPooled;
  EXPECT_THAT(registry_->Allocate(again, pooled),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("arena ids are used up")));
  absl::StatusOr<Grant> fallback = registry_->Allocate(again, Spec(100));
  ASSERT_THAT(fallback, IsOk());
  EXPECT_EQ(fallback->buffer.kind, BufferKind::kDedicated);
}

TEST_F(RegistryRestoreTest, PosixBuffersComeBackByName) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> x =
      registry_->Allocate(alice, Spec(Pages(1), "x", {}, Backing::kPosix));
  ASSERT_THAT(x, IsOk());
  Fill(*x, 'x');
  const std::string name = x->buffer.shm_name;
  x->memory.reset();
  RestoreResult restored = Restart();
  EXPECT_EQ(restored.posix_reopened, 1u);
  EXPECT_EQ(registry_->AwaitingMemory(), 0u);
  const ConnectionId alice2 = Open(kAlice2);
  absl::StatusOr<Grant> again = registry_->Attach(
      alice2, BufferRef::ByName("x"), AccessRequest::kBestAllowed);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(FirstByte(*again), 'x');
  again->memory.reset();
  // Its holds: the old default lease (until it expires or is resumed) and
  // the new one. Both going removes the name.
  ResumeResult resumed = registry_->Resume(
      alice2, {registry_->SnapshotBooks().leases.begin()->first}, {});
  ASSERT_THAT(resumed.leases[0].second, IsOk());
  registry_->CloseConnection(alice2);
  old_.reset();
  EXPECT_EQ(registry_->Stats().buffers, 0u);
  const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
  EXPECT_EQ(fd, -1) << name << " outlived its last hold";
  if (fd >= 0) ::close(fd);
}

}  // namespace
}  // namespace shmbroker::testing
