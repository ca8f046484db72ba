// Value types of the shmbroker client API (mirrors of shmbroker.v1 messages,
// so that applications need no generated code).
#ifndef SHMBROKER_CLIENT_TYPES_H_
#define SHMBROKER_CLIENT_TYPES_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shmbroker::client {

enum class Backing { kDefault, kMemfd, kPosix };
// Dedicated: a memory object of its own. Pooled: a slot or page run in an
// arena of the owner's. kDefault (in AllocateOptions): the daemon's choice.
enum class Kind { kDefault, kDedicated, kPooled };
// kDefault: the most the buffer's ACL allows.
enum class Access { kDefault, kReadOnly, kReadWrite };

struct ShareRule {
  enum class Scope { kUid, kGid, kAll };
  Scope scope = Scope::kAll;
  uint32_t id = 0;
  bool read_write = false;
};

// Parses "uid:N", "gid:N" or "all", each optionally followed by ":ro" (the
// default) or ":rw".
absl::StatusOr<ShareRule> ParseShareRule(absl::string_view text);
// "memfd" or "posix".
absl::StatusOr<Backing> ParseBacking(absl::string_view text);
const char* BackingName(Backing backing);
// "dedicated", "pooled", or (kDefault) "auto"; and back.
const char* KindName(Kind kind);
absl::StatusOr<Kind> ParseKind(absl::string_view text);
std::string ShareRuleToString(const ShareRule& rule);

struct BufferInfo {
  uint64_t handle = 0;
  std::string name;
  uint64_t size = 0;
  Backing backing = Backing::kMemfd;
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
  pid_t owner_pid = 0;
  uint32_t holders = 0;
  absl::Time created;
  std::vector<ShareRule> share;
  std::string shm_name;  // POSIX backing only
  uint64_t charged_bytes = 0;
  Kind kind = Kind::kDedicated;
  uint64_t arena_id = 0;  // pooled only
  uint64_t offset = 0;    // pooled only: where it starts in the arena
  bool sealed = false;    // immutable; granted read-only (Buffer::Seal)
};

// The pooled arenas (Status).
struct PoolStatus {
  struct SizeClass {
    uint32_t size = 0;
    uint32_t span_pages = 0;
    uint64_t spans = 0;
    uint64_t free_slots = 0;
    uint64_t live_slots = 0;
  };
  struct Tenant {
    uid_t uid = 0;
    uint64_t arenas = 0;
    uint64_t in_use_bytes = 0;
  };
  bool enabled = false;
  uint64_t arena_size = 0;
  uint64_t pooled_max_size = 0;
  uint64_t pooled_large_max_size = 0;
  uint64_t arenas = 0;
  uint64_t large_arenas = 0;
  uint64_t arena_bytes = 0;
  uint64_t live_buffers = 0;
  uint64_t in_use_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t span_tail_bytes = 0;
  uint64_t largest_free_run_bytes = 0;
  uint64_t scavenged_bytes_total = 0;
  uint64_t zeroed_bytes_total = 0;
  uint64_t arenas_created_total = 0;
  uint64_t arenas_released_total = 0;
  std::vector<SizeClass> size_classes;  // those with spans
  std::vector<Tenant> tenants;
};

struct TenantUsage {
  uid_t uid = 0;
  uint64_t allocated_bytes = 0;
  uint64_t buffers = 0;
};

// Percentiles over the daemon's most recent reclaims.
struct LatencySummary {
  uint64_t samples = 0;
  absl::Duration p50;
  absl::Duration p99;
  absl::Duration max;
};

struct DaemonStatus {
  uint64_t capacity_bytes = 0;
  uint64_t allocated_bytes = 0;  // charged for live buffers
  // Counted against the capacity: dedicated buffers plus whole arenas.
  uint64_t committed_bytes = 0;
  uint64_t buffers = 0;
  uint64_t clients = 0;
  uint64_t holds = 0;
  std::string version;
  absl::Time started;
  std::vector<TenantUsage> tenants;  // largest first
  uint64_t leases = 0;
  uint64_t detached_leases = 0;
  uint64_t waiters = 0;   // Attach calls waiting for a buffer
  uint64_t watchers = 0;  // open Watch streams
  uint64_t revision = 0;  // of the last change to the buffers (Watch)
  // From noticing a closed client connection to its memory being free.
  LatencySummary connection_close_reclaim;
  // From a lease's deadline to its memory being free.
  LatencySummary lease_expiry_reclaim;
  PoolStatus arenas;
};

// A lease (docs/api.md, "Leases").
struct LeaseInfo {
  uint64_t id = 0;
  absl::Duration ttl;          // remaining
  absl::Duration granted_ttl;  // restored by each renewal
  bool detached = false;
  bool connection_default = false;
  uint64_t holds = 0;
  pid_t owner_pid = 0;
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
  bool connected = false;  // its client connection is still open
  absl::Time granted;
  // LeaseTimeToLive only: (buffer handle, count) of each hold under it.
  std::vector<std::pair<uint64_t, uint32_t>> holds_by_buffer;
};

// Client::ListWithRevision: the buffers, and the revision the listing
// reflects (watch after it to miss nothing: shmbroker/watcher.h).
struct ListResult {
  std::vector<BufferInfo> buffers;
  uint64_t revision = 0;
};

struct AllocateOptions {
  uint64_t size = 0;
  std::string name;  // optional
  Backing backing = Backing::kDefault;
  std::vector<ShareRule> share;  // empty: owner's uid (and root) only
  // The lease to hold it under (from Client::GrantLease); 0: the
  // connection's default lease.
  uint64_t lease_id = 0;
  // kDefault: pooled when it is small, owner-only and memfd (docs/api.md).
  Kind kind = Kind::kDefault;
  // Pooled only: memory recycled from this uid's earlier buffers is not
  // zeroed (the daemon saves a memset). Never another uid's data.
  bool uninitialized = false;
  // Back-pressure: when the daemon has no room now (its capacity, its
  // buffer limit, this uid's quota), wait up to this long for some instead
  // of failing with RESOURCE_EXHAUSTED; then DEADLINE_EXCEEDED. Zero: do
  // not wait.
  absl::Duration wait_for_room = absl::ZeroDuration();
};

// How Client::AttachWhen waits for its buffer.
struct WaitOptions {
  // kCreated: until a buffer of the name exists (and this process may see
  // it). kSealed: until it exists and is sealed.
  enum class Until { kCreated, kSealed };
  Until until = Until::kCreated;
  // DEADLINE_EXCEEDED, naming the buffer and what was awaited, after this.
  absl::Duration timeout = absl::Seconds(10);
  Access access = Access::kDefault;
  uint64_t lease_id = 0;  // 0: the connection's default lease
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_TYPES_H_
