// TaskGroup: asyncio.TaskGroup.
//
//   absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
//     COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Fetch(a)).status());
//     COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Fetch(b)).status());
//     co_return absl::OkStatus();
//   });
//
// Run runs the body (the `async with` block) in the calling task, then waits for every child
// (the block's exit, where asyncio's await is implicit). The first child that fails (an error
// that is not a cancellation) cancels every other child and the body, wherever it waits, and
// no new children are accepted after that. The group always waits for all its children. Its
// outcome is then, in this order: a TaskGroupError listing every failure (the children's, in
// the order they ended, and the body's own error) if there was any; CANCELLED if the calling
// task was cancelled from outside (the children are cancelled and still awaited); otherwise
// the body's result. The group's own cancellation of the calling task is withdrawn
// (uncancel) before Run returns, so the caller can go on. Groups nest.
//
// The body may be a capturing lambda: Run keeps it alive until the group has ended.
// Loop thread only.
#ifndef COTASK_SCHEDULER_RUNTIME_TASK_GROUP_H_
#define COTASK_SCHEDULER_RUNTIME_TASK_GROUP_H_

#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

class TaskGroup {
 public:
  template <class F, class... Args>
  using BodyValue = typename std::invoke_result_t<F&, TaskGroup&, Args&...>::value_type;

  template <class F, class... Args>
  static Task<BodyValue<F, Args...>> Run(F body, Args... args) {
    TaskGroup group(internal::CurrentTaskOrDie("TaskGroup::Run"));
    ResultOf<BodyValue<F, Args...>> result = co_await std::invoke(body, group, args...);
    if (absl::Status status = co_await group.Exit(StatusOf(result)); !status.ok()) {
      co_return status;
    }
    co_return result;
  }

  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Starts a child. FAILED_PRECONDITION once the group is shutting down (a child failed, or
  // the body is done and the group cancelled) or has finished; the coroutine then never runs.
  template <class T>
  absl::StatusOr<TaskHandle<T>> CreateTask(Task<T> task) {
    if (absl::Status status = CheckAccepting(); !status.ok()) return status;
    TaskHandle<T> child = parent_->loop().CreateTask(std::move(task));
    Adopt(*child.state());
    return child;
  }

  // Children that have not ended yet.
  size_t size() const { return children_.size(); }

  // From a child's completion.
  void OnChildDone(internal::TaskState& child);

 private:
  class ExitAwaiter;

  explicit TaskGroup(internal::TaskState& parent) : parent_(&parent) {}
  ~TaskGroup();

  absl::Status CheckAccepting() const;
  void Adopt(internal::TaskState& child);
  void Abort();
  // The end of the body: waits for every child and works out the group's outcome; OK means
  // "the body's result".
  Task<void> Exit(absl::Status body);

  internal::TaskState* parent_;
  internal::IntrusiveList<internal::TaskState, internal::GroupChildrenTag> children_;
  std::vector<absl::Status> errors_;
  ExitAwaiter* exit_waiter_ = nullptr;
  bool exiting_ = false;
  bool aborting_ = false;
  bool parent_cancel_requested_ = false;
};

// The error of a group with failures: its code is the first failure's, its message lists them
// all, and TaskGroupErrors() gives them back one by one (asyncio's ExceptionGroup).
absl::Status TaskGroupError(const std::vector<absl::Status>& errors);
// The failures in a TaskGroupError; empty for any other status.
std::vector<absl::Status> TaskGroupErrors(const absl::Status& status);

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_TASK_GROUP_H_
