#include "core/buffer_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace shmbroker {

absl::Status ValidateBufferName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("bad name: empty");
  }
  if (name.size() > kMaxBufferNameLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad name: %d characters, at most %d allowed",
                        name.size(), kMaxBufferNameLength));
  }
  if (name[0] == '.' || name[0] == '-') {
    return absl::InvalidArgumentError(
        "bad name: must not start with '.' or '-'");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      // The offending byte is printed as a number: it may be unprintable.
      return absl::InvalidArgumentError(absl::StrFormat(
          "bad name: byte %d at position %d is not one of [A-Za-z0-9._-]",
          static_cast<unsigned char>(c), i));
    }
  }
  return absl::OkStatus();
}

}  // namespace shmbroker
