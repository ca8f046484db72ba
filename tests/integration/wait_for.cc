#include "tests/integration/wait_for.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace shmbroker::testing {

::testing::AssertionResult WaitFor(
    const std::string& what,
    const std::function<bool(std::string* seen)>& condition,
    absl::Duration deadline) {
  const absl::Time start = absl::Now();
  absl::Duration pause = absl::Milliseconds(5);
  std::string seen;
  int polls = 0;
  for (;;) {
    seen.clear();
    ++polls;
    if (condition(&seen)) return ::testing::AssertionSuccess();
    if (absl::Now() - start >= deadline) break;
    absl::SleepFor(pause);  // between polls of the state, not instead of one
    pause = std::min(pause * 2, absl::Milliseconds(100));
  }
  return ::testing::AssertionFailure()
         << "waited " << absl::FormatDuration(deadline) << " (" << polls
         << " polls) for " << what
         << "; last seen: " << (seen.empty() ? "(nothing said)" : seen);
}

}  // namespace shmbroker::testing
