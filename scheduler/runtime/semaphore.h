// Semaphore: asyncio.BoundedSemaphore. Acquire() takes a permit, waiting in FIFO order while
// there is none; Release() hands the permit straight to the longest waiter, so nobody can
// barge in between, and a waiter cancelled after it was handed a permit keeps it (its
// Acquire() returns OK; the cancellation comes at its next await). Releasing more permits
// than were acquired is an error. Lock is the one-permit case with its own error messages.
// Loop thread only. Acquire() is cancellable.
#ifndef COTASK_SCHEDULER_RUNTIME_SEMAPHORE_H_
#define COTASK_SCHEDULER_RUNTIME_SEMAPHORE_H_

#include <cstdint>

#include "scheduler/runtime/internal/wait_node.h"

namespace cotask::runtime {

class Semaphore {
 public:
  // `permits` is both the initial count and the bound.
  explicit Semaphore(int64_t permits);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  int64_t available() const { return available_; }
  int64_t bound() const { return bound_; }
  // True if Acquire() would wait.
  bool locked() const { return available_ == 0 || !waiters_.empty(); }

  // FAILED_PRECONDITION if every permit is already free.
  absl::Status Release();
  // Takes a permit without waiting; false if there is none (or others wait for one).
  bool TryAcquire();

  class [[nodiscard]] AcquireAwaiter : public internal::WaitNode {
   public:
    explicit AcquireAwaiter(Semaphore& semaphore) : semaphore_(&semaphore) {}
    bool await_ready() {
      return BindAndTakeCancel("Semaphore::Acquire") || semaphore_->TryAcquire();
    }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(semaphore_->waiters_, at); }
    absl::Status await_resume() { return TakeOutcome(); }

   private:
    Semaphore* semaphore_;
  };
  AcquireAwaiter Acquire() { return AcquireAwaiter(*this); }

 private:
  internal::WaitList waiters_;
  int64_t available_;
  int64_t bound_;
};

class Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  bool locked() const { return locked_; }
  // FAILED_PRECONDITION if the lock is not held.
  absl::Status Release();
  bool TryAcquire();

  class [[nodiscard]] AcquireAwaiter : public internal::WaitNode {
   public:
    explicit AcquireAwaiter(Lock& lock) : lock_(&lock) {}
    bool await_ready() { return BindAndTakeCancel("Lock::Acquire") || lock_->TryAcquire(); }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(lock_->waiters_, at); }
    absl::Status await_resume() { return TakeOutcome(); }

   private:
    Lock* lock_;
  };
  AcquireAwaiter Acquire() { return AcquireAwaiter(*this); }

 private:
  internal::WaitList waiters_;
  bool locked_ = false;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_SEMAPHORE_H_
