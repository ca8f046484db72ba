#include "core/access.h"

#include <optional>

#include "absl/strings/str_format.h"

namespace shmbroker {
namespace {

bool Admits(const ShareRule& rule, const Identity& caller) {
  switch (rule.scope) {
    case ShareRule::Scope::kUid:
      return caller.uid == rule.id;
    case ShareRule::Scope::kGid:
      return caller.gid == rule.id;
    case ShareRule::Scope::kAll:
      return true;
  }
  return false;
}

// The widest access any rule (or ownership) grants, if any.
std::optional<AccessMode> Allowed(const Identity& caller, const Identity& owner,
                                  absl::Span<const ShareRule> rules) {
  if (caller.is_root() || caller.uid == owner.uid) {
    return AccessMode::kReadWrite;
  }
  std::optional<AccessMode> best;
  for (const ShareRule& rule : rules) {
    if (!Admits(rule, caller)) continue;
    if (rule.mode == AccessMode::kReadWrite) return AccessMode::kReadWrite;
    best = AccessMode::kReadOnly;
  }
  return best;
}

}  // namespace

absl::Status ValidateShareRules(const std::vector<ShareRule>& rules) {
  if (rules.size() > kMaxShareRules) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad share: %d rules, at most %d allowed", rules.size(),
                        kMaxShareRules));
  }
  for (const ShareRule& rule : rules) {
    if (rule.scope == ShareRule::Scope::kAll && rule.id != 0) {
      return absl::InvalidArgumentError(
          "bad share: a rule for everyone must not name an id");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AccessMode> DecideAccess(const Identity& caller,
                                        const Identity& owner,
                                        absl::Span<const ShareRule> rules,
                                        AccessRequest request) {
  std::optional<AccessMode> allowed = Allowed(caller, owner, rules);
  if (!allowed) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: uid %d is not the owner (uid %d) and no share "
        "rule admits it",
        caller.uid, owner.uid));
  }
  switch (request) {
    case AccessRequest::kBestAllowed:
      return *allowed;
    case AccessRequest::kReadOnly:
      return AccessMode::kReadOnly;
    case AccessRequest::kReadWrite:
      if (*allowed != AccessMode::kReadWrite) {
        return absl::PermissionDeniedError(absl::StrFormat(
            "permission denied: uid %d may attach read-only only", caller.uid));
      }
      return AccessMode::kReadWrite;
  }
  return absl::InternalError("unreachable access request");
}

bool MaySee(const Identity& caller, const Identity& owner,
            absl::Span<const ShareRule> rules) {
  return Allowed(caller, owner, rules).has_value();
}

}  // namespace shmbroker
