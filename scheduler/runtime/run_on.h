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
//
// StartOn starts the same call at once and hands back a RemoteCall to await later (once), so
// that the caller can do something else meanwhile (asyncio's run_coroutine_threadsafe future):
//
//   RemoteCall<Batch> next = StartOn(engine_loop, engine.NextEvents(...));
//   ...                                 // write the previous batch
//   absl::StatusOr<Batch> batch = co_await next;
//
// The outcome waits in the call until awaited. RemoteCall::Cancel cancels the remote task; a
// RemoteCall destroyed before its outcome came cancels it and drops the outcome. Both belong
// to the caller's loop thread.
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
// (whose mutex orders them): `remote`, `started`, `cancel_before_start` and `cancel_message`
// only on the target's thread, the rest on the origin's except `result`, written on the
// target's before the Post that hands it back.
template <class T>
struct CrossLoopCall {
  EventLoop* origin = nullptr;
  TaskState* waiter = nullptr;  // the task awaiting the outcome, once it awaits
  bool forwarded = false;       // the waiter was cancelled and the cancel sent on
  bool arrived = false;         // `result` is here
  std::optional<ResultOf<T>> result;
  TaskRef remote;        // the task running the coroutine, until it has reported
  bool started = false;  // it has taken its first step
  bool cancel_before_start = false;
  std::string cancel_message;

  // On the target's thread: a cancel for the remote task. One that has not started yet is
  // not cancelled (a task cancelled before its first step never runs, so it could not report
  // back): it reports CANCELLED when it starts, without running the coroutine.
  void CancelRemote(const std::string& message) {
    if (result.has_value() || !remote) return;  // it has reported already
    if (!started) {
      cancel_before_start = true;
      cancel_message = message;
      return;
    }
    remote.Cancel(message);
  }

  // On the origin's thread: the outcome is here.
  void Finish() {
    arrived = true;
    if (waiter == nullptr) return;  // not awaited (yet, or any more)
    if (forwarded) {
      waiter->WakeAfterCancel();
    } else {
      waiter->Wake();
    }
  }
};

// The remote task: runs the coroutine inside itself (one task per call, not a wrapper and a
// task for the coroutine) and always reports back, whatever its own cancellation does. A
// cancel is delivered to the coroutine's await as to any task's; one that came before the
// first step means the coroutine never runs and the outcome is CANCELLED.
template <class T>
Task<void> RunRemote(std::shared_ptr<CrossLoopCall<T>> call, Task<T> task) {
  call->started = true;
  if (call->cancel_before_start) {
    call->result.emplace(absl::CancelledError(call->cancel_message));
    task = Task<T>();  // the coroutine's frame, destroyed unrun on this thread
  } else {
    ResultOf<T> result = co_await std::move(task);
    call->result.emplace(std::move(result));
  }
  call->remote = TaskRef();  // this thread's reference, dropped on this thread
  EventLoop* origin = call->origin;
  if (origin == EventLoop::Current()) {
    call->Finish();
  } else {
    origin->Post([call = std::move(call)] { call->Finish(); });
  }
  co_return absl::OkStatus();
}

// Starts `task` on `target` for `call`, from the origin's thread (call->origin set).
template <class T>
void StartRemote(EventLoop& target, Task<T> task, const std::shared_ptr<CrossLoopCall<T>>& call) {
  if (&target == call->origin) {
    call->remote = target.CreateTask(RunRemote(call, std::move(task)));
    return;
  }
  const bool posted = target.Post([target = &target, call, task = std::move(task)]() mutable {
    call->remote = target->CreateTask(RunRemote(call, std::move(task)));
  });
  if (!posted) {
    call->result.emplace(absl::UnavailableError("the target event loop has shut down"));
    call->arrived = true;
  }
}

// Sends a cancel for the call's remote task, from the origin's thread.
template <class T>
void CancelRemote(EventLoop& target, std::shared_ptr<CrossLoopCall<T>> call, std::string message) {
  auto cancel = [call, message = std::move(message)] { call->CancelRemote(message); };
  if (&target == call->origin) {
    cancel();
  } else {
    target.Post(std::move(cancel));
  }
}

// Awaits a call's outcome; for RunOn, starts it first (unless a cancel is already due: then it
// never starts). Cancelling the awaiting task forwards the cancel and goes on waiting.
template <class T>
class CallAwaiter final : public CancelHook {
 public:
  CallAwaiter(EventLoop& target, std::shared_ptr<CrossLoopCall<T>> call, Task<T> to_start = {})
      : target_(&target), call_(std::move(call)), to_start_(std::move(to_start)) {}

  bool await_ready() {
    self_ = &CurrentTaskOrDie("RunOn");
    if (self_->TakePendingCancel()) {
      cancelled_ = true;
      return true;
    }
    if (to_start_) {
      call_->origin = &self_->loop();
      StartRemote(*target_, std::move(to_start_), call_);
    }
    return call_->arrived;
  }
  void await_suspend(std::coroutine_handle<> at) {
    call_->waiter = self_;
    self_->Suspend(at, this);
  }
  ResultOf<T> await_resume() {
    if (cancelled_) return self_->TakeCancelDelivery();
    call_->waiter = nullptr;
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
    CancelRemote(*target_, call_, self_->cancel_message());
  }

 private:
  EventLoop* target_;
  std::shared_ptr<CrossLoopCall<T>> call_;
  Task<T> to_start_;
  TaskState* self_ = nullptr;
  bool cancelled_ = false;
};

}  // namespace internal

template <class T>
internal::CallAwaiter<T> RunOn(EventLoop& target, Task<T> task) {
  return internal::CallAwaiter<T>(target, std::make_shared<internal::CrossLoopCall<T>>(),
                                  std::move(task));
}

// A call started by StartOn. Move-only; the caller's loop thread only.
template <class T>
class [[nodiscard]] RemoteCall {
 public:
  RemoteCall() = default;
  RemoteCall(EventLoop& target, Task<T> task)
      : target_(&target), call_(std::make_shared<internal::CrossLoopCall<T>>()) {
    call_->origin = EventLoop::Current();
    COTASK_CHECK(call_->origin != nullptr, "StartOn outside a running event loop");
    internal::StartRemote(target, std::move(task), call_);
  }
  RemoteCall(RemoteCall&& other) noexcept : target_(other.target_), call_(std::move(other.call_)) {}
  RemoteCall& operator=(RemoteCall&& other) noexcept {
    if (this != &other) {
      Drop();
      target_ = other.target_;
      call_ = std::move(other.call_);
    }
    return *this;
  }
  ~RemoteCall() { Drop(); }

  explicit operator bool() const { return call_ != nullptr; }
  // Cancels the remote task (a no-op once its outcome has come).
  void Cancel(std::string message) {
    if (call_ != nullptr && !call_->arrived) {
      internal::CancelRemote(*target_, call_, std::move(message));
    }
  }
  // Its outcome (moved out: await it once), as co_await RunOn(...) would have given it.
  internal::CallAwaiter<T> operator co_await() const {
    COTASK_CHECK(call_ != nullptr, "awaiting an empty RemoteCall");
    return internal::CallAwaiter<T>(*target_, call_);
  }

 private:
  void Drop() {
    Cancel("the caller has gone");
    call_.reset();
  }

  EventLoop* target_ = nullptr;
  std::shared_ptr<internal::CrossLoopCall<T>> call_;
};

template <class T>
RemoteCall<T> StartOn(EventLoop& target, Task<T> task) {
  return RemoteCall<T>(target, std::move(task));
}

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_RUN_ON_H_
