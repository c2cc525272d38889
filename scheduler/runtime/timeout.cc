#include "scheduler/runtime/timeout.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace cotask::runtime::internal {

TimeoutScope::TimeoutScope(EventLoop::Duration delay)
    : TimerNode(&Fire),
      task_(&CurrentTaskOrDie("Timeout")),
      delay_(delay),
      cancelling_at_entry_(task_->cancelling()) {
  EventLoop& loop = task_->loop();
  loop.AddTimer(this, loop.Now() + delay);
}

TimeoutScope::~TimeoutScope() {
  if (scheduled()) task_->loop().RemoveTimer(this);
}

void TimeoutScope::Fire(TimerNode* timer) {
  auto* scope = static_cast<TimeoutScope*>(timer);
  scope->expired_ = true;
  scope->task_->Cancel("timeout");
}

absl::Status TimeoutScope::Finish(const absl::Status& outcome) {
  if (scheduled()) task_->loop().RemoveTimer(this);
  if (!expired_) return outcome;
  if (task_->Uncancel() <= cancelling_at_entry_ && absl::IsCancelled(outcome)) {
    return absl::DeadlineExceededError(
        absl::StrCat("timed out after ", absl::FormatDuration(absl::FromChrono(delay_))));
  }
  return outcome;
}

}  // namespace cotask::runtime::internal
