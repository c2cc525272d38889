// Event: asyncio.Event. Wait() returns once the event is set; Set() wakes every waiter, in
// the order they began to wait. Loop thread only. Wait() is cancellable.
#ifndef COTASK_SCHEDULER_RUNTIME_EVENT_H_
#define COTASK_SCHEDULER_RUNTIME_EVENT_H_

#include "scheduler/runtime/internal/wait_node.h"

namespace cotask::runtime {

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  bool is_set() const { return set_; }
  void Set();
  void Clear() { set_ = false; }

  class [[nodiscard]] WaitAwaiter : public internal::WaitNode {
   public:
    explicit WaitAwaiter(Event& event) : event_(&event) {}
    bool await_ready() { return BindAndTakeCancel("Event::Wait") || event_->set_; }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(event_->waiters_, at); }
    absl::Status await_resume() { return TakeOutcome(); }

   private:
    Event* event_;
  };
  WaitAwaiter Wait() { return WaitAwaiter(*this); }

 private:
  internal::WaitList waiters_;
  bool set_ = false;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_EVENT_H_
