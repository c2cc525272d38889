#include "scheduler/runtime/wait.h"

namespace cotask::runtime::internal {

WaitCondition::WaitCondition(std::vector<TaskState*> tasks, ReturnWhen return_when,
                             std::optional<EventLoop::Duration> timeout)
    : TimerNode(&Fire),
      tasks_(std::move(tasks)),
      watches_(new Watch[tasks_.size()]),
      return_when_(return_when),
      timeout_(timeout) {}

WaitCondition::~WaitCondition() { StopWatching(); }

bool WaitCondition::Ends(const TaskState& task) const {
  switch (return_when_) {
    case ReturnWhen::kFirstCompleted:
      return true;
    case ReturnWhen::kFirstException:
      return !task.status().ok() && !task.cancelled();
    case ReturnWhen::kAllCompleted:
      return false;
  }
  return false;
}

bool WaitCondition::await_ready() {
  self_ = &CurrentTaskOrDie("Wait");
  cancelled_ = self_->TakePendingCancel();
  if (cancelled_) return true;
  bool holds = false;
  for (const TaskState* task : tasks_) {
    if (!task->done()) continue;
    ++done_;
    holds = holds || Ends(*task);
  }
  return holds || done_ == tasks_.size() ||
         (timeout_.has_value() && *timeout_ <= EventLoop::Duration::zero());
}

void WaitCondition::await_suspend(std::coroutine_handle<> at) {
  for (size_t i = 0; i < tasks_.size(); ++i) {
    if (tasks_[i]->done()) continue;
    watches_[i].owner = this;
    tasks_[i]->AddWaiter(&watches_[i]);
  }
  if (timeout_.has_value()) self_->loop().AddTimer(this, self_->loop().Now() + *timeout_);
  self_->Suspend(at, this);
}

absl::Status WaitCondition::await_resume() {
  if (cancelled_) return self_->TakeCancelDelivery();
  return absl::OkStatus();
}

void WaitCondition::StopWatching() {
  for (size_t i = 0; i < tasks_.size(); ++i) watches_[i].Unlink();
  if (scheduled()) self_->loop().RemoveTimer(this);
}

void WaitCondition::OnTaskDone(TaskState& task) {
  ++done_;
  if (!Ends(task) && done_ < tasks_.size()) return;
  StopWatching();
  self_->Wake();
}

void WaitCondition::OnCancel() {
  StopWatching();
  cancelled_ = true;
  self_->WakeAfterCancel();
}

void WaitCondition::Fire(TimerNode* timer) {
  auto* condition = static_cast<WaitCondition*>(timer);
  condition->StopWatching();
  condition->self_->Wake();
}

}  // namespace cotask::runtime::internal
