#include "scheduler/runtime/task.h"

#include <string>

#include "scheduler/runtime/task_group.h"

namespace cotask::runtime {
namespace internal {

TaskState::TaskState(EventLoop& loop, std::coroutine_handle<> root)
    : loop_(&loop), root_(root), resume_(root) {}

TaskState::~TaskState() {
  COTASK_CHECK(!root_, "a task's state was destroyed while its coroutine was alive");
}

bool TaskState::Cancel(absl::string_view message) {
  if (done_) return false;
  ++cancel_requests_;
  cancel_message_.assign(message.data(), message.size());
  // One delivery at a time: further requests while one is pending or being delivered only
  // count (asyncio throws a single CancelledError however often cancel() is called).
  if (cancel_pending_ || cancel_delivering_) return true;
  if (CancelHook* hook = suspended_at_; hook != nullptr) {
    suspended_at_ = nullptr;
    cancel_delivering_ = true;
    hook->OnCancel();
  } else {
    cancel_pending_ = true;
  }
  return true;
}

int TaskState::Uncancel() {
  if (cancel_requests_ > 0) --cancel_requests_;
  // As Python 3.13: once no request is left, one not yet delivered is withdrawn.
  if (cancel_requests_ == 0) cancel_pending_ = false;
  return cancel_requests_;
}

absl::Status TaskState::CancelledStatus() const {
  return absl::CancelledError(cancel_message_.empty() ? "task cancelled" : cancel_message_);
}

void TaskState::Step() {
  COTASK_CHECK(current_task == nullptr, "a task step ran inside another task's step");
  queued_ = false;
  if (!started_) {
    started_ = true;
    if (cancel_pending_) {
      // Cancelled before it started: the body never runs (as in asyncio).
      cancel_pending_ = false;
      SetResult(CancelledStatus());
      root_.destroy();
      root_ = nullptr;
      Complete();
      return;
    }
  }
  current_task = this;
  resume_.resume();
  current_task = nullptr;
  if (!root_.done()) return;
  COTASK_CHECK(TakeResultFromFrame(), "a cotask coroutine ended without co_return");
  // A request that arrived after the body's last await still cancels it, as in asyncio; an
  // error the body returned takes precedence.
  if (cancel_pending_ && status().ok()) SetResult(CancelledStatus());
  cancel_pending_ = false;
  root_.destroy();
  root_ = nullptr;
  Complete();
}

void TaskState::Complete() {
  done_ = true;
  ListNode<LoopTasksTag>::Unlink();
  if (group_ != nullptr) {
    ListNode<GroupChildrenTag>::Unlink();
    group_->OnChildDone(*this);
  }
  while (TaskWaiter* waiter = waiters_.PopFront()) waiter->OnTaskDone(*this);
  Release();  // the running reference; may delete this
}

void TaskState::Abandon(const absl::Status& why) {
  if (done_) return;
  done_ = true;
  ListNode<LoopTasksTag>::Unlink();
  ListNode<GroupChildrenTag>::Unlink();
  group_ = nullptr;
  waiters_.Clear();
  SetResult(why);
  if (root_) {
    std::coroutine_handle<> root = std::exchange(root_, nullptr);
    root.destroy();
  }
  Release();
}

TaskState& CurrentTaskOrDie(const char* what) {
  TaskState* task = current_task;
  if (task == nullptr) {
    std::string message = std::string(what) + " outside a cotask task";
    ::cotask::internal::CheckFailed(__FILE__, __LINE__, "CurrentTask() != nullptr",
                                    message.c_str());
  }
  return *task;
}

void PromiseBase::unhandled_exception() noexcept {
  ::cotask::internal::CheckFailed(__FILE__, __LINE__, "no exception",
                                  "an exception escaped a cotask coroutine; cotask coroutines "
                                  "report failures as absl::Status values");
}

}  // namespace internal

absl::Status TaskRef::status() const {
  if (!state_->done()) return absl::FailedPreconditionError("the task has not ended yet");
  return state_->status();
}

}  // namespace cotask::runtime
