#include "scheduler/runtime/semaphore.h"

#include "absl/strings/str_cat.h"

namespace cotask::runtime {

Semaphore::Semaphore(int64_t permits) : available_(permits), bound_(permits) {
  COTASK_CHECK(permits >= 0, "a Semaphore needs a permit count >= 0");
}

bool Semaphore::TryAcquire() {
  if (available_ == 0 || !waiters_.empty()) return false;
  --available_;
  return true;
}

absl::Status Semaphore::Release() {
  if (internal::WaitNode* waiter = waiters_.PopFront()) {
    waiter->Wake();  // the permit goes to the waiter; available_ does not change
    return absl::OkStatus();
  }
  if (available_ >= bound_) {
    return absl::FailedPreconditionError(absl::StrCat("Semaphore released too many times: all ",
                                                      bound_, " permits are already free"));
  }
  ++available_;
  return absl::OkStatus();
}

bool Lock::TryAcquire() {
  if (locked_ || !waiters_.empty()) return false;
  locked_ = true;
  return true;
}

absl::Status Lock::Release() {
  if (!locked_) return absl::FailedPreconditionError("Lock released while not held");
  if (internal::WaitNode* waiter = waiters_.PopFront()) {
    waiter->Wake();  // ownership passes to the waiter: the lock stays locked
    return absl::OkStatus();
  }
  locked_ = false;
  return absl::OkStatus();
}

}  // namespace cotask::runtime
