// Task<T>: a lazy coroutine whose outcome is a value, an error status, or a cancellation;
// TaskHandle<T>: a task running on an EventLoop (asyncio.Task).
//
//   Task<int> Answer() { COTASK_CO_RETURN_IF_ERROR(co_await Sleep(10ms)); co_return 42; }
//   TaskHandle<int> t = CreateTask(Answer());   // starts in a later loop iteration
//   absl::StatusOr<int> v = co_await t;         // waits for it to end
//
// A Task<T> does nothing until it is awaited (then it runs inside the awaiting task, as
// `await coro()` does) or handed to CreateTask (then it is a task of its own).
//
// Cancellation (asyncio's model): Cancel(msg) asks a task to stop. If the task is suspended at
// a cancellable await (Sleep, Event/Lock/Semaphore/Queue waits, awaiting another task), that
// await resumes, exactly once, with CANCELLED carrying msg. If it is not suspended there (it is
// running, or its await has already completed and it waits for its turn), the request is
// delivered by its next cancellable await, which then returns CANCELLED at once. An await that
// completed before the cancel keeps its result: a permit or an item handed over is never lost.
// A task that ends with a request still undelivered ends CANCELLED; one cancelled before it
// started never runs. A task may ignore a delivered cancellation and go on, as asyncio lets
// code catch CancelledError. cancelling() and Uncancel() count requests as asyncio's do, so
// that Timeout and TaskGroup can tell their own cancellations from anyone else's.
//
// Thread-safety: tasks and their handles belong to their loop's thread.
#ifndef COTASK_SCHEDULER_RUNTIME_TASK_H_
#define COTASK_SCHEDULER_RUNTIME_TASK_H_

#include <coroutine>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/runtime/check.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/internal/intrusive_list.h"
#include "scheduler/runtime/result.h"

namespace cotask::runtime {

class TaskGroup;

namespace internal {

struct LoopTasksTag {};
struct GroupChildrenTag {};

// A suspension point that cancellation can interrupt.
class CancelHook {
 public:
  // The task suspended here was cancelled: stop waiting (unlink from wait lists, remove
  // timers) and resume the task exactly once, with TaskState::TakeCancelDelivery() as the
  // await's outcome. An await that forwards the cancellation elsewhere (awaiting another task)
  // may instead keep waiting.
  virtual void OnCancel() = 0;

 protected:
  ~CancelHook() = default;
};

// Something waiting for a task to end (asyncio's done callbacks). Unlinks itself if destroyed.
class TaskWaiter : public ListNode<> {
 public:
  TaskWaiter() = default;
  // Awaiters are moved only before they are awaited (e.g. into a Timeout's frame).
  TaskWaiter(TaskWaiter&& other) noexcept {
    COTASK_CHECK(!other.linked(), "moving a waiter that is waiting");
  }
  virtual void OnTaskDone(TaskState& task) = 0;

 protected:
  ~TaskWaiter() = default;
};

// The untyped part of a task: its frame, its cancellation state, who waits for it.
class TaskState : public ListNode<LoopTasksTag>, public ListNode<GroupChildrenTag> {
 public:
  TaskState(EventLoop& loop, std::coroutine_handle<> root);
  TaskState(const TaskState&) = delete;
  TaskState& operator=(const TaskState&) = delete;

  EventLoop& loop() const { return *loop_; }
  bool done() const { return done_; }
  // The outcome's status; OK while the task runs.
  virtual const absl::Status& status() const = 0;
  bool cancelled() const { return done_ && absl::IsCancelled(status()); }

  bool Cancel(absl::string_view message);
  int cancelling() const { return cancel_requests_; }
  int Uncancel();
  const std::string& cancel_message() const { return cancel_message_; }

  // --- For awaitables (the runtime's own and those built on it). ---

