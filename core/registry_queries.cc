// Registry: the read-only queries (Describe, List, Stats, Tenants,
// ResidentBytes). The mutations are in registry.cc.
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

// Largest first; by uid among equals.
void SortTenants(std::vector<TenantUsage>& tenants) {
  std::sort(tenants.begin(), tenants.end(), [](const auto& a, const auto& b) {
    return a.allocated_bytes != b.allocated_bytes
               ? a.allocated_bytes > b.allocated_bytes
               : a.uid < b.uid;
  });
}

}  // namespace

absl::StatusOr<BufferInfo> Registry::Describe(const Identity& caller,
                                              const BufferRef& ref) const {
  Locked lock(this);
  absl::StatusOr<Handle> handle = ResolveLocked(ref);
  if (!handle.ok()) return handle.status();
  const BufferRecord& record = buffers_.at(*handle);
  if (!MaySee(caller, record.owner, record.share())) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: uid %d may not see buffer %d (owner uid %d)",
        caller.uid, *handle, record.owner.uid));
  }
  return record.Info(*handle);
}

std::vector<BufferInfo> Registry::List(const Identity& caller, Handle after,
                                       size_t limit, bool* more,
                                       uint64_t* revision) const {
  std::vector<BufferInfo> out;
  *more = false;
  Locked lock(this);
  if (revision != nullptr) *revision = watch_hub_.revision();
  if (!caller.is_root()) {
    // From the index: the page's cost, not the table's.
    const std::vector<Handle> page = visible_.Page(caller, after, limit, more);
    out.reserve(page.size());
    for (Handle handle : page) out.push_back(buffers_.at(handle).Info(handle));
    return out;
  }
  // Root sees every live buffer. A page is reserved whole: growing it
  // would copy every BufferInfo (a name, share rules) several times.
  out.reserve(std::min(limit, buffers_.size()));
  for (auto it = buffers_.upper_bound(after); it != buffers_.end(); ++it) {
    const BufferRecord& record = it->second;
    if (!record.has_memory) continue;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    out.push_back(record.Info(it->first));
  }
  return out;
}

RegistryStats Registry::Stats(std::vector<TenantUsage>* tenants) const {
  Locked lock(this);
  if (tenants != nullptr) {
    tenants->clear();
    tenants->reserve(live_by_uid_.size());
    for (const auto& [uid, usage] : live_by_uid_) tenants->push_back(usage);
    SortTenants(*tenants);
  }
  RegistryStats stats;
  stats.capacity_bytes = options_.capacity_bytes;
  stats.allocated_bytes = allocated_bytes_;
  stats.committed_bytes = capacity_.committed();
  stats.buffers = live_.buffers;
  stats.pooled_buffers = live_.pooled;
  stats.posix_buffers = live_.posix;
  stats.memfd_buffers = live_.memfd;
  stats.clients = connections_.size();
  stats.holds = hold_count_;
  stats.waiters = waiters_.size();
  stats.watchers = watch_hub_.size();
  stats.revision = watch_hub_.revision();
  stats.awaiting_memory = awaiting_memory_;
  stats.leases = leases_.size();
  for (const auto& [uid, count] : detached_per_uid_) {
    stats.detached_leases += count;
  }
  return stats;
}

TenantQuotas::Usage Registry::QuotaUsage(uid_t uid) const {
  Locked lock(this);
  return quotas_.usage(uid);
}

void Registry::SetOwnQuotas(OwnQuotas own) {
  for (auto& [uid, quota] : own) quota = EffectiveQuota(quota);
  {
    Locked lock(this);
    quotas_.SetOwn(std::move(own));
    room_generation_.fetch_add(1);
    MarkRoomDirtyLocked();
  }
  ServeRoomWaiters();  // a raised quota may let some in
}

UidQuota Registry::QuotaFor(uid_t uid) const {
  Locked lock(this);
  return quotas_.For(uid);
}

std::vector<TenantUsage> Registry::Tenants() const {
  std::vector<TenantUsage> out;
  {
    // Kept as buffers come and go: a scrape costs the number of tenants,
    // not of buffers.
    Locked lock(this);
    out.reserve(live_by_uid_.size());
    for (const auto& [uid, usage] : live_by_uid_) out.push_back(usage);
  }
  SortTenants(out);
  return out;
}

uint64_t Registry::ResidentBytes() const {
  // Pooled buffers' arenas are counted once, by the pool. The dedicated
  // buffers are found a step at a time: one hold of the lock for the whole
  // table was a stall for every other call, every scrape, that grew with
  // the table (a million buffers, mostly pooled, were a long walk).
  uint64_t resident = pool_ != nullptr ? pool_->ResidentBytes() : 0;
  std::vector<std::shared_ptr<const MemoryObject>> memory;
  for (Handle next = 0;;) {
    bool more = false;
    {
      Locked lock(this);
      auto it = buffers_.lower_bound(next);
      for (size_t n = 0; it != buffers_.end() && n < kResidentBytesStep;
           ++it, ++n) {
        const BufferRecord& record = it->second;
        if (record.has_memory && record.kind == BufferKind::kDedicated) {
          memory.push_back(MemoryLocked(record));
        }
      }
      more = it != buffers_.end();
      if (more) next = it->first;
    }
    for (const auto& m : memory) {
      struct stat st {};
      if (::fstat(m->fd(), &st) == 0) {
        resident += static_cast<uint64_t>(st.st_blocks) * 512;
      }
    }
    memory.clear();  // unlocked: the last of a freed buffer's fd closes here
    if (!more) return resident;
  }
}

}  // namespace shmbroker
