// Wait and Gather: asyncio.wait and asyncio.gather.
//
// Wait(tasks, return_when, timeout) waits until the condition holds (FIRST_COMPLETED: one task
// ended; FIRST_EXCEPTION: one ended with an error that is not a cancellation, or all ended;
// ALL_COMPLETED) or the timeout passes, and returns which tasks are done and which are still
// pending, each in the order given. It cancels nothing: cancelling the waiting task only ends
// the wait, with CANCELLED. An empty list is INVALID_ARGUMENT.
//
// Gather(tasks) runs the coroutines as tasks and returns every outcome in order, as
// gather(return_exceptions=True) does; cancelling the gathering task cancels them all and
// returns CANCELLED once they have ended.
#ifndef COTASK_SCHEDULER_RUNTIME_WAIT_H_
#define COTASK_SCHEDULER_RUNTIME_WAIT_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/internal/timer_heap.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

enum class ReturnWhen { kFirstCompleted, kFirstException, kAllCompleted };

template <class H>
struct WaitResult {
  std::vector<H> done;
  std::vector<H> pending;
};

namespace internal {

// Suspends the calling task until `return_when` holds for `tasks` or the timeout passes.
class WaitCondition final : public CancelHook, private TimerNode {
 public:
  WaitCondition(std::vector<TaskState*> tasks, ReturnWhen return_when,
                std::optional<EventLoop::Duration> timeout);
  WaitCondition(const WaitCondition&) = delete;
  WaitCondition& operator=(const WaitCondition&) = delete;
  ~WaitCondition();

  bool await_ready();
  void await_suspend(std::coroutine_handle<> at);
  absl::Status await_resume();
  void OnCancel() override;

 private:
  class Watch final : public TaskWaiter {
   public:
    void OnTaskDone(TaskState& task) override { owner->OnTaskDone(task); }
    WaitCondition* owner = nullptr;
  };

  // Whether this task's end satisfies return_when on its own (FIRST_*).
  bool Ends(const TaskState& task) const;
  void OnTaskDone(TaskState& task);
  void StopWatching();
  static void Fire(TimerNode* timer);

  std::vector<TaskState*> tasks_;
  std::unique_ptr<Watch[]> watches_;
  ReturnWhen return_when_;
  std::optional<EventLoop::Duration> timeout_;
  TaskState* self_ = nullptr;
  size_t done_ = 0;
  bool cancelled_ = false;
};

template <class H>
std::vector<TaskState*> StatesOf(const std::vector<H>& tasks) {
  std::vector<TaskState*> states;
  states.reserve(tasks.size());
  for (const H& task : tasks) states.push_back(task.state());
  return states;
}

}  // namespace internal

template <class H>
Task<WaitResult<H>> Wait(std::vector<H> tasks, ReturnWhen return_when = ReturnWhen::kAllCompleted,
                         std::optional<EventLoop::Duration> timeout = std::nullopt) {
  if (tasks.empty()) {
    co_return absl::InvalidArgumentError("Wait: tasks is empty; give it at least one task");
  }
  COTASK_CO_RETURN_IF_ERROR(
      co_await internal::WaitCondition(internal::StatesOf(tasks), return_when, timeout));
  WaitResult<H> result;
  for (H& task : tasks) (task.done() ? result.done : result.pending).push_back(std::move(task));
  co_return result;
}

template <class T>
Task<std::vector<ResultOf<T>>> Gather(std::vector<Task<T>> coroutines) {
  std::vector<TaskHandle<T>> tasks;
  tasks.reserve(coroutines.size());
  for (Task<T>& coroutine : coroutines) tasks.push_back(CreateTask(std::move(coroutine)));
  const std::vector<internal::TaskState*> states = internal::StatesOf(tasks);
  std::optional<absl::Status> cancelled;
  // An empty list gathers nothing (as asyncio.gather()); otherwise wait until all have ended,
  // cancelling them all if this task is cancelled meanwhile.
  while (!states.empty()) {
    absl::Status waited =
        co_await internal::WaitCondition(states, ReturnWhen::kAllCompleted, std::nullopt);
    if (waited.ok()) break;
    if (!cancelled.has_value()) cancelled = waited;
    for (const auto& task : tasks) task.Cancel(waited.message());
  }
  if (cancelled.has_value()) co_return *cancelled;
  std::vector<ResultOf<T>> results;
  results.reserve(tasks.size());
  for (const auto& task : tasks) results.push_back(task.result());
  co_return results;
}

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_WAIT_H_