  // True, consuming it, if a cancellation is waiting to be delivered: the calling await must
  // then not suspend and must return TakeCancelDelivery().
  bool TakePendingCancel() {
    if (!cancel_pending_) return false;
    cancel_pending_ = false;
    return true;
  }
  // The outcome of an await that was cancelled.
  absl::Status TakeCancelDelivery() {
    EndCancelDelivery();
    return CancelledStatus();
  }
  // The cancellation reached the body some other way (an awaited task ended cancelled).
  void EndCancelDelivery() { cancel_delivering_ = false; }
  // The cancellation forwarded by an await did not reach the body (the awaited task ignored
  // it): deliver it at the next await.
  void RestorePendingCancel() {
    cancel_delivering_ = false;
    cancel_pending_ = true;
  }
  absl::Status CancelledStatus() const;

  // Records where the task suspends and what cancelling it there means (null: not
  // cancellable, e.g. it is already due to resume).
  void Suspend(std::coroutine_handle<> at, CancelHook* hook) {
    resume_ = at;
    suspended_at_ = hook;
  }
  // The await completed: resume the task in a later iteration.
  void Wake() {
    suspended_at_ = nullptr;
    Enqueue();
  }
  // From CancelHook::OnCancel, or from a forwarded wait's completion.
  void WakeAfterCancel() { Enqueue(); }

  void AddWaiter(TaskWaiter* waiter) { waiters_.PushBack(waiter); }

  void AddRef() { ++refs_; }
  void Release() {
    if (--refs_ == 0) delete this;
  }

  // --- For the loop and TaskGroup. ---
  void Step();
  void Abandon(const absl::Status& why);
  TaskGroup* group() const { return group_; }
  void set_group(TaskGroup* group) { group_ = group; }

 protected:
  virtual ~TaskState();
  std::coroutine_handle<> root() const { return root_; }
  // Moves the root promise's outcome into this state; false if the body never co_returned.
  virtual bool TakeResultFromFrame() = 0;
  virtual void SetResult(absl::Status status) = 0;

 private:
  void Enqueue() {
    COTASK_CHECK(!queued_, "task resumed twice");
    queued_ = true;
    loop_->Schedule(this);
  }
  void Complete();

  EventLoop* loop_;
  std::coroutine_handle<> root_;    // the task's own frame, until it ends
  std::coroutine_handle<> resume_;  // the innermost suspended coroutine
  CancelHook* suspended_at_ = nullptr;
  TaskGroup* group_ = nullptr;
  IntrusiveList<TaskWaiter> waiters_;
  std::string cancel_message_;
  int cancel_requests_ = 0;
  uint32_t refs_ = 1;               // one for running, one per handle
  bool cancel_pending_ = false;     // requested, not yet handed to an await
  bool cancel_delivering_ = false;  // handed to the await the task is suspended at
  bool started_ = false;
  bool queued_ = false;
  bool done_ = false;
};

template <class T>
class TypedTaskState;

// The task whose step is running on this thread, if any (asyncio.current_task()).
inline constinit thread_local TaskState* current_task = nullptr;
inline TaskState* CurrentTask() { return current_task; }
TaskState& CurrentTaskOrDie(const char* what);

class PromiseBase {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      PromiseBase& p = self.promise();
      // Inline start (see Task::Awaiter) or a task's root: return to whoever resumed us.
      if (p.inline_ || !p.continuation_) return std::noop_coroutine();
      return p.continuation_;
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  [[noreturn]] void unhandled_exception() noexcept;

