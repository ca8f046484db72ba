#include "server/tenant_limits.h"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/byte_size.h"
#include "common/unique_fd.h"
#include "nlohmann/json.hpp"

namespace shmbroker {
namespace {

using Json = nlohmann::json;

// User input goes into messages (and the log) only this far.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxQuoted = 40;
  if (text.size() <= kMaxQuoted) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("\"", text.substr(0, kMaxQuoted), "...\" (", text.size(),
                      " bytes)");
}

// A value as the file has it: a string quoted, anything else as JSON.
std::string Shown(const Json& value) {
  if (value.is_string()) return Quote(value.get_ref<const std::string&>());
  std::string text = value.dump();
  if (text.size() > 40) text = absl::StrCat(text.substr(0, 40), "...");
  return text;
}

absl::Status Bad(size_t index, absl::string_view key, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrFormat("tenants[%d].%s: %s", index, key, why));
}

// A whole number from `min` to `max`.
absl::StatusOr<uint64_t> Number(const Json& value, size_t index,
                                absl::string_view key, uint64_t min,
                                uint64_t max) {
  if (!value.is_number_unsigned() || value.get<uint64_t>() < min ||
      value.get<uint64_t>() > max) {
    return Bad(index, key,
               absl::StrFormat("%s is not a whole number from %d to %d",
                               Shown(value), min, max));
  }
  return value.get<uint64_t>();
}

// A limit: at least 1 (a tenant that may have nothing needs no access).
absl::StatusOr<uint64_t> Count(const Json& value, size_t index,
                               absl::string_view key, uint64_t max) {
  return Number(value, index, key, 1, max);
}

absl::StatusOr<uint64_t> Size(const Json& value, size_t index) {
  if (value.is_string()) {
    absl::StatusOr<uint64_t> bytes =
        ParseByteSize(value.get_ref<const std::string&>());
    if (!bytes.ok() || *bytes == 0) {
      return Bad(index, "max_bytes",
                 absl::StrCat(Shown(value),
                              " is not a size of at least 1 byte (e.g. "
                              "4096, 512MiB, 8GiB)"));
    }
    return *bytes;
  }
  return Count(value, index, "max_bytes", std::numeric_limits<uint64_t>::max());
}

absl::StatusOr<uid_t> UserUid(const std::string& name, size_t index) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  const int err =
      ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (found == nullptr) {
    return Bad(index, "user",
               err == 0 ? absl::StrCat("no user ", Quote(name))
                        : absl::StrCat("cannot look up ", Quote(name), ": ",
                                       std::strerror(err)));
  }
  return found->pw_uid;
}

absl::StatusOr<uid_t> TenantUid(const Json& tenant, size_t index) {
  const bool by_uid = tenant.contains("uid");
  if (by_uid == tenant.contains("user")) {
    return Bad(index, "uid", "name exactly one of \"uid\" and \"user\"");
  }
  if (by_uid) {
    // uid_t(-1) is "no uid" to the kernel.
    absl::StatusOr<uint64_t> uid =
        Number(tenant.at("uid"), index, "uid", 0,
               std::numeric_limits<uid_t>::max() - 1);
    if (!uid.ok()) return uid.status();
    return static_cast<uid_t>(*uid);
  }
  const Json& user = tenant.at("user");
  if (!user.is_string() || user.get_ref<const std::string&>().empty()) {
    return Bad(index, "user", absl::StrCat(Shown(user), " is not a name"));
  }
  return UserUid(user.get<std::string>(), index);
}

// " (line L, column C)" of `offset` in `text`.
std::string Where(absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  const absl::string_view before = text.substr(0, offset);
  const size_t line = std::count(before.begin(), before.end(), '\n') + 1;
  const size_t line_start = before.rfind('\n');
  const size_t column =
      line_start == absl::string_view::npos ? offset + 1 : offset - line_start;
  return absl::StrFormat("line %d, column %d", line, column);
}

}  // namespace

absl::StatusOr<TenantLimits> ParseTenantLimits(absl::string_view text,
                                               const TenantDefaults& defaults) {
  if (text.size() > kMaxTenantLimitsFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d bytes, more than the %d allowed", text.size(),
                        kMaxTenantLimitsFileBytes));
  }
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    // Not e.what(): it quotes the input without bound.
    return absl::InvalidArgumentError(
        absl::StrCat("not JSON: syntax error at ", Where(text, e.byte - 1)));
  } catch (const Json::exception& e) {
    // A number too large for any type (out_of_range.406); it has no
    // position, and its what() quotes the number whole.
    return absl::InvalidArgumentError(
        "not JSON this daemon can read: a number out of range");
  }
  if (!root.is_object() || !root.contains("tenants") ||
      !root.at("tenants").is_array()) {
    return absl::InvalidArgumentError(
        "expected an object with a \"tenants\" array, e.g. {\"tenants\": "
        "[{\"uid\": 1000, \"max_bytes\": \"8GiB\"}]}");
  }
  for (const auto& [key, value] : root.items()) {
    if (key != "tenants") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown key ", Quote(key), " (only \"tenants\")"));
    }
  }
  const Json& tenants = root.at("tenants");
  if (tenants.size() > kMaxTenants) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d tenants, more than the %d allowed", tenants.size(), kMaxTenants));
  }
  TenantLimits limits;
  for (size_t i = 0; i < tenants.size(); ++i) {
    const Json& tenant = tenants[i];
    if (!tenant.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("tenants[%d]: not an object", i));
    }
    for (const auto& [key, value] : tenant.items()) {
      if (key != "uid" && key != "user" && key != "max_bytes" &&
          key != "max_buffers" && key != "max_connections") {
        return Bad(i, Quote(key),
                   "unknown key (known: uid, user, max_bytes, max_buffers, "
                   "max_connections)");
      }
    }
    absl::StatusOr<uid_t> uid = TenantUid(tenant, i);
    if (!uid.ok()) return uid.status();
    if (limits.quotas.contains(*uid)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("tenants[%d]: uid %d is named twice", i, *uid));
    }
    UidQuota quota{defaults.max_bytes, defaults.max_buffers};
    uint32_t connections = defaults.max_connections;
    if (tenant.contains("max_bytes")) {
      absl::StatusOr<uint64_t> bytes = Size(tenant.at("max_bytes"), i);
      if (!bytes.ok()) return bytes.status();
      quota.max_bytes = *bytes;
    }
    if (tenant.contains("max_buffers")) {
      absl::StatusOr<uint64_t> buffers =
          Count(tenant.at("max_buffers"), i, "max_buffers",
                std::numeric_limits<uint64_t>::max());
      if (!buffers.ok()) return buffers.status();
      quota.max_buffers = *buffers;
    }
    if (tenant.contains("max_connections")) {
      absl::StatusOr<uint64_t> open =
          Count(tenant.at("max_connections"), i, "max_connections",
                std::numeric_limits<uint32_t>::max());
      if (!open.ok()) return open.status();
      connections = static_cast<uint32_t>(*open);
    }
    limits.quotas[*uid] = quota;
    limits.connections[*uid] = connections;
  }
  return limits;
}

absl::StatusOr<TenantLimits> ReadTenantLimits(const std::string& path,
                                              const TenantDefaults& defaults) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", std::strerror(errno)));
  }
  // One byte more than allowed tells a file that is too large.
  std::string text(kMaxTenantLimitsFileBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  absl::StatusOr<TenantLimits> limits = ParseTenantLimits(text, defaults);
  if (!limits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", limits.status().message()));
  }
  return limits;
}

}  // namespace shmbroker
