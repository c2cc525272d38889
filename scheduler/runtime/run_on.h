// RunOn: awaits a coroutine that runs as a task on another EventLoop, on that loop's thread
// (asyncio's run_coroutine_threadsafe, awaited).
//
//   absl::StatusOr<Reply> reply = co_await RunOn(engine_loop, engine.Handle(request));
//
// The coroutine is created on the calling thread (its arguments are copied into its frame
// there) but only ever resumed on `target`'s thread, so it must take its arguments by value and
// touch only what belongs to `target`. Its outcome comes back to the awaiting task through
// Post. Cancelling the awaiting task cancels the remote task (through a Post) and goes on
// waiting for its outcome, as awaiting a task does. If `target` has been shut down, the
// outcome is UNAVAILABLE at once. If `target` is the caller's own loop (a server whose calls
// are served on the engine's loop), nothing is posted: the task is created, and its outcome
// and a cancel are handed over, directly; the semantics are the same.
#ifndef COTASK_SCHEDULER_RUNTIME_RUN_ON_H_
#define COTASK_SCHEDULER_RUNTIME_RUN_ON_H_

#include <coroutine>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/result.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {
namespace internal {

// What the two loops share. Fields are touched by one thread at a time, handed over by Post
// (whose mutex orders them): `remote` only on the target's thread, the rest on the origin's
// except `result`, written on the target's before the Post that hands it back.
template <class T>
struct CrossLoopCall {
  EventLoop* origin;
  TaskState* waiter = nullptr;
  bool forwarded = false;  // the waiter was cancelled and the cancel sent on
  std::optional<ResultOf<T>> result;
  TaskRef remote;
  bool cancel_before_start = false;
  std::string cancel_message;

  void Finish() {
    if (forwarded) {
      waiter->WakeAfterCancel();
    } else {
      waiter->Wake();
    }
  }
};

// Runs the coroutine as a task of its own, so that a cancellation reaches it even before it
// starts (it then never runs, and its outcome is CANCELLED); this wrapper is never cancelled
// and always reports back.
template <class T>
Task<void> RunRemote(std::shared_ptr<CrossLoopCall<T>> call, Task<T> task) {
  TaskHandle<T> inner = CreateTask(std::move(task));
  call->remote = inner;
  if (call->cancel_before_start) inner.Cancel(call->cancel_message);
  ResultOf<T> result = co_await TakeOutcome(inner);  // (only this task reads it)
  call->result.emplace(std::move(result));
  call->remote = TaskRef();  // this thread's references, dropped on this thread
  inner = TaskHandle<T>();
  EventLoop* origin = call->origin;
  if (origin == EventLoop::Current()) {
    call->Finish();
  } else {
    origin->Post([call = std::move(call)] { call->Finish(); });
  }
  co_return absl::OkStatus();
}

template <class T>
class RunOnAwaiter final : public CancelHook {
 public:
  RunOnAwaiter(EventLoop& target, Task<T> task)
      : target_(&target), task_(std::move(task)), call_(std::make_shared<CrossLoopCall<T>>()) {}

  bool await_ready() {
    self_ = &CurrentTaskOrDie("RunOn");
    if (self_->TakePendingCancel()) {
      cancelled_ = true;
      return true;
    }
    return false;
  }
  bool await_suspend(std::coroutine_handle<> at) {
    call_->origin = &self_->loop();
    call_->waiter = self_;
    if (target_ == call_->origin) {
      target_->CreateTask(RunRemote(call_, std::move(task_)));
      self_->Suspend(at, this);
      return true;
    }
    const bool posted =
        target_->Post([target = target_, call = call_, task = std::move(task_)]() mutable {
          target->CreateTask(RunRemote(call, std::move(task)));
        });
    if (!posted) {
      call_->result.emplace(absl::UnavailableError("the target event loop has shut down"));
      return false;
    }
    self_->Suspend(at, this);
    return true;
  }
  ResultOf<T> await_resume() {
    if (cancelled_) return self_->TakeCancelDelivery();
    if (call_->forwarded) {
      if (absl::IsCancelled(StatusOf(*call_->result))) {
        self_->EndCancelDelivery();
      } else {
        self_->RestorePendingCancel();
      }
    }
    return std::move(*call_->result);
  }

  void OnCancel() override {
    call_->forwarded = true;
    auto cancel = [call = call_, message = self_->cancel_message()] {
      if (call->remote) {
        call->remote.Cancel(message);
      } else if (!call->result.has_value()) {
        call->cancel_before_start = true;
        call->cancel_message = message;
      }
    };
    if (target_ == call_->origin) {
      cancel();
    } else {
      target_->Post(std::move(cancel));
    }
  }

 private:
  EventLoop* target_;
  Task<T> task_;
  std::shared_ptr<CrossLoopCall<T>> call_;
  TaskState* self_ = nullptr;
  bool cancelled_ = false;
};

}  // namespace internal

template <class T>
internal::RunOnAwaiter<T> RunOn(EventLoop& target, Task<T> task) {
  return internal::RunOnAwaiter<T>(target, std::move(task));
}

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_RUN_ON_H_