  std::coroutine_handle<> continuation_;
  bool inline_ = false;  // being resumed from inside its awaiter's await_suspend
};

template <class T>
class TaskPromise : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  void return_value(absl::StatusOr<T> result) { result_.emplace(std::move(result)); }
  std::optional<absl::StatusOr<T>> result_;
};

template <>
class TaskPromise<void> : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_value(absl::Status status) { result_.emplace(std::move(status)); }
  std::optional<absl::Status> result_;
};

}  // namespace internal

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = internal::TaskPromise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  Task() = default;
  explicit Task(Handle handle) : handle_(handle) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();
  }

  explicit operator bool() const { return static_cast<bool>(handle_); }
  Handle Release() { return std::exchange(handle_, nullptr); }

  // Runs the coroutine inside the awaiting task. It starts inline; if it ends without
  // suspending, the awaiting coroutine goes on without a round trip through the loop (and
  // without growing the stack, whatever the compiler does with symmetric transfer).
  class Awaiter {
   public:
    explicit Awaiter(Handle handle) : handle_(handle) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> awaiting) {
      internal::PromiseBase& p = handle_.promise();
      p.continuation_ = awaiting;
      p.inline_ = true;
      handle_.resume();
      p.inline_ = false;
      return !handle_.done();
    }
    ResultOf<T> await_resume() {
      auto& result = handle_.promise().result_;
      COTASK_CHECK(result.has_value(), "a cotask coroutine ended without co_return");
      return std::move(*result);
    }

   private:
    Handle handle_;
  };
  Awaiter operator co_await() && {
    COTASK_CHECK(handle_, "awaiting an empty Task");
    return Awaiter(handle_);
  }

 private:
  Handle handle_;
};

namespace internal {

template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

template <class T>
class TypedTaskState final : public TaskState {
 public:
  TypedTaskState(EventLoop& loop, typename Task<T>::Handle root) : TaskState(loop, root) {}

  const absl::Status& status() const override {
    static const absl::Status* const kOk = new absl::Status();
    return result_.has_value() ? StatusOf(*result_) : *kOk;
  }
  const std::optional<ResultOf<T>>& result() const { return result_; }
  std::optional<ResultOf<T>>& mutable_result() { return result_; }

 private:
  ~TypedTaskState() override = default;
  bool TakeResultFromFrame() override {
    auto& result =
        std::coroutine_handle<TaskPromise<T>>::from_address(root().address()).promise().result_;
    if (!result.has_value()) return false;
    result_.emplace(std::move(*result));
    return true;
  }
  void SetResult(absl::Status status) override { result_.emplace(std::move(status)); }

  std::optional<ResultOf<T>> result_;
};

}  // namespace internal

