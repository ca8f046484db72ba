// VisibilityIndex: which live buffers a caller other than root may see, so
// that its List pages cost what the page holds, not what the table holds
// (#15, "Scale": a tenant listing its 10 buffers among a million others'
// walked all of them under the Registry's lock).
//
// A caller sees a buffer it owns or one a share rule admits it to
// (core/access.h): by its uid, by its primary gid, or everyone. So each
// buffer is filed, in handle order, under every key it is visible by: its
// owner's uid, and each rule's uid, gid or "everyone". A caller's buffers
// are then the union of three ordered sets (its uid's, its gid's and
// everyone's), merged from the page's start. Root sees everything and
// needs no index. Costs one set entry per key per buffer (about 10 bytes
// each in a btree).
//
// Not thread-safe: the Registry guards it with its mutex.
#ifndef SHMBROKER_CORE_VISIBILITY_INDEX_H_
#define SHMBROKER_CORE_VISIBILITY_INDEX_H_

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "core/access.h"
#include "core/identity.h"
#include "core/ids.h"

namespace shmbroker {

class VisibilityIndex {
 public:
  // Files a buffer that became live; Remove with the same arguments.
  void Add(Handle handle, const Identity& owner,
           absl::Span<const ShareRule> share);
  void Remove(Handle handle, const Identity& owner,
              absl::Span<const ShareRule> share);
  // Handles `caller` (not root) may see with handle > `after`, ascending,
  // at most `limit`; `*more` says whether more follow.
  std::vector<Handle> Page(const Identity& caller, Handle after, size_t limit,
                           bool* more) const;

 private:
  // Who a set's buffers are visible to: a uid (the owner's, or a rule's),
  // a gid, or everyone (id 0).
  using Key = std::pair<ShareRule::Scope, uint32_t>;
  std::vector<Key> KeysOf(const Identity& owner,
                          absl::Span<const ShareRule> share) const;

  absl::flat_hash_map<Key, absl::btree_set<Handle>> sets_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_VISIBILITY_INDEX_H_
