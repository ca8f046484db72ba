// WaitFor: waits for a STATE, never for a time. Polls a condition until it
// holds or a generous deadline passes (a loaded 2-core machine running an
// ASan build must never reach it), and on failure says what it waited for
// and what it saw last. Tests use it instead of sleeping.
#ifndef SHMBROKER_TESTS_INTEGRATION_WAIT_FOR_H_
#define SHMBROKER_TESTS_INTEGRATION_WAIT_FOR_H_

#include <functional>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace shmbroker::testing {

inline constexpr absl::Duration kStateDeadline = absl::Seconds(20);

// `condition` returns whether the state holds and may describe what it saw
// in `*seen` (shown on failure). E.g.
//   EXPECT_TRUE(WaitFor("every byte reclaimed", [&](std::string* seen) {
//     auto s = client->Status();
//     *seen = s.ok() ? absl::StrCat("buffers=", s->buffers) :
//     s.status().ToString(); return s.ok() && s->buffers == 0;
//   }));
::testing::AssertionResult WaitFor(
    const std::string& what,
    const std::function<bool(std::string* seen)>& condition,
    absl::Duration deadline = kStateDeadline);

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_WAIT_FOR_H_
