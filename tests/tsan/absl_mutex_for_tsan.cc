// ThreadSanitizer builds only (-DSHMBROKER_TSAN_SHIM=ON, docs/testing.md
// "ThreadSanitizer"): absl::Mutex, absl::CondVar and absl::Notification::
// Notify defined again, over std::shared_mutex and
// std::condition_variable_any, which TSan understands.
//
// Why at link time: Debian's Abseil is not built with -fsanitize=thread, so
// TSan cannot see its Mutex lock and unlock, and reports every access a
// Mutex guards as a race. These functions are out of line in Abseil
// (libabsl_synchronization.so), and every caller reaches them through the
// PLT: our code, Abseil's own Notification and BlockingCounter, and gRPC's
// gpr_mu, gpr_cv and grpc_core::Mutex (libgpr, libgrpc, libgrpc++). A
// definition in the executable comes first in the dynamic linker's search,
// so linked into every executable (the top CMakeLists.txt; the linker
// exports them, as the libraries refer to them) these replace Abseil's for
// every library in the process, and TSan sees every lock gRPC takes too.
// That is what lets tests that link gRPC run under TSan.
//
// The Mutex's one word (mu_) points to its state here, made on first use,
// so that a Mutex made by Abseil's inline constructors (mu_ = 0, also in
// constant initialization) works unchanged. What is left out: debug logging,
// invariant checks and deadlock detection (no-ops), and Await or a CondVar
// wait under a Mutex held as a reader (Abseil allows both; nothing here does
// either).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <shared_mutex>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

