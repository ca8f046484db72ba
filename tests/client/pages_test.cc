// CollectPages against a fake page source: a plain function over a list.
#include "client/src/pages.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.pb.h"

namespace shmbroker::client {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Serves `handles` `page_size` at a time; the page token is the next index.
// Records the tokens it was asked for.
struct FakeListing {
  explicit FakeListing(std::vector<uint64_t> all = {})
      : handles(std::move(all)) {}

  std::vector<uint64_t> handles;
  size_t page_size = 2;
  std::vector<std::string> asked;
  std::string failing_token = "-";  // this page fails with `failure`
  absl::Status failure;

  absl::StatusOr<v1::ListResponse> Fetch(const v1::ListRequest& request) {
    asked.push_back(request.page_token());
    if (request.page_token() == failing_token) return failure;
    size_t start = 0;
    if (!request.page_token().empty() &&
        !absl::SimpleAtoi(request.page_token(), &start)) {
      return absl::InvalidArgumentError("bad token");
    }
    v1::ListResponse response;
    for (size_t i = start; i < handles.size() && i < start + page_size; ++i) {
      response.add_buffers()->set_handle(handles[i]);
    }
    if (start + page_size < handles.size()) {
      response.set_next_page_token(absl::StrCat(start + page_size));
    }
    return response;
  }
};

absl::StatusOr<std::vector<uint64_t>> Collect(FakeListing& listing,
                                              v1::ListRequest first = {}) {
  return CollectPages<uint64_t>(
      std::move(first),
      [&](const v1::ListRequest& request) { return listing.Fetch(request); },
      [](const v1::ListResponse& page, std::vector<uint64_t>* out) {
        for (const v1::Buffer& b : page.buffers()) out->push_back(b.handle());
      });
}

TEST(CollectPagesTest, FollowsTokensToTheLastPage) {
  FakeListing listing({1, 2, 3, 4, 5});
  absl::StatusOr<std::vector<uint64_t>> all = Collect(listing);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(listing.asked, ElementsAre("", "2", "4"));
}

TEST(CollectPagesTest, AnEmptyListingIsOnePage) {
  FakeListing listing;
  absl::StatusOr<std::vector<uint64_t>> all = Collect(listing);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, IsEmpty());
  EXPECT_THAT(listing.asked, ElementsAre(""));
}

TEST(CollectPagesTest, AFullLastPageEndsWithoutAnotherCall) {
  FakeListing listing({1, 2, 3, 4});
  absl::StatusOr<std::vector<uint64_t>> all = Collect(listing);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(listing.asked, ElementsAre("", "2"));
}

TEST(CollectPagesTest, AFailedPageIsTheResult) {
  FakeListing listing({1, 2, 3, 4, 5});
  listing.failing_token = "2";
  listing.failure = absl::UnavailableError("gone");
  absl::StatusOr<std::vector<uint64_t>> all = Collect(listing);
  EXPECT_EQ(all.status(), absl::UnavailableError("gone"));
  EXPECT_THAT(listing.asked, ElementsAre("", "2"));
}

TEST(CollectPagesTest, StartsFromTheRequestsToken) {
  FakeListing listing({1, 2, 3, 4, 5});
  v1::ListRequest from_middle;
  from_middle.set_page_token("2");
  absl::StatusOr<std::vector<uint64_t>> rest = Collect(listing, from_middle);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(*rest, ElementsAre(3, 4, 5));
}

}  // namespace
}  // namespace shmbroker::client
