// Logging for the daemon: spdlog to stderr (set up in main.cc). Include this
// instead of spdlog directly: Debian's Abseil has its own string_view type
// (not std::string_view), which fmt cannot print without the formatter below.
#ifndef SHMBROKER_SERVER_LOGGING_H_
#define SHMBROKER_SERVER_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(
        fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace shmbroker {

// Makes the default logger write to stderr at `level` (trace, debug, info,
// warn, error) as "text" or "json" (one object per line: time, level, msg).
absl::Status SetUpLogging(const std::string& level, const std::string& format);

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_LOGGING_H_
