// One task waiting in an Event, Lock, Semaphore or Queue: a node in the primitive's FIFO wait
// list that cancellation can pull out. The primitive hands the waiter what it waits for
// (a permit, an item, a slot) before waking it, so a waiter cancelled after its wake-up keeps
// what it was given and nothing is lost (the bug CPython's Semaphore once had).
#ifndef COTASK_SCHEDULER_RUNTIME_INTERNAL_WAIT_NODE_H_
#define COTASK_SCHEDULER_RUNTIME_INTERNAL_WAIT_NODE_H_

#include <coroutine>

#include "absl/status/status.h"
#include "scheduler/runtime/internal/intrusive_list.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime::internal {

class WaitNode : public CancelHook, public ListNode<> {
 public:
  WaitNode() = default;
  // Awaiters are moved only before they are awaited (e.g. into a Timeout's frame).
  WaitNode(WaitNode&& other) noexcept {
    COTASK_CHECK(!other.linked(), "moving an awaiter that is waiting");
  }

  // For await_ready: binds to the current task; true if a cancellation is to be delivered now.
  bool BindAndTakeCancel(const char* what) {
    task_ = &CurrentTaskOrDie(what);
    cancelled_ = task_->TakePendingCancel();
    return cancelled_;
  }
  void SuspendOn(IntrusiveList<WaitNode>& waiters, std::coroutine_handle<> at) {
    waiters.PushBack(this);
    task_->Suspend(at, this);
  }
  // The primitive gave this waiter what it waited for (or an error): resume it.
  void Wake(absl::Status error = absl::OkStatus()) {
    Unlink();
    error_ = std::move(error);
    task_->Wake();
  }
  // The await's outcome.
  absl::Status TakeOutcome() {
    if (cancelled_) return task_->TakeCancelDelivery();
    return std::move(error_);
  }
  bool cancelled() const { return cancelled_; }

  void OnCancel() override {
    Unlink();
    cancelled_ = true;
    task_->WakeAfterCancel();
  }

 protected:
  ~WaitNode() = default;

  TaskState* task_ = nullptr;
  absl::Status error_;
  bool cancelled_ = false;
};

using WaitList = IntrusiveList<WaitNode>;

}  // namespace cotask::runtime::internal

#endif  // COTASK_SCHEDULER_RUNTIME_INTERNAL_WAIT_NODE_H_
