// Parsing and printing of byte sizes ("4096", "4KiB", "1MiB", "1GiB").
// Header-only; shared by the daemon's flags and the CLI.
#ifndef SHMBROKER_COMMON_BYTE_SIZE_H_
#define SHMBROKER_COMMON_BYTE_SIZE_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace shmbroker {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;

// Accepts a decimal integer optionally followed by a binary unit: B, KiB,
// MiB, GiB, TiB (also K/M/G/T and KB/MB/GB/TB, read as powers of 1024).
inline absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < s.size() && absl::ascii_isdigit(s[digits])) ++digits;
  if (digits == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad size \"%s\": expected a number with an optional unit, e.g. "
        "4096, 4KiB, 1MiB, 1GiB",
        text));
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(s.substr(0, digits), &value)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad size \"%s\": number too large", text));
  }
  std::string unit = absl::AsciiStrToLower(s.substr(digits));
  int shift = -1;
  if (unit.empty() || unit == "b") shift = 0;
  if (unit == "k" || unit == "kb" || unit == "kib") shift = 10;
  if (unit == "m" || unit == "mb" || unit == "mib") shift = 20;
  if (unit == "g" || unit == "gb" || unit == "gib") shift = 30;
  if (unit == "t" || unit == "tb" || unit == "tib") shift = 40;
  if (shift < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad size \"%s\": unknown unit \"%s\" (use B, KiB, MiB, GiB or TiB)",
        text, s.substr(digits)));
  }
  if (value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad size \"%s\": too large", text));
  }
  return value << shift;
}

// Prints the largest unit that divides the value exactly ("4KiB", "1536B"),
// so the output parses back to the same number.
inline std::string FormatByteSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit < 4 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrFormat("%d%s", bytes, kUnits[unit]);
}

// A flag type for sizes: `ABSL_FLAG(shmbroker::ByteSize, capacity, ...)`.
struct ByteSize {
  uint64_t bytes = 0;
};

inline bool AbslParseFlag(absl::string_view text, ByteSize* out,
                          std::string* error) {
  absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
  if (!parsed.ok()) {
    *error = std::string(parsed.status().message());
    return false;
  }
  out->bytes = *parsed;
  return true;
}

inline std::string AbslUnparseFlag(ByteSize size) {
  return FormatByteSize(size.bytes);
}

}  // namespace shmbroker

#endif  // SHMBROKER_COMMON_BYTE_SIZE_H_
