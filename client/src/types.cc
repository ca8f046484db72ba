#include "shmbroker/types.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace shmbroker::client {

absl::StatusOr<ShareRule> ParseShareRule(absl::string_view text) {
  const absl::Status bad = absl::InvalidArgumentError(
      absl::StrCat("bad share \"", text,
                   "\": use uid:N, gid:N or all, optionally with "
                   ":ro or :rw"));
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  ShareRule rule;
  size_t next = 1;
  if (parts[0] == "all") {
    rule.scope = ShareRule::Scope::kAll;
  } else if (parts[0] == "uid" || parts[0] == "gid") {
    rule.scope =
        parts[0] == "uid" ? ShareRule::Scope::kUid : ShareRule::Scope::kGid;
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &rule.id)) return bad;
    next = 2;
  } else {
    return bad;
  }
  if (parts.size() == next + 1) {
    if (parts[next] == "rw") {
      rule.read_write = true;
    } else if (parts[next] != "ro") {
      return bad;
    }
  } else if (parts.size() > next + 1) {
    return bad;
  }
  return rule;
}

absl::StatusOr<Backing> ParseBacking(absl::string_view text) {
  if (text == "memfd") return Backing::kMemfd;
  if (text == "posix") return Backing::kPosix;
  return absl::InvalidArgumentError(
      absl::StrCat("bad backing \"", text, "\": use memfd or posix"));
}

const char* BackingName(Backing backing) {
  switch (backing) {
    case Backing::kPosix:
      return "posix";
    case Backing::kMemfd:
    case Backing::kDefault:
      break;
  }
  return "memfd";
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kDedicated:
      return "dedicated";
    case Kind::kPooled:
      return "pooled";
    case Kind::kDefault:
      break;
  }
  return "auto";
}

absl::StatusOr<Kind> ParseKind(absl::string_view text) {
  if (text == "auto") return Kind::kDefault;
  if (text == "dedicated") return Kind::kDedicated;
  if (text == "pooled") return Kind::kPooled;
  return absl::InvalidArgumentError(
      absl::StrCat("bad kind \"", text, "\": use auto, pooled or dedicated"));
}

std::string ShareRuleToString(const ShareRule& rule) {
  std::string scope =
      rule.scope == ShareRule::Scope::kAll
          ? "all"
          : absl::StrCat(rule.scope == ShareRule::Scope::kUid ? "uid:" : "gid:",
                         rule.id);
  return absl::StrCat(scope, rule.read_write ? ":rw" : ":ro");
}

}  // namespace shmbroker::client
