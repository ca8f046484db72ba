// Fuzzes the core Registry with sequences of operations, as a daemon under
// many clients would drive it (connections opening and closing, buffers
// allocated, attached and released by handle and name, leases granted,
// renewed, revoked and expired, time passing, the scavenger running), and
// checks its bookkeeping after every step (registry_invariants.h), and that
// its books (what a restarted daemon would replay, rewritten in steps now
// and then) are what it holds. At the end everything is closed, revoked
// and expired, and nothing may be left: no buffer, byte, hold, lease or
// arena.
//
// Pooling is on with a small capacity and small arenas, so that arenas
// fill, dedicated buffers and arenas compete for the capacity, and
// allocations fail for want of it. Memory is memfd only: POSIX shm would
// leave names in /dev/shm if the fuzzer stopped mid-input.
//
// Input: bytes FuzzedDataProvider turns into at most kMaxOps operations.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "core/clock.h"
#include "core/registry.h"
#include "tests/core/books_recorder.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/registry_invariants.h"

namespace shmbroker::fuzz {
namespace {

// The checks after each operation cost in proportion to what the Registry
// holds, so an input costs about the square of its length. From the same
// seeds, two at a time on two cores: in 3 minutes 64 reached more features
// than 200 (ft 10256 against 9846, with 3 times the executions), and in 4
// minutes more than 32 (10692 against 9562, 32 having 2.6 times 64's).
constexpr int kMaxOps = 64;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kCapacity = 64 * kMiB;

constexpr Identity kIdentities[] = {
    {.pid = 100, .uid = 1000, .gid = 1000},  // two processes of one uid
    {.pid = 101, .uid = 1000, .gid = 1000},
    {.pid = 200, .uid = 2000, .gid = 2000},
    kRoot,
};

// Everything an input has seen, live or not, so that operations also name
// closed connections, reclaimed buffers and ended leases.
struct Seen {
  std::vector<ConnectionId> connections;
  std::map<ConnectionId, Identity> identities;
  std::vector<ConnectionId> open;  // as of the last check
  std::vector<Handle> handles;
  std::vector<LeaseId> leases;
  // How many times each Allocate that waited for room was answered
  // (exactly once, by the end). Shared with the callbacks.
  std::shared_ptr<std::vector<int>> answers =
      std::make_shared<std::vector<int>>();
  std::vector<WaiterId> room_waiters;
  std::map<WaiterId, size_t> answer_of;  // a waiter's index in `answers`
  std::vector<bool> cancelled;           // by index
};

template <typename T>
T PickOr(FuzzedDataProvider& in, const std::vector<T>& seen, T fallback) {
  if (seen.empty() || in.ConsumeBool()) return fallback;
  return seen[in.ConsumeIntegralInRange<size_t>(0, seen.size() - 1)];
}

uint64_t SomeSize(FuzzedDataProvider& in) {
  // Around the size classes, the pooled maximum (arena / 4), an arena and
  // the capacity.
  static constexpr uint64_t kSizes[] = {
      0,        1,        64,           100,
      4096,     4097,     32 * 1024,    32 * 1024 + 1,
      65536,    kMiB,     kMiB + 1,     3 * kMiB,
      4 * kMiB, 8 * kMiB, kCapacity + 1};
  return in.ConsumeBool() ? in.PickValueInArray(kSizes)
                          : in.ConsumeIntegralInRange<uint64_t>(1, 9 * kMiB);
}

std::vector<ShareRule> SomeRules(FuzzedDataProvider& in) {
  using Scope = ShareRule::Scope;
  // Mostly owner-only (poolable), rarely invalid.
  switch (in.ConsumeIntegralInRange(0, 15)) {
    case 1:
      return {{.scope = Scope::kAll, .mode = AccessMode::kReadOnly}};
    case 2:
      return {{.scope = Scope::kAll, .mode = AccessMode::kReadWrite}};
    case 3:
      return {
          {.scope = Scope::kUid, .id = 2000, .mode = AccessMode::kReadWrite}};
    case 4:
      return {
          {.scope = Scope::kGid, .id = 1000, .mode = AccessMode::kReadOnly}};
    case 15:  // too many: INVALID_ARGUMENT
      return std::vector<ShareRule>(kMaxShareRules + 1);
    default:
      return {};
  }
}

BufferRef SomeRef(FuzzedDataProvider& in, const Seen& seen) {
  static const char* const kNames[] = {"a", "b", "c", ".bad"};
  if (in.ConsumeBool()) return BufferRef::ByName(in.PickValueInArray(kNames));
  return BufferRef::ByHandle(
      PickOr<Handle>(in, seen.handles, in.ConsumeIntegral<uint8_t>()));
}

// Mostly an open connection, for operations that get past the first
// check; else any id seen, or one never issued.
ConnectionId SomeClient(FuzzedDataProvider& in, const Seen& seen) {
  if (in.ConsumeIntegralInRange(0, 7) != 0 && !seen.open.empty()) {
    return seen
        .open[in.ConsumeIntegralInRange<size_t>(0, seen.open.size() - 1)];
  }
  return PickOr<ConnectionId>(in, seen.connections,
                              in.ConsumeIntegralInRange<ConnectionId>(0, 3));
}

AccessRequest SomeRequest(FuzzedDataProvider& in) {
  return in.PickValueInArray({AccessRequest::kBestAllowed,
                              AccessRequest::kReadOnly,
                              AccessRequest::kReadWrite});
}

void Allocate(FuzzedDataProvider& in, Registry& registry, const Clock& clock,
              Seen& seen, ConnectionId client) {
  static const char* const kNames[] = {"", "", "", "a", "b", "c", ".bad"};
  AllocateSpec spec;
  spec.size = SomeSize(in);
  spec.name = in.PickValueInArray(kNames);
  spec.share = SomeRules(in);
  spec.lease = PickOr<LeaseId>(in, seen.leases, 0);
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 1:
      spec.kind = BufferKind::kDedicated;
      break;
    case 2:
      spec.kind = BufferKind::kPooled;
      break;
  }
  spec.zeroed = in.ConsumeBool();
  if (in.ConsumeIntegralInRange(0, 3) == 0) {
    // Back-pressure: may wait for room, to be answered exactly once.
    const size_t index = seen.answers->size();
    seen.answers->push_back(0);
    seen.cancelled.push_back(false);
    static constexpr int64_t kWaitMs[] = {0, 1000, 30000};
    absl::StatusOr<std::variant<Grant, WaiterId>> now = registry.AllocateOrWait(
        client, spec,
        clock.Now() + absl::Milliseconds(in.PickValueInArray(kWaitMs)),
        [answers = seen.answers, index](absl::StatusOr<Grant> grant) {
          ++(*answers)[index];
          FUZZ_CHECK(!grant.ok() || grant->buffer.holders == 1);
        });
    if (now.ok() && std::holds_alternative<WaiterId>(*now)) {
      seen.room_waiters.push_back(std::get<WaiterId>(*now));
      seen.answer_of[std::get<WaiterId>(*now)] = index;
      registry.ServeRoomWaiters();
    } else {
      ++(*seen.answers)[index];
      if (now.ok()) seen.handles.push_back(std::get<Grant>(*now).buffer.handle);
    }
    return;
  }
  absl::StatusOr<Grant> grant = registry.Allocate(client, spec);
  if (!grant.ok()) return;
  const BufferInfo& buffer = grant->buffer;
  FUZZ_CHECK(buffer.size == spec.size && buffer.holders == 1);
  FUZZ_CHECK(grant->mode == AccessMode::kReadWrite);
  FUZZ_CHECK(!spec.kind || buffer.kind == *spec.kind);
  FUZZ_CHECK(grant->memory != nullptr &&
             grant->memory->size() >= buffer.offset + buffer.size);
  seen.handles.push_back(buffer.handle);
}

// The holders of the buffer `ref` names, 0 when there is none.
uint32_t HoldersOf(const Registry& registry, const BufferRef& ref) {
  absl::StatusOr<BufferInfo> info = registry.Describe(kRoot, ref);
  return info.ok() ? info->holders : 0;
}

void Attach(FuzzedDataProvider& in, Registry& registry, const Seen& seen,
            ConnectionId client) {
  const BufferRef ref = SomeRef(in, seen);
  const AccessRequest request = SomeRequest(in);
  const LeaseId lease = PickOr<LeaseId>(in, seen.leases, 0);
  const uint32_t before = HoldersOf(registry, ref);
  absl::StatusOr<Grant> grant = registry.Attach(client, ref, request, lease);
  if (!grant.ok()) return;
  FUZZ_CHECK(grant->buffer.holders == before + 1);
  FUZZ_CHECK(HoldersOf(registry, ref) == before + 1);
  // The mode granted is one the buffer's rules allow for this caller.
  const BufferInfo& buffer = grant->buffer;
  absl::StatusOr<AccessMode> allowed = DecideAccess(
      seen.identities.at(client), buffer.owner, buffer.share, request);
  FUZZ_CHECK(allowed.ok() && *allowed == grant->mode);
  FUZZ_CHECK(grant->mode == AccessMode::kReadWrite ||
             grant->read_only_fd.valid());
}

void Release(FuzzedDataProvider& in, Registry& registry, const Seen& seen,
             ConnectionId client) {
  const BufferRef ref = SomeRef(in, seen);
  const LeaseId lease = PickOr<LeaseId>(in, seen.leases, 0);
  absl::StatusOr<BufferInfo> info = registry.Describe(kRoot, ref);
  absl::StatusOr<uint32_t> left = registry.Release(client, ref, lease);
  if (!left.ok()) return;
  // One hold fewer, and a buffer is gone with its last hold.
  FUZZ_CHECK(info.ok() && *left == info->holders - 1);
  FUZZ_CHECK(HoldersOf(registry, BufferRef::ByHandle(info->handle)) == *left);
}

void Step(FuzzedDataProvider& in, Registry& registry, ManualClock& clock,
          Seen& seen) {
  const size_t who = in.ConsumeIntegralInRange<size_t>(0, 3);
  const Identity& identity = kIdentities[who];
  const ConnectionId client = SomeClient(in, seen);
  switch (in.ConsumeIntegralInRange(0, 15)) {
    case 0:
    case 1:
      if (absl::StatusOr<ConnectionId> opened =
              registry.OpenConnection(identity);
          opened.ok()) {
        seen.connections.push_back(*opened);
        seen.identities[*opened] = identity;
        absl::StatusOr<LeaseInfo> lease = registry.DefaultLease(*opened);
        FUZZ_CHECK(lease.ok() && lease->connection_default);
        seen.leases.push_back(lease->id);
      }
      break;
    case 2:
      registry.CloseConnection(client);
      FUZZ_CHECK(!registry.DefaultLease(client).ok());
      break;
    case 3:
    case 4:
    case 5:
      Allocate(in, registry, clock, seen, client);
      break;
    case 6:
    case 7:
      Attach(in, registry, seen, client);
      break;
    case 8:
    case 9:
      Release(in, registry, seen, client);
      break;
    case 10: {
      static constexpr int64_t kTtlSeconds[] = {0, 1, 3, 30, 7200, -1};
      absl::StatusOr<LeaseInfo> lease = registry.GrantLease(
          client, absl::Seconds(in.PickValueInArray(kTtlSeconds)),
          in.ConsumeBool());
      if (lease.ok()) seen.leases.push_back(lease->id);
      break;
    }
    case 11:
      registry.RevokeLease(identity, PickOr<LeaseId>(in, seen.leases, 0))
          .IgnoreError();
      break;
    case 12:
      registry.KeepAlive(client, PickOr<LeaseId>(in, seen.leases, 0))
          .IgnoreError();
      break;
    case 13: {
      static constexpr int64_t kStepsMs[] = {500, 2000, 6000, 11000, 361000};
      clock.Advance(absl::Milliseconds(in.PickValueInArray(kStepsMs)));
      break;
    }
    case 14:
      registry.ExpireLeases(in.ConsumeIntegralInRange<size_t>(1, 4));
      if (in.ConsumeBool()) registry.ExpireWaiters();
      if (in.ConsumeBool() && !seen.room_waiters.empty()) {
        const WaiterId waiter = PickOr<WaiterId>(in, seen.room_waiters, 0);
        if (registry.CancelAllocateWait(waiter)) {
          const size_t index = seen.answer_of.at(waiter);
          FUZZ_CHECK(!seen.cancelled[index] && (*seen.answers)[index] == 0);
          seen.cancelled[index] = true;
        }
      }
      break;
    case 15:
      registry.Scavenge();
      CheckVisibility(registry, identity);
      break;
  }
}

// Ends everything and checks that nothing is left.
void Drain(Registry& registry, ManualClock& clock, const Seen& seen) {
  for (ConnectionId client : seen.connections) registry.CloseConnection(client);
  bool more = false;
  for (const LeaseInfo& lease :
       registry.ListLeases(kRoot, 0, kEverything, &more)) {
    FUZZ_CHECK(lease.detached);  // the others ended with their connection
    FUZZ_CHECK(registry.RevokeLease(kRoot, lease.id).ok());
  }
  clock.Advance(absl::Hours(2));
  while (registry.ExpireLeases(kEverything).more_due) {
  }
  registry.ExpireWaiters();
  // Every Allocate that waited was answered once, unless it was cancelled
  // (then never).
  for (size_t i = 0; i < seen.answers->size(); ++i) {
    FUZZ_CHECK((*seen.answers)[i] == (seen.cancelled[i] ? 0 : 1));
  }
  FUZZ_CHECK(registry.Stats().waiters == 0 && !registry.NextWaiterDeadline());
  CheckRegistryInvariants(registry);
  const RegistryStats stats = registry.Stats();
  FUZZ_CHECK(stats.buffers == 0 && stats.allocated_bytes == 0);
  FUZZ_CHECK(stats.holds == 0 && stats.leases == 0 && stats.clients == 0);
  // Idle arenas go back to the capacity once the scavenger has run.
  clock.Advance(absl::Hours(1));
  while (registry.Scavenge().more) {
  }
  FUZZ_CHECK(registry.Stats().committed_bytes == 0);
}

}  // namespace
}  // namespace shmbroker::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmbroker;
  using namespace shmbroker::fuzz;
  FuzzedDataProvider in(data, size);
  // Time moves only when an operation says so.
  ManualClock clock(absl::FromUnixSeconds(1700000000));
  RegistryOptions options;
  options.capacity_bytes = kCapacity;
  // Small, so that ended leases drop their holds over several steps, and a
  // rewrite of the books takes several calls.
  options.leases.reclaim_batch = 2;
  // No other thread here to give the CPU to, and a sleep per step would
  // slow every input down.
  options.leases.reclaim_pause = absl::ZeroDuration();
  options.books_rewrite_step = 3;
  Registry registry(options, &clock);
  PooledAllocatorOptions pooling;
  pooling.arena_size = 4 * kMiB;
  pooling.scavenge_delay = absl::Minutes(5);
  FUZZ_CHECK(registry.EnablePooling(pooling).ok());
  // The books, as a restarted daemon would replay them: always what the
  // Registry holds, also across rewrites made in steps between the calls.
  testing::BooksRecorder books;
  registry.SetBookSink(&books);

  Seen seen;
  for (int op = 0; op < kMaxOps && in.remaining_bytes() > 0; ++op) {
    if (op % 16 == 0) books.want_rewrite = true;
    Step(in, registry, clock, seen);
    seen.open = CheckRegistryInvariants(registry);
    // Every fourth operation: a snapshot per operation made the target 5
    // times slower, and a wrong entity stays wrong until it is checked.
    if (op % 4 == 3) {
      FUZZ_CHECK(testing::SameEntities(books.books, registry.SnapshotBooks()));
    }
  }
  Drain(registry, clock, seen);
  FUZZ_CHECK(testing::SameEntities(books.books, registry.SnapshotBooks()));
  return 0;
}
