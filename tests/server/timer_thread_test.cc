#include "server/timer_thread.h"

#include <atomic>

#include "gtest/gtest.h"

namespace shmbroker {
namespace {

// Waits for `done` with a deadline, never for a fixed time.
bool WaitFor(const std::function<bool()>& done, absl::Duration deadline) {
  const absl::Time until = absl::Now() + deadline;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(TimerThreadTest, RunsTheStepWhenItAsksAndStopsWhileWaiting) {
  std::atomic<int> steps{0};
  TimerThread thread([&] {
    // Again at once twice, then not for an hour.
    return ++steps < 3 ? absl::Now() : absl::Now() + absl::Hours(1);
  });
  thread.Start();
  ASSERT_TRUE(WaitFor([&] { return steps.load() == 3; }, absl::Seconds(20)));
  // Stop wakes it from its hour-long wait: this returns, and no step more.
  thread.Stop();
  EXPECT_EQ(steps.load(), 3);
}

TEST(TimerThreadTest, WakeByAnEarlierTimeRunsTheStepNow) {
  std::atomic<int> steps{0};
  TimerThread thread([&] {
    ++steps;
    return absl::Now() + absl::Hours(1);
  });
  thread.Start();
  ASSERT_TRUE(WaitFor([&] { return steps.load() == 1; }, absl::Seconds(20)));
  // Due before the hour is up: the step runs again at once.
  thread.WakeBy(absl::Now() + absl::Minutes(1));
  EXPECT_TRUE(WaitFor([&] { return steps.load() == 2; }, absl::Seconds(20)));
  thread.Stop();
}

TEST(TimerThreadTest, StopWithoutStartAndTwiceIsFine) {
  TimerThread never([] { return absl::InfiniteFuture(); });
  never.Stop();
  never.Stop();
}

}  // namespace
}  // namespace shmbroker