// ThreadSanitizer's runtime (libtsan): what the calling thread reads and
// writes between Begin and End is not checked.
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace absl {
ABSL_NAMESPACE_BEGIN
namespace {

struct MutexState {
  std::shared_mutex mu;
  // Any change under the lock may make an awaited Condition true: every
  // unlock wakes every awaiting thread, which evaluates its own Condition.
  std::condition_variable_any awaited;
};

struct CondVarState {
  std::condition_variable_any cv;
};

// The object `word` points to, made the first time it is needed.
//
// The word itself is read and written unchecked: it lives inside the
// object that holds the Mutex, often one of gRPC's, freed by a thread that
// TSan cannot see come after ours (gRPC's reference counts are
// uninstrumented), and TSan would report the free as a race with our last
// read of the word. What a thread must see of the state, its making, is
// handed over explicitly (release before publishing, acquire after reading).
template <typename State>
State* StateOf(std::atomic<intptr_t>& word) {
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  intptr_t now = word.load(std::memory_order_acquire);
  State* made = nullptr;
  if (now == 0) {
    made = new State;  // NOLINT: owned by the word, deleted with it
    // Before it is published: another thread may use it at once.
    __tsan_release(made);
    if (word.compare_exchange_strong(now, reinterpret_cast<intptr_t>(made),
                                     std::memory_order_acq_rel)) {
      now = reinterpret_cast<intptr_t>(made);
    } else {
      delete made;  // another thread's came first
      made = nullptr;
    }
  }
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  State* state = reinterpret_cast<State*>(now);
  if (made == nullptr) __tsan_acquire(state);
  return state;
}

// Unchecked: gRPC ends the life of most of its objects when an atomic
// reference count, in its own uninstrumented code, drops to zero, so TSan
// cannot see that the other threads' last Unlock came before, and would
// report the state's destruction as a race with it. The object around the
// Mutex is still checked when it is freed.
template <typename State>
void DeleteState(std::atomic<intptr_t>& word) {
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  delete reinterpret_cast<State*>(word.exchange(0));
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
}

// std::chrono cannot take absl::InfiniteFuture(): it overflows.
bool Infinite(absl::Time deadline) {
  return deadline == absl::InfiniteFuture();
}

// Waits while `cond` is false, the lock held as given. True when it holds.
template <typename Lock>
bool AwaitOn(MutexState& state, Lock& lock, const Condition& cond,
             absl::Time deadline) {
  const auto holds = [&cond] { return cond.Eval(); };
  if (Infinite(deadline)) {
    state.awaited.wait(lock, holds);
    return true;
  }
  return state.awaited.wait_until(lock, absl::ToChronoTime(deadline), holds);
}

// std's lockables over the Mutex's std::shared_mutex, held in either mode.
struct Exclusive {
  std::shared_mutex& mu;
  void lock() { mu.lock(); }
  void unlock() { mu.unlock(); }
};
struct Shared {
  std::shared_mutex& mu;
  void lock() { mu.lock_shared(); }
  void unlock() { mu.unlock_shared(); }
};

}  // namespace

Mutex::~Mutex() { DeleteState<MutexState>(mu_); }

void Mutex::Lock() { StateOf<MutexState>(mu_)->mu.lock(); }

void Mutex::Unlock() {
  MutexState* state = StateOf<MutexState>(mu_);
  state->awaited.notify_all();
  state->mu.unlock();
}

bool Mutex::TryLock() { return StateOf<MutexState>(mu_)->mu.try_lock(); }

void Mutex::ReaderLock() { StateOf<MutexState>(mu_)->mu.lock_shared(); }

void Mutex::ReaderUnlock() {
  MutexState* state = StateOf<MutexState>(mu_);
  state->awaited.notify_all();
  state->mu.unlock_shared();
}

bool Mutex::ReaderTryLock() {
  return StateOf<MutexState>(mu_)->mu.try_lock_shared();
}

void Mutex::AssertHeld() const {}
void Mutex::AssertReaderHeld() const {}
void Mutex::AssertNotHeld() const {}
void Mutex::EnableDebugLog(const char*) {}
void Mutex::EnableInvariantDebugging(void (*)(void*), void*) {}
void Mutex::ForgetDeadlockInfo() {}

// The Await family is called with the Mutex held exclusively (see the top);
// a Condition is evaluated only by its own thread, under the lock.
void Mutex::Await(const Condition& cond) {
  AwaitWithDeadline(cond, absl::InfiniteFuture());
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  return AwaitWithDeadline(cond, absl::Now() + timeout);
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  MutexState* state = StateOf<MutexState>(mu_);
  Exclusive lock{state->mu};
  return AwaitOn(*state, lock, cond, deadline);
}

void Mutex::LockWhen(const Condition& cond) {
  Lock();
  Await(cond);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  Lock();
  return AwaitWithTimeout(cond, timeout);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  Lock();
  return AwaitWithDeadline(cond, deadline);
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond,
                                       absl::Time deadline) {
  MutexState* state = StateOf<MutexState>(mu_);
  state->mu.lock_shared();
  Shared lock{state->mu};
  return AwaitOn(*state, lock, cond, deadline);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  ReaderLockWhenWithDeadline(cond, absl::InfiniteFuture());
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond,
                                      absl::Duration timeout) {
  return ReaderLockWhenWithDeadline(cond, absl::Now() + timeout);
}

CondVar::~CondVar() { DeleteState<CondVarState>(cv_); }

void CondVar::Wait(Mutex* mu) { WaitWithDeadline(mu, absl::InfiniteFuture()); }

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  return WaitWithDeadline(mu, absl::Now() + timeout);
}

// True when the time ran out (as Abseil's). The Mutex is held exclusively.
bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  CondVarState* state = StateOf<CondVarState>(cv_);
  MutexState* held = StateOf<MutexState>(mu->mu_);
  // Its Unlock would wake the Mutex's awaiting threads; so does this.
  held->awaited.notify_all();
  Exclusive lock{held->mu};
  if (Infinite(deadline)) {
    state->cv.wait(lock);
    return false;
  }
  return state->cv.wait_until(lock, absl::ToChronoTime(deadline)) ==
         std::cv_status::timeout;
}

void CondVar::Signal() { StateOf<CondVarState>(cv_)->cv.notify_one(); }
void CondVar::SignalAll() { StateOf<CondVarState>(cv_)->cv.notify_all(); }
void CondVar::EnableDebugLog(const char*) {}

// Abseil's stores the flag in its own, uninstrumented code, where TSan would
// not see HasBeenNotified()'s (inline, instrumented) load synchronize with
// it.
void Notification::Notify() {
  MutexLock lock(&mutex_);
  notified_yet_.store(true, std::memory_order_release);
}

ABSL_NAMESPACE_END
}  // namespace absl
