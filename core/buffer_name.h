// Rules for client-chosen buffer names. A name is a key in the registry only:
// it never becomes a path, a shm_open name or a log format string.
#ifndef SHMBROKER_CORE_BUFFER_NAME_H_
#define SHMBROKER_CORE_BUFFER_NAME_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shmbroker {

inline constexpr size_t kMaxBufferNameLength = 128;

// OK when `name` is 1..kMaxBufferNameLength characters of [A-Za-z0-9._-] and
// does not start with '.' or '-'; INVALID_ARGUMENT naming the rule otherwise.
absl::Status ValidateBufferName(absl::string_view name);

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_BUFFER_NAME_H_
