// ThreadSanitizer builds only (-DSHMBROKER_TSAN_SHIM=ON, docs/testing.md
// "ThreadSanitizer"): a stand-in for Abseil's absl/synchronization/mutex.h,
// found before the system's because this directory comes first on the
// include path. Debian's Abseil is not built with -fsanitize=thread, so TSan
// cannot see absl::Mutex's lock and unlock and reports every guarded access
// as a race. This one is std::shared_mutex and std::condition_variable_any,
// which TSan understands, with the part of absl::Mutex's API the project
// uses: Lock/Unlock, ReaderLock, Await, LockWhen, AwaitWithDeadline/Timeout,
// Condition (a bool*, a function and argument, or a functor), CondVar, the
// scoped locks, and constant initialization (absl::kConstInit).
//
// It must be absl::Mutex itself (Abseil's headers forward-declare that
// class), so its classes have hidden visibility: its inline functions never
// interpose on the real ones in libabsl_*.so. It keeps sizeof(absl::Mutex)
// (one pointer), as Abseil's headers size storage by it. Only code that
// shares no absl::Mutex with an uninstrumented library may use it: core/,
// server/'s shmbroker_daemon, the client's fd channel and their tests, not
// the gRPC edges of client/ and server/ (gRPC's grpc::internal::Mutex wraps
// an absl::Mutex inside objects libgrpc++ locks itself).
#ifndef ABSL_SYNCHRONIZATION_MUTEX_H_
#define ABSL_SYNCHRONIZATION_MUTEX_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <shared_mutex>

#include "absl/base/config.h"
#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace absl {
ABSL_NAMESPACE_BEGIN
#define SHMBROKER_TSAN_SHIM_HIDDEN __attribute__((visibility("hidden")))

class SHMBROKER_TSAN_SHIM_HIDDEN Condition {
 public:
  explicit Condition(const bool* cond) : eval_([cond] { return *cond; }) {}
  template <typename T>
  Condition(bool (*func)(T*), T* arg)
      : eval_([func, arg] { return func(arg); }) {}
  template <typename T>
  Condition(T* object, bool (T::*method)())
      : eval_([object, method] { return (object->*method)(); }) {}
  template <typename T>
  Condition(const T* object, bool (T::*method)() const)
      : eval_([object, method] { return (object->*method)(); }) {}
  // A functor, e.g. a lambda, called as (*functor)() (server/timer_thread.h).
  template <typename T>
  explicit Condition(const T* functor)
      : eval_([functor] { return (*functor)(); }) {}
  bool Eval() const { return eval_(); }

 private:
  std::function<bool()> eval_;
};

class CondVar;

class SHMBROKER_TSAN_SHIM_HIDDEN ABSL_LOCKABLE Mutex {
 public:
  Mutex() : impl_(new Impl) {}
  // For ABSL_CONST_INIT statics (constinit): the state is made on first use.
  explicit constexpr Mutex(absl::ConstInitType) : impl_(nullptr) {}
  ~Mutex() { delete impl_.load(); }
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { impl()->mu.lock(); }
  // Any change under the lock may make an awaited Condition true.
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    impl()->awaited.notify_all();
    impl()->mu.unlock();
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return impl()->mu.try_lock();
  }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { impl()->mu.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { impl()->mu.unlock_shared(); }
  void WriterLock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { Lock(); }
  void WriterUnlock() ABSL_UNLOCK_FUNCTION() { Unlock(); }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}
  void AssertReaderHeld() const ABSL_ASSERT_SHARED_LOCK() {}
  void AssertNotHeld() const {}

  void Await(const Condition& cond) {
    impl()->awaited.wait(impl()->mu, [&] { return cond.Eval(); });
  }
  void LockWhen(const Condition& cond) ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    Lock();
    Await(cond);
  }
  bool AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
    return impl()->awaited.wait_until(impl()->mu, absl::ToChronoTime(deadline),
                                      [&] { return cond.Eval(); });
  }
  bool AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
    return AwaitWithDeadline(cond, absl::Now() + timeout);
  }
  bool LockWhenWithDeadline(const Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    Lock();
    return AwaitWithDeadline(cond, deadline);
  }
  bool LockWhenWithTimeout(const Condition& cond, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    return LockWhenWithDeadline(cond, absl::Now() + timeout);
  }

 private:
  friend class CondVar;
  struct Impl {
    std::shared_mutex mu;
    std::condition_variable_any awaited;
  };
  Impl* impl() const {
    Impl* impl = impl_.load(std::memory_order_acquire);
    if (impl != nullptr) return impl;
    Impl* made = new Impl;
    if (impl_.compare_exchange_strong(impl, made, std::memory_order_acq_rel)) {
      return made;
    }
    delete made;  // another thread's came first
    return impl;
  }
  mutable std::atomic<Impl*> impl_;
};

class SHMBROKER_TSAN_SHIM_HIDDEN CondVar {
 public:
  void Wait(Mutex* mu) { cv_.wait(mu->impl()->mu); }
  // True when the time ran out (as absl::CondVar).
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline) {
    return cv_.wait_until(mu->impl()->mu, absl::ToChronoTime(deadline)) ==
           std::cv_status::timeout;
  }
  bool WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
    return WaitWithDeadline(mu, absl::Now() + timeout);
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

class SHMBROKER_TSAN_SHIM_HIDDEN ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  MutexLock(Mutex* mu, const Condition& cond) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->LockWhen(cond);
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class SHMBROKER_TSAN_SHIM_HIDDEN ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class SHMBROKER_TSAN_SHIM_HIDDEN ABSL_SCOPED_LOCKABLE WriterMutexLock {
 public:
  explicit WriterMutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->WriterLock();
  }
  ~WriterMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->WriterUnlock(); }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class SHMBROKER_TSAN_SHIM_HIDDEN ABSL_SCOPED_LOCKABLE ReleasableMutexLock {
 public:
  explicit ReleasableMutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->Lock();
  }
  ~ReleasableMutexLock() ABSL_UNLOCK_FUNCTION() {
    if (mu_ != nullptr) mu_->Unlock();
  }
  void Release() ABSL_UNLOCK_FUNCTION() {
    mu_->Unlock();
    mu_ = nullptr;
  }

 private:
  Mutex* mu_;
};

#undef SHMBROKER_TSAN_SHIM_HIDDEN
ABSL_NAMESPACE_END
}  // namespace absl

#endif  // ABSL_SYNCHRONIZATION_MUTEX_H_
