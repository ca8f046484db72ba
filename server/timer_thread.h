// TimerThread: one background thread that runs a step, sleeps until the
// time the step asks for (or until Stop), and runs it again. The lease
// sweeper and the scavenger are steps on one each. Thread-safe.
#ifndef SHMBROKER_SERVER_TIMER_THREAD_H_
#define SHMBROKER_SERVER_TIMER_THREAD_H_

#include <functional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shmbroker {

class TimerThread {
 public:
  // `step` does the work due and returns when to run next.
  using Step = std::function<absl::Time()>;

  explicit TimerThread(Step step) : step_(std::move(step)) {}
  ~TimerThread() { Stop(); }
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;

  // Runs the first step at once, on the new thread.
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  // Runs the step again now (e.g. an earlier deadline came up).
  void Wake() {
    absl::MutexLock lock(&mu_);
    woken_ = true;
  }
  // Runs the step again now if `when` comes before the time the last step
  // asked for; else it runs by then anyway, and the thread sleeps on (a
  // wake-up costs a context switch, which the hot path should not pay).
  void WakeBy(absl::Time when) {
    absl::MutexLock lock(&mu_);
    if (when < next_) woken_ = true;
  }
  // Wakes the thread and waits for it to end (a step in progress finishes).
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      const absl::Time next = step_();
      absl::MutexLock lock(&mu_);
      next_ = next;
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || woken_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&woken), next);
      if (stopping_) return;
      woken_ = false;
      next_ = absl::InfiniteFuture();  // the step runs: any WakeBy counts
    }
  }

  const Step step_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  // When the sleeping thread runs the step next; InfiniteFuture while it runs
  // (a WakeBy then always wakes it: the step may have read the state first).
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_TIMER_THREAD_H_
