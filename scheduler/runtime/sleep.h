// Sleep: asyncio.sleep. Sleep(d) resumes after d (at the loop's timer granularity, about a
// millisecond); Sleep(0) or less only yields: the task goes to the back of the ready queue.
// Cancellable: a cancelled Sleep returns CANCELLED at once and its timer is removed.
#ifndef COTASK_SCHEDULER_RUNTIME_SLEEP_H_
#define COTASK_SCHEDULER_RUNTIME_SLEEP_H_

#include <coroutine>

#include "absl/status/status.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/internal/timer_heap.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

class [[nodiscard]] SleepAwaiter final : public internal::CancelHook, private internal::TimerNode {
 public:
  // Either a delay from when it is awaited, or a fixed deadline.
  explicit SleepAwaiter(EventLoop::Duration delay) : TimerNode(&Fire), delay_(delay) {}
  explicit SleepAwaiter(EventLoop::TimePoint deadline)
      : TimerNode(&Fire), deadline_(deadline), absolute_(true) {}
  SleepAwaiter(SleepAwaiter&& other) noexcept
      : TimerNode(&Fire),
        delay_(other.delay_),
        deadline_(other.deadline_),
        absolute_(other.absolute_) {
    COTASK_CHECK(!other.scheduled(), "moving a Sleep that is being awaited");
  }
  ~SleepAwaiter() {
    if (scheduled()) task_->loop().RemoveTimer(this);
  }

  bool await_ready() {
    task_ = &internal::CurrentTaskOrDie("Sleep");
    cancelled_ = task_->TakePendingCancel();
    return cancelled_;
  }
  void await_suspend(std::coroutine_handle<> at) {
    EventLoop& loop = task_->loop();
    if (!absolute_ && delay_ <= EventLoop::Duration::zero()) {
      task_->Suspend(at, nullptr);  // a yield: already due, nothing to interrupt
      task_->Wake();
      return;
    }
    loop.AddTimer(this, absolute_ ? deadline_ : loop.Now() + delay_);
    task_->Suspend(at, this);
  }
  absl::Status await_resume() {
    if (cancelled_) return task_->TakeCancelDelivery();
    return absl::OkStatus();
  }

  void OnCancel() override {
    task_->loop().RemoveTimer(this);
    cancelled_ = true;
    task_->WakeAfterCancel();
  }

 private:
  static void Fire(TimerNode* timer) { static_cast<SleepAwaiter*>(timer)->task_->Wake(); }

  internal::TaskState* task_ = nullptr;
  EventLoop::Duration delay_{};
  EventLoop::TimePoint deadline_{};
  bool absolute_ = false;
  bool cancelled_ = false;
};

inline SleepAwaiter Sleep(EventLoop::Duration delay) { return SleepAwaiter(delay); }
inline SleepAwaiter SleepUntil(EventLoop::TimePoint deadline) { return SleepAwaiter(deadline); }

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_SLEEP_H_
