#include "core/visibility_index.h"

#include <algorithm>

namespace shmbroker {

std::vector<VisibilityIndex::Key> VisibilityIndex::KeysOf(
    const Identity& owner, absl::Span<const ShareRule> share) const {
  std::vector<Key> keys = {{ShareRule::Scope::kUid, owner.uid}};
  for (const ShareRule& rule : share) keys.push_back({rule.scope, rule.id});
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

void VisibilityIndex::Add(Handle handle, const Identity& owner,
                          absl::Span<const ShareRule> share) {
  for (const Key& key : KeysOf(owner, share)) sets_[key].insert(handle);
}

void VisibilityIndex::Remove(Handle handle, const Identity& owner,
                             absl::Span<const ShareRule> share) {
  for (const Key& key : KeysOf(owner, share)) {
    auto it = sets_.find(key);
    if (it == sets_.end()) continue;
    it->second.erase(handle);
    if (it->second.empty()) sets_.erase(it);
  }
}

std::vector<Handle> VisibilityIndex::Page(const Identity& caller, Handle after,
                                          size_t limit, bool* more) const {
  // The caller's sets, each from its first handle after `after`.
  struct Cursor {
    absl::btree_set<Handle>::const_iterator at, end;
  };
  std::vector<Cursor> cursors;
  for (const Key& key : {Key{ShareRule::Scope::kUid, caller.uid},
                         Key{ShareRule::Scope::kGid, caller.gid},
                         Key{ShareRule::Scope::kAll, 0}}) {
    auto it = sets_.find(key);
    if (it == sets_.end()) continue;
    Cursor cursor{it->second.upper_bound(after), it->second.end()};
    if (cursor.at != cursor.end) cursors.push_back(cursor);
  }
  std::vector<Handle> out;
  *more = false;
  while (!cursors.empty()) {
    Handle next = *cursors.front().at;
    for (const Cursor& c : cursors) next = std::min(next, *c.at);
    if (out.size() == limit) {
      *more = true;
      break;
    }
    out.push_back(next);
    // A buffer in several of the sets is listed once.
    for (Cursor& c : cursors) {
      if (*c.at == next) ++c.at;
    }
    cursors.erase(std::remove_if(cursors.begin(), cursors.end(),
                                 [](const Cursor& c) { return c.at == c.end; }),
                  cursors.end());
  }
  return out;
}

}  // namespace shmbroker
