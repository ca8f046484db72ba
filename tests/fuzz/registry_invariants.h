// The bookkeeping invariants of a quiescent core Registry, as the fuzz
// target registry_ops checks them after every operation. They are stated
// from the outside (List, ListLeases, LeaseTimeToLive, Stats and the pool's
// Stats), so that the registry's counters are checked against what it
// reports item by item, not against themselves.
#ifndef SHMBROKER_TESTS_FUZZ_REGISTRY_INVARIANTS_H_
#define SHMBROKER_TESTS_FUZZ_REGISTRY_INVARIANTS_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "core/access.h"
#include "core/registry.h"
#include "tests/fuzz/fuzz_check.h"

namespace shmbroker::fuzz {

inline constexpr Identity kRoot{.pid = 1, .uid = 0, .gid = 0};
inline constexpr size_t kEverything = std::numeric_limits<size_t>::max();

// Holds per buffer: (handle, count), ascending by handle. Sorted vectors,
// not maps: these run after every operation, and under ASan a node per
// entry costs more than the rest of the check.
using HoldCounts = std::vector<std::pair<Handle, uint64_t>>;

// Holds per buffer, as the live leases report them.
inline HoldCounts HoldsUnderLeases(const Registry& registry, uint64_t* leases,
                                   uint64_t* holds,
                                   std::vector<ConnectionId>* open) {
  bool more = true;
  std::vector<LeaseInfo> listed =
      registry.ListLeases(kRoot, 0, kEverything, &more);
  FUZZ_CHECK(!more);
  HoldCounts held;
  *leases = listed.size();
  open->reserve(listed.size());
  *holds = 0;
  for (const LeaseInfo& lease : listed) {
    // An open connection is one whose default lease lives.
    if (lease.connection_default) open->push_back(lease.client);
    absl::StatusOr<LeaseDetail> detail =
        registry.LeaseTimeToLive(kRoot, 0, lease.id);
    FUZZ_CHECK(detail.ok());
    uint64_t under_lease = 0;
    for (const auto& [handle, count] : detail->holds) {
      FUZZ_CHECK(count > 0);
      held.emplace_back(handle, count);
      under_lease += count;
    }
    FUZZ_CHECK(under_lease == lease.holds);
    *holds += lease.holds;
  }
  // One entry per buffer: the sum over the leases that hold it.
  std::sort(held.begin(), held.end());
  size_t out = 0;
  for (size_t i = 0; i < held.size(); ++i) {
    if (out > 0 && held[out - 1].first == held[i].first) {
      held[out - 1].second += held[i].second;
    } else {
      held[out++] = held[i];
    }
  }
  held.resize(out);
  return held;
}

// Returns the open connections, which the checks list anyway.
inline std::vector<ConnectionId> CheckRegistryInvariants(
    const Registry& registry) {
  const RegistryStats stats = registry.Stats();
  bool more = true;
  const std::vector<BufferInfo> buffers =
      registry.List(kRoot, 0, kEverything, &more);
  FUZZ_CHECK(!more);
  FUZZ_CHECK(stats.buffers == buffers.size());

  HoldCounts holders;
  holders.reserve(buffers.size());
  uint64_t charged = 0, pooled_charged = 0, dedicated_charged = 0;
  uint64_t pooled = 0, posix = 0;
  // Bytes and buffers per owner.
  absl::btree_map<uid_t, std::pair<uint64_t, uint64_t>> by_owner;
  for (const BufferInfo& buffer : buffers) {
    by_owner[buffer.owner.uid].first += buffer.charged_bytes;
    ++by_owner[buffer.owner.uid].second;
    if (buffer.backing == Backing::kPosix) ++posix;
    FUZZ_CHECK(buffer.holders > 0);  // a buffer without holds is reclaimed
    FUZZ_CHECK(buffer.charged_bytes >= buffer.size);
    // List goes by handle, so `holders` is sorted as HoldsUnderLeases' is.
    FUZZ_CHECK(holders.empty() || holders.back().first < buffer.handle);
    holders.emplace_back(buffer.handle, buffer.holders);
    charged += buffer.charged_bytes;
    if (buffer.kind == BufferKind::kPooled) {
      ++pooled;
      pooled_charged += buffer.charged_bytes;
    } else {
      dedicated_charged += buffer.charged_bytes;
    }
  }
  FUZZ_CHECK(stats.allocated_bytes == charged);
  // Tenants(), kept as buffers come and go, is what the table says.
  const std::vector<TenantUsage> tenants = registry.Tenants();
  FUZZ_CHECK(tenants.size() == by_owner.size());
  for (const TenantUsage& tenant : tenants) {
    auto owned = by_owner.find(tenant.uid);
    FUZZ_CHECK(owned != by_owner.end() &&
               owned->second ==
                   std::make_pair(tenant.allocated_bytes, tenant.buffers));
  }
  // And Stats() gives the same, in the same order, when asked for them.
  std::vector<TenantUsage> with_stats;
  registry.Stats(&with_stats);
  FUZZ_CHECK(with_stats.size() == tenants.size());
  for (size_t i = 0; i < tenants.size(); ++i) {
    FUZZ_CHECK(with_stats[i].uid == tenants[i].uid &&
               with_stats[i].allocated_bytes == tenants[i].allocated_bytes &&
               with_stats[i].buffers == tenants[i].buffers);
  }
  FUZZ_CHECK(stats.pooled_buffers == pooled);
  FUZZ_CHECK(stats.posix_buffers == posix &&
             stats.memfd_buffers == buffers.size() - posix);
  FUZZ_CHECK(stats.committed_bytes <= stats.capacity_bytes);
  if (const PooledAllocator* pool = registry.pool()) {
    const PooledAllocatorStats pool_stats = pool->Stats();
    FUZZ_CHECK(pool_stats.live_blocks == pooled);
    FUZZ_CHECK(pool_stats.in_use_bytes == pooled_charged);
    // The capacity holds dedicated buffers and whole arenas, nothing else.
    FUZZ_CHECK(stats.committed_bytes ==
               dedicated_charged + pool_stats.arena_bytes);
  }

  // Every hold is under a live lease, and every buffer's holders are
  // exactly the holds on it under live leases.
  uint64_t leases = 0, holds = 0;
  std::vector<ConnectionId> open;
  FUZZ_CHECK(HoldsUnderLeases(registry, &leases, &holds, &open) == holders);
  FUZZ_CHECK(stats.leases == leases);
  FUZZ_CHECK(stats.holds == holds);
  FUZZ_CHECK(stats.clients == open.size());
  return open;
}

// What `caller` may list is exactly what the access rules let it see of
// everything (root's list), in order, and pages of 2 add up to it.
inline void CheckVisibility(const Registry& registry, const Identity& caller) {
  bool more = true;
  std::vector<Handle> expected;
  for (const BufferInfo& buffer : registry.List(kRoot, 0, kEverything, &more)) {
    if (MaySee(caller, buffer.owner, buffer.share)) {
      expected.push_back(buffer.handle);
    }
  }
  std::vector<Handle> listed;
  for (const BufferInfo& buffer :
       registry.List(caller, 0, kEverything, &more)) {
    listed.push_back(buffer.handle);
  }
  FUZZ_CHECK(listed == expected);
  std::vector<Handle> paged;
  Handle after = 0;
  do {
    std::vector<BufferInfo> page = registry.List(caller, after, 2, &more);
    FUZZ_CHECK(page.size() <= 2 && (page.size() == 2 || !more));
    for (const BufferInfo& buffer : page) paged.push_back(buffer.handle);
    if (!page.empty()) after = page.back().handle;
  } while (more);
  FUZZ_CHECK(paged == expected);
  for (const LeaseInfo& lease :
       registry.ListLeases(caller, 0, kEverything, &more)) {
    FUZZ_CHECK(caller.is_root() || lease.owner.uid == caller.uid);
  }
}

}  // namespace shmbroker::fuzz

#endif  // SHMBROKER_TESTS_FUZZ_REGISTRY_INVARIANTS_H_
