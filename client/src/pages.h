// CollectPages: reads a paginated listing (List, ListLeases) to its end.
// Header-only; the page source is any callable, so it is testable without
// a daemon.
#ifndef SHMBROKER_CLIENT_SRC_PAGES_H_
#define SHMBROKER_CLIENT_SRC_PAGES_H_

#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace shmbroker::client {

// Calls `fetch(request)` (returning absl::StatusOr<Response>) from the
// first page (the request's page token as given, normally empty) until a
// response has no next_page_token, and lets `append(response, &items)` add
// each page's items. The first failed page's status is the result.
template <typename Item, typename Request, typename Fetch, typename Append>
absl::StatusOr<std::vector<Item>> CollectPages(Request request, Fetch fetch,
                                               Append append) {
  std::vector<Item> items;
  do {
    auto page = fetch(std::as_const(request));
    if (!page.ok()) return page.status();
    append(*page, &items);
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  return items;
}

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_PAGES_H_
