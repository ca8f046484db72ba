// Access rules for buffers: who may attach, and with what access.
//
// The owner's uid and root may always attach read-write. A buffer may be
// opened further with share rules (a uid, a primary gid, or everyone), each
// read-only or read-write. Pure functions; thread-safe.
#ifndef SHMBROKER_CORE_ACCESS_H_
#define SHMBROKER_CORE_ACCESS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/identity.h"

namespace shmbroker {

enum class AccessMode { kReadOnly, kReadWrite };

// What a caller asks for when attaching.
enum class AccessRequest { kBestAllowed, kReadOnly, kReadWrite };

struct ShareRule {
  enum class Scope { kUid, kGid, kAll };
  Scope scope = Scope::kAll;
  uint32_t id = 0;  // uid or gid; 0 for kAll
  AccessMode mode = AccessMode::kReadOnly;

  friend bool operator==(const ShareRule&, const ShareRule&) = default;
};

inline constexpr size_t kMaxShareRules = 16;

// INVALID_ARGUMENT when there are too many rules or a kAll rule has an id.
absl::Status ValidateShareRules(const std::vector<ShareRule>& rules);

// The access `caller` gets to a buffer owned by `owner` with `rules`, or
// PERMISSION_DENIED saying why.
absl::StatusOr<AccessMode> DecideAccess(const Identity& caller,
                                        const Identity& owner,
                                        absl::Span<const ShareRule> rules,
                                        AccessRequest request);

// Whether `caller` may see the buffer at all (any access).
bool MaySee(const Identity& caller, const Identity& owner,
            absl::Span<const ShareRule> rules);

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_ACCESS_H_
