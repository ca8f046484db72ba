// Fuzzes the pure functions that read what users and clients type or send:
// byte sizes (daemon flags, CLI), buffer names and share rules (Allocate),
// access decisions, page tokens (List, ListLeases) and the client's parsers
// of CLI arguments. Each is checked against an independent statement of
// its rule, and printers against their parsers (what is printed parses
// back to the same value).
//
// Input: one selector byte (which parser, modulo kParsers), then either the
// text to parse or, for the structured checks, bytes FuzzedDataProvider
// turns into values.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/byte_size.h"
#include "core/access.h"
#include "core/buffer_name.h"
#include "server/page.h"
#include "shmbroker/types.h"
#include "tests/fuzz/fuzz_check.h"

namespace shmbroker {
namespace {

void CheckByteSize(const std::string& text) {
  absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
  if (!parsed.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(parsed.status()));
    return;
  }
  absl::StatusOr<uint64_t> again = ParseByteSize(FormatByteSize(*parsed));
  FUZZ_CHECK(again.ok() && *again == *parsed);
}

// Every value, not only parsed ones, prints as something that parses back.
void CheckFormatByteSize(FuzzedDataProvider& in) {
  const uint64_t value = in.ConsumeIntegral<uint64_t>()
                         << in.ConsumeIntegralInRange(0, 63);
  absl::StatusOr<uint64_t> parsed = ParseByteSize(FormatByteSize(value));
  FUZZ_CHECK(parsed.ok() && *parsed == value);
}

// The rule of core/buffer_name.h, restated.
bool NameAllowed(const std::string& name) {
  if (name.empty() || name.size() > kMaxBufferNameLength) return false;
  if (name[0] == '.' || name[0] == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

void CheckBufferName(const std::string& name) {
  const absl::Status status = ValidateBufferName(name);
  FUZZ_CHECK(status.ok() == NameAllowed(name));
  // A rejected name is never echoed, so a reply stays small.
  FUZZ_CHECK(status.message().size() <= 128);
}

uint32_t SomeId(FuzzedDataProvider& in) {
  // Mostly ids that match each other, so that rules do admit callers.
  static constexpr uint32_t kIds[] = {0, 1000, 2000, 3000};
  return in.ConsumeBool() ? in.ConsumeIntegral<uint32_t>()
                          : in.PickValueInArray(kIds);
}

Identity SomeIdentity(FuzzedDataProvider& in) {
  Identity identity;
  identity.pid = in.ConsumeIntegralInRange<pid_t>(1, 100);
  identity.uid = SomeId(in);
  identity.gid = SomeId(in);
  return identity;
}

// The access rule of core/access.h, restated: root and the owner's uid get
// read-write; otherwise the widest mode of the rules that admit the caller.
std::optional<AccessMode> ModelAllowed(const Identity& caller,
                                       const Identity& owner,
                                       const std::vector<ShareRule>& rules) {
  if (caller.uid == 0 || caller.uid == owner.uid) return AccessMode::kReadWrite;
  std::optional<AccessMode> best;
  for (const ShareRule& rule : rules) {
    const bool admits =
        rule.scope == ShareRule::Scope::kAll ||
        (rule.scope == ShareRule::Scope::kUid && rule.id == caller.uid) ||
        (rule.scope == ShareRule::Scope::kGid && rule.id == caller.gid);
    if (!admits) continue;
    if (!best || rule.mode == AccessMode::kReadWrite) best = rule.mode;
  }
  return best;
}

void CheckAccess(FuzzedDataProvider& in) {
  std::vector<ShareRule> rules(in.ConsumeIntegralInRange<size_t>(0, 18));
  bool all_with_id = false;
  for (ShareRule& rule : rules) {
    rule.scope =
        in.PickValueInArray({ShareRule::Scope::kUid, ShareRule::Scope::kGid,
                             ShareRule::Scope::kAll});
    rule.id = in.ConsumeBool() ? 0 : SomeId(in);
    rule.mode =
        in.ConsumeBool() ? AccessMode::kReadWrite : AccessMode::kReadOnly;
    all_with_id |= rule.scope == ShareRule::Scope::kAll && rule.id != 0;
  }
  FUZZ_CHECK(ValidateShareRules(rules).ok() ==
             (rules.size() <= kMaxShareRules && !all_with_id));

  const Identity caller = SomeIdentity(in);
  const Identity owner = SomeIdentity(in);
  const AccessRequest request = in.PickValueInArray(
      {AccessRequest::kBestAllowed, AccessRequest::kReadOnly,
       AccessRequest::kReadWrite});
  const std::optional<AccessMode> allowed = ModelAllowed(caller, owner, rules);
  const bool may_see = MaySee(caller, owner, rules);
  FUZZ_CHECK(may_see == allowed.has_value());

  absl::StatusOr<AccessMode> mode = DecideAccess(caller, owner, rules, request);
  if (!mode.ok()) {
    FUZZ_CHECK(absl::IsPermissionDenied(mode.status()));
    FUZZ_CHECK(!allowed || (request == AccessRequest::kReadWrite &&
                            *allowed == AccessMode::kReadOnly));
    return;
  }
  // Never more than MaySee (and the rules) allow.
  FUZZ_CHECK(may_see && allowed);
  FUZZ_CHECK(*mode == AccessMode::kReadOnly || *allowed == *mode);
  if (request == AccessRequest::kReadOnly) {
    FUZZ_CHECK(*mode == AccessMode::kReadOnly);
  } else {
    FUZZ_CHECK(*mode == *allowed);
  }
}

void CheckPage(FuzzedDataProvider& in) {
  const uint32_t size = in.ConsumeBool() ? 0 : in.ConsumeIntegral<uint32_t>();
  PageOptions options;
  options.default_size = in.ConsumeIntegral<uint32_t>();
  options.max_size = in.ConsumeIntegral<uint32_t>();
  const std::string token = in.ConsumeRemainingBytesAsString();
  absl::StatusOr<Page> page = ParsePage(size, token, options);
  if (!page.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(page.status()));
    FUZZ_CHECK(!token.empty());
    // At most 64 characters of the token, plus the fixed text and its size.
    FUZZ_CHECK(page.status().message().size() <= 64 + 100);
    return;
  }
  FUZZ_CHECK(page->limit == std::min(size == 0 ? options.default_size : size,
                                     options.max_size));
  uint64_t after = 0;
  FUZZ_CHECK(token.empty()
                 ? page->after == 0
                 : absl::SimpleAtoi(token, &after) && page->after == after);
  // The next token names the same id.
  absl::StatusOr<Page> next =
      ParsePage(size, NextPageToken(true, page->after), options);
  FUZZ_CHECK(next.ok() && next->after == page->after);
}

void CheckClientParsers(const std::string& text) {
  using namespace ::shmbroker::client;
  if (absl::StatusOr<client::ShareRule> rule = ParseShareRule(text);
      rule.ok()) {
    const std::string printed = ShareRuleToString(*rule);
    absl::StatusOr<client::ShareRule> again = ParseShareRule(printed);
    FUZZ_CHECK(again.ok() && again->scope == rule->scope &&
               again->id == rule->id && again->read_write == rule->read_write);
    FUZZ_CHECK(ShareRuleToString(*again) == printed);
  } else {
    FUZZ_CHECK(absl::IsInvalidArgument(rule.status()));
  }
  if (absl::StatusOr<client::Backing> backing = ParseBacking(text);
      backing.ok()) {
    FUZZ_CHECK(text == BackingName(*backing));
  }
  if (absl::StatusOr<Kind> kind = ParseKind(text); kind.ok()) {
    FUZZ_CHECK(text == KindName(*kind));
  }
}

}  // namespace
}  // namespace shmbroker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmbroker;
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  FuzzedDataProvider in(data + 1, size - 1);
  constexpr int kParsers = 6;
  switch (data[0] % kParsers) {
    case 0:
      CheckByteSize(text);
      break;
    case 1:
      CheckFormatByteSize(in);
      break;
    case 2:
      CheckBufferName(text);
      break;
    case 3:
      CheckAccess(in);
      break;
    case 4:
      CheckPage(in);
      break;
    case 5:
      CheckClientParsers(text);
      break;
  }
  return 0;
}