// A handle on a running (or ended) task; copies share the task. Loop thread only.
class TaskRef {
 public:
  TaskRef() = default;
  explicit TaskRef(internal::TaskState* state) : state_(state) {
    if (state_ != nullptr) state_->AddRef();
  }
  TaskRef(const TaskRef& other) : TaskRef(other.state_) {}
  TaskRef(TaskRef&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  TaskRef& operator=(TaskRef other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~TaskRef() {
    if (state_ != nullptr) state_->Release();
  }

  explicit operator bool() const { return state_ != nullptr; }
  friend bool operator==(const TaskRef& a, const TaskRef& b) { return a.state_ == b.state_; }

  // asyncio's Task.cancel: false if the task has already ended.
  bool Cancel(absl::string_view message = {}) const { return state_->Cancel(message); }
  bool done() const { return state_->done(); }
  bool cancelled() const { return state_->cancelled(); }
  int cancelling() const { return state_->cancelling(); }
  int Uncancel() const { return state_->Uncancel(); }
  // The outcome's status (OK if it succeeded); FAILED_PRECONDITION while it runs.
  absl::Status status() const;

  internal::TaskState* state() const { return state_; }

 private:
  internal::TaskState* state_ = nullptr;
};

namespace internal {

// Waits for `target` to end. Cancelling the waiting task cancels the target (as awaiting an
// asyncio.Task does) and goes on waiting for it; with `shield`, it stops waiting at once and
// leaves the target alone (asyncio.shield). With `take`, the outcome is moved out, not copied.
template <class T>
class TaskEndAwaiter final : public CancelHook, public TaskWaiter {
 public:
  TaskEndAwaiter(TypedTaskState<T>* target, bool shield, bool take = false)
      : target_(target), shield_(shield), take_(take) {}

  bool await_ready() {
    self_ = &CurrentTaskOrDie("awaiting a task");
    if (self_->TakePendingCancel()) {
      cancelled_ = true;
      return true;
    }
    return target_ == self_ || target_->done();
  }
  void await_suspend(std::coroutine_handle<> at) {
    target_->AddWaiter(this);
    self_->Suspend(at, this);
  }
  ResultOf<T> await_resume() {
    if (cancelled_) return self_->TakeCancelDelivery();
    if (target_ == self_) return absl::FailedPreconditionError("a task cannot await itself");
    if (forwarded_) {
      if (target_->cancelled()) {
        self_->EndCancelDelivery();
      } else {
        self_->RestorePendingCancel();
      }
    }
    if (take_) return std::move(*target_->mutable_result());
    return *target_->result();
  }

  void OnCancel() override {
    if (shield_) {
      TaskWaiter::Unlink();
      cancelled_ = true;
      self_->WakeAfterCancel();
      return;
    }
    forwarded_ = true;
    target_->Cancel(self_->cancel_message());
  }
  void OnTaskDone(TaskState&) override {
    if (forwarded_) {
      self_->WakeAfterCancel();
    } else {
      self_->Wake();
    }
  }

 private:
  TypedTaskState<T>* target_;
  TaskState* self_ = nullptr;
  bool shield_;
  bool take_;
  bool cancelled_ = false;
  bool forwarded_ = false;
};

}  // namespace internal

template <class T>
class TaskHandle : public TaskRef {
 public:
  TaskHandle() = default;
  explicit TaskHandle(internal::TypedTaskState<T>* state) : TaskRef(state) {}

  // The outcome; FAILED_PRECONDITION while the task runs (asyncio's InvalidStateError).
  ResultOf<T> result() const {
    const auto& result = typed()->result();
    if (!result.has_value()) return absl::FailedPreconditionError("the task has not ended yet");
    return *result;
  }

  // Waits for the task to end and returns its outcome. Cancelling the waiting task cancels
  // this one too (use Shield to prevent that).
  internal::TaskEndAwaiter<T> operator co_await() const {
    return internal::TaskEndAwaiter<T>(typed(), /*shield=*/false);
  }

  internal::TypedTaskState<T>* typed() const {
    return static_cast<internal::TypedTaskState<T>*>(state());
  }
};

// asyncio.shield: waits for `task` like `co_await task`, but cancelling the waiting task only
// stops the wait (it resumes with CANCELLED at once); `task` runs on.
template <class T>
internal::TaskEndAwaiter<T> Shield(const TaskHandle<T>& task) {
  return internal::TaskEndAwaiter<T>(task.typed(), /*shield=*/true);
}

// Waits for `task` like `co_await task`, and moves its outcome out instead of copying it: for
// the one reader of a task's outcome (a big reply, a batch of events). Another reader, or
// result(), finds a moved-from value afterwards.
template <class T>
internal::TaskEndAwaiter<T> TakeOutcome(const TaskHandle<T>& task) {
  return internal::TaskEndAwaiter<T>(task.typed(), /*shield=*/false, /*take=*/true);
}

// Starts `task` on the loop running on this thread (asyncio.create_task).
template <class T>
TaskHandle<T> CreateTask(Task<T> task) {
  EventLoop* loop = EventLoop::Current();
  COTASK_CHECK(loop != nullptr, "CreateTask outside a running event loop: use loop.CreateTask");
  return loop->CreateTask(std::move(task));
}

// --- Definitions that need the types above. ---

template <class T>
TaskHandle<T> EventLoop::CreateTask(Task<T> task) {
  COTASK_CHECK(task, "CreateTask of an empty Task");
  auto* state = new internal::TypedTaskState<T>(*this, task.Release());
  RegisterTask(state);
  TaskHandle<T> handle(state);
  return handle;
}

template <class T>
ResultOf<T> EventLoop::RunUntilComplete(Task<T> task) {
  return RunUntilComplete(CreateTask(std::move(task)));
}

template <class T>
ResultOf<T> EventLoop::RunUntilComplete(const TaskHandle<T>& task) {
  if (absl::Status status = RunUntilDone(*task.state()); !status.ok()) return status;
  return task.result();
}

template <class Fn>
void EventLoop::ForEachTask(Fn&& fn) {
  tasks_.ForEach([&](internal::TaskState* task) { fn(TaskRef(task)); });
}

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_TASK_H_
