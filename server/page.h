// Pages of List and ListLeases: a page token is the last id of the previous
// page, in decimal; a page holds up to a requested size, defaulted and
// capped by the daemon. Pure functions; thread-safe.
#ifndef SHMBROKER_SERVER_PAGE_H_
#define SHMBROKER_SERVER_PAGE_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace shmbroker {

struct Page {
  uint64_t after = 0;  // ids greater than this
  uint32_t limit = 0;  // at most this many
};

struct PageOptions {
  uint32_t default_size = 100;
  uint32_t max_size = 1000;
};

// The page a request asks for: size 0 means the default. INVALID_ARGUMENT
// for a token that is not one of ours; the message quotes at most 64 of its
// characters, so a huge token cannot make a huge reply.
inline absl::StatusOr<Page> ParsePage(uint32_t size, absl::string_view token,
                                      const PageOptions& options) {
  Page page;
  if (!token.empty() && !absl::SimpleAtoi(token, &page.after)) {
    constexpr size_t kQuoted = 64;
    return absl::InvalidArgumentError(
        absl::StrCat("bad page_token \"", token.substr(0, kQuoted),
                     token.size() > kQuoted ? "...\" (" : "\" (", token.size(),
                     " bytes): pass next_page_token from the previous page"));
  }
  page.limit =
      std::min(size == 0 ? options.default_size : size, options.max_size);
  return page;
}

// The token for the page after one that ended at `last_id`, or empty when
// nothing follows.
inline std::string NextPageToken(bool more, uint64_t last_id) {
  return more ? absl::StrCat(last_id) : std::string();
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_PAGE_H_
