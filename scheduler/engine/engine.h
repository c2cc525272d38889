// Engine: cotask's task table, task and group state machines, executors and event logs.
//
// Each task's life is one coroutine on the engine's loop: it becomes QUEUED, then RUNNING, runs
// its executor (sleep, exec) under its timeout, and ends in one terminal state. Every state
// change of a task or a group goes through Transition / TransitionGroup, the one place where a
// journal will be attached. Groups follow asyncio.TaskGroup (docs/api.md): fail-fast by
// default, `all` on request, close, cancel, deadline, nesting, every child failure listed.
//
// The engine knows the API's messages (cotask/v1) but nothing of gRPC: requests come in as
// protos, answers and errors go out as protos and absl::Status values whose ErrorInfo (see
// errors.h) names the reason and the offending field. Every bound is in EngineOptions.
//
// Thread-safety: none; everything runs on the engine loop's thread, as asyncio code does.
#ifndef COTASK_SCHEDULER_ENGINE_ENGINE_H_
#define COTASK_SCHEDULER_ENGINE_ENGINE_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cotask/v1/scheduler.pb.h"
#include "scheduler/engine/event_log.h"
#include "scheduler/engine/observer.h"
#include "scheduler/engine/permits.h"
#include "scheduler/process/process_spec.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/task.h"

namespace cotask::process {
class ProcessSupervisor;
}

namespace cotask::engine {

struct EngineOptions {
  // Tasks not yet ended; past it creates get RESOURCE_EXHAUSTED.
  size_t max_pending_tasks = 100'000;
  // Groups not yet ended; past it CreateGroup gets RESOURCE_EXHAUSTED.
  size_t max_active_groups = 10'000;
  // Ended tasks and groups kept for Get/List/Watch; the oldest are forgotten past these.
  size_t retain_finished_tasks = 100'000;
  size_t retain_finished_groups = 10'000;
  size_t max_batch_size = 1000;
  // A sleep task's result, an exec task's stdin, an error message.
  size_t max_payload_bytes = 1 << 20;
  size_t max_labels = 64;
  size_t max_label_key_bytes = 63;
  size_t max_label_value_bytes = 255;
  size_t max_request_id_bytes = 128;
  // Event log kept per task and per group.
  size_t max_log_bytes = 1 << 20;
  // Durations a client gives (sleep, timeout, kill grace, group timeout).
  absl::Duration max_duration = absl::Hours(24 * 365);

  // Named semaphores declared at start (name, limit); more come with CreateSemaphore, up to
  // max_semaphores in all.
  std::vector<std::pair<std::string, int64_t>> semaphores;
  size_t max_semaphores = 10'000;
  // Named events (made by SetEvent, ClearEvent and wait_events); past it, RESOURCE_EXHAUSTED.
  size_t max_events = 10'000;
  // Runners open at once.
  size_t max_runners = 10'000;

  // exec: absolute paths of the executables that may run; empty: exec is disabled.
  std::vector<std::string> exec_allow;
  // Set: exec processes drop to this uid/gid.
  std::optional<process::Credentials> exec_run_as;
  std::chrono::milliseconds exec_kill_grace{5000};
  // The tail of an exec task's output kept in its result.
  size_t exec_output_tail_bytes = 4096;
  size_t max_exec_args = 4096;
  size_t max_exec_env = 256;
  // argv, env and cwd together.
  size_t max_exec_bytes = 128 << 10;
  std::string exec_path = "/usr/local/bin:/usr/bin:/bin";

  // Told of every state change (metrics); not owned; may be null.
  EngineObserver* observer = nullptr;
};

// What the engine has in it; for logs, tests and (later) metrics.
struct EngineCounts {
  size_t pending_tasks = 0;
  size_t active_groups = 0;
  size_t tasks = 0;
  size_t groups = 0;
  // Events that fell out of bounded logs (each reader sees a Truncated marker for them).
  int64_t log_events_dropped = 0;
  // Bytes the event logs of the tasks and groups kept hold.
  int64_t log_bytes = 0;
  size_t runners = 0;
  size_t events = 0;
  size_t semaphores = 0;
};

class Engine {
 public:
  Engine(runtime::EventLoop& loop, process::ProcessSupervisor& processes, EngineOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Destroy only once no task is running (after Drain) or with the loop stopped for good.
  ~Engine();

  absl::StatusOr<v1::Task> CreateTask(const v1::CreateTaskRequest& request);
  absl::StatusOr<v1::CreateTasksResponse> CreateTasks(const v1::CreateTasksRequest& request);
  absl::StatusOr<v1::Task> GetTask(const v1::GetTaskRequest& request) const;
  absl::StatusOr<v1::ListTasksResponse> ListTasks(const v1::ListTasksRequest& request) const;
  absl::StatusOr<v1::CancelTaskResponse> CancelTask(const v1::CancelTaskRequest& request);
  // Creates the task and waits for its end (asyncio.run). Cancelling this coroutine (the call
  // ended early) cancels the task, unless it is detached.
  runtime::Task<v1::Task> Run(v1::CreateTaskRequest request);
  // asyncio.wait over existing tasks. Cancellable.
  runtime::Task<v1::WaitTasksResponse> WaitTasks(v1::WaitTasksRequest request);

  absl::StatusOr<v1::Group> CreateGroup(const v1::CreateGroupRequest& request);
  absl::StatusOr<v1::Group> GetGroup(const v1::GetGroupRequest& request) const;
  absl::StatusOr<v1::ListGroupsResponse> ListGroups(const v1::ListGroupsRequest& request) const;
  absl::StatusOr<v1::Group> CloseGroup(const v1::CloseGroupRequest& request);
  absl::StatusOr<v1::CancelGroupResponse> CancelGroup(const v1::CancelGroupRequest& request);

  // Named events (asyncio.Event): Set wakes every task waiting for it.
  absl::StatusOr<v1::NamedEvent> SetEvent(const v1::SetEventRequest& request);
  absl::StatusOr<v1::NamedEvent> ClearEvent(const v1::ClearEventRequest& request);
  absl::StatusOr<v1::NamedEvent> GetEvent(const v1::GetEventRequest& request) const;
  // Named semaphores (see permits.h).
  absl::StatusOr<v1::Semaphore> CreateSemaphore(const v1::CreateSemaphoreRequest& request);
  absl::StatusOr<v1::Semaphore> GetSemaphore(const v1::GetSemaphoreRequest& request) const;

  // Runners (asyncio.Runner). OpenRunner gives the stream's first message.
  absl::StatusOr<v1::RunnerResponse> OpenRunner(const v1::OpenRunnerRequest& request);
  // The runner's reports for its stream (debug: slow tasks), waiting until there is one; empty
  // once the runner is closing or gone. Cancellable.
  runtime::Task<std::vector<v1::RunnerResponse>> NextRunnerReports(std::string runner);
  // Ends the runner: cancels every task and group it owns that has not ended (the detached
  // excepted) with `reason`, waits until they have ended, and gives the stream's last messages
  // (debug: the unread failures; then `closed`). The runner is gone when it returns, even if
  // cancelled while waiting.
  runtime::Task<std::vector<v1::RunnerResponse>> CloseRunner(std::string runner,
                                                             std::string reason);

  // Watch, one step: the events of the watched log from `from` on, at most about `max_bytes`
  // of them, waiting until there is at least one (or the log has ended; with no_follow, not
  // waiting: an empty batch then ends the watch). NOT_FOUND if there is
  // no such task or group; INVALID_ARGUMENT for a request without a target. Cancellable.
  struct WatchBatch {
    std::vector<v1::Event> events;
    int64_t next_sequence = 1;
    bool ended = false;  // the batch holds the log's last event: nothing follows
  };
  runtime::Task<WatchBatch> NextEvents(v1::WatchRequest target, int64_t from, size_t max_bytes);

  // Draining: creates are refused with UNAVAILABLE from now on.
  void StartDraining();
  // Waits until every task has ended or `timeout` has passed, then cancels what is left
  // (tasks and groups) and waits for it to end.
  runtime::Task<void> Drain(runtime::EventLoop::Duration timeout);

  EngineCounts counts() const;
  const EngineOptions& options() const { return options_; }

 private:
  struct TaskRecord;
  struct GroupRecord;
  struct EventRecord;
  struct RunnerRecord;

  // Creates all the tasks or none; name_items: errors name the item ("requests[3].spec").
  absl::StatusOr<v1::CreateTasksResponse> CreateBatch(
      absl::Span<const v1::CreateTaskRequest* const> requests, bool name_items);
  absl::Status ValidateCreate(const v1::CreateTaskRequest& request) const;
  // options.after, retry, acquire, wait_events.
  absl::Status ValidateCoordination(const v1::TaskOptions& options) const;
  absl::Status CheckGroupAccepts(const std::string& name, const char* field) const;
  TaskRecord& AddTask(const v1::CreateTaskRequest& request);
  // The request with its runner's context applied; errors name `field` ("runner").
  absl::StatusOr<RunnerRecord*> FindOpenRunner(const std::string& id, const char* field) const;
  static void ApplyRunnerContext(const RunnerRecord& runner, v1::CreateTaskRequest* request);
  EventRecord& EnsureEvent(const std::string& name);
  // The event SetEvent or ClearEvent changes (made if new, within --max_events).
  absl::StatusOr<EventRecord*> NamedEventToChange(const std::string& name);
  runtime::Task<void> Life(TaskRecord* task);
  runtime::Task<void> AwaitDependencies(TaskRecord* task);
  runtime::Task<void> AwaitEvents(TaskRecord* task);
  // A failed attempt that will be retried at retry_time: logged, and the task PENDING again.
  void EndAttempt(TaskRecord& task, v1::Task::State outcome, const absl::Status& error,
                  absl::Time retry_time);
  // debug runners: a report if the task is still in this attempt after slow_task_duration.
  void WatchSlowTask(TaskRecord& task);
  void RunnerTaskEnded(TaskRecord& task);
  static void PushRunnerReport(RunnerRecord& runner, v1::RunnerResponse report);
  struct Outcome {
    absl::Status status;
  };
  runtime::Task<Outcome> Execute(TaskRecord* task);
  runtime::Task<Outcome> RunSleep(TaskRecord* task);
  runtime::Task<Outcome> RunExec(TaskRecord* task);
  void AppendOutput(TaskRecord& task, process::OutputStream stream, absl::string_view bytes);

  // The one place where a task's state changes.
  void Transition(TaskRecord& task, v1::Task::State to, const absl::Status& error = {});
  // Cancels a task (by CancelTask, its group, or the drain); false if it has ended.
  bool CancelTaskRecord(TaskRecord& task, const std::string& message);

  // The one place where a group's state changes.
  void TransitionGroup(GroupRecord& group, v1::Group::State to);
  void ChildEnded(GroupRecord& group, const v1::ChildFailure* failure);
  // Closes the group and cancels its children (shielded tasks excepted).
  void AbortGroup(GroupRecord& group, const std::string& message);
  void MaybeEndGroup(GroupRecord& group);
  void GroupDeadline(const std::string& name);
  bool CancelGroupRecord(GroupRecord& group, const std::string& message);

  absl::StatusOr<TaskRecord*> FindTask(const std::string& id, const char* field) const;
  absl::StatusOr<GroupRecord*> FindGroup(const std::string& name, const char* field) const;
  EventLog* FindLog(const v1::WatchRequest& target) const;
  std::string NewTaskId();
  void ForgetFinished();
  // Appends to a log, keeping count of the bytes all logs hold and of the events dropped.
  void AppendToLog(EventLog& log, v1::Event event, bool last = false);
  void SignalIfIdle();
  // `event` is set when the task ends (at once if it has).
  static void AddEndWaiter(TaskRecord& task, const std::shared_ptr<runtime::Event>& event);

  runtime::EventLoop& loop_;
  process::ProcessSupervisor& processes_;
  const EngineOptions options_;

  // Ordered by id, i.e. by creation time, for listing.
  absl::btree_map<std::string, std::unique_ptr<TaskRecord>> tasks_;
  absl::btree_map<std::string, std::unique_ptr<GroupRecord>> groups_;
  absl::flat_hash_map<std::string, std::string> task_requests_;   // request_id -> task id
  absl::flat_hash_map<std::string, std::string> group_requests_;  // request_id -> group name
  Permits permits_;
  absl::flat_hash_map<std::string, std::unique_ptr<EventRecord>> events_;
  absl::flat_hash_map<std::string, std::unique_ptr<RunnerRecord>> runners_;
  int64_t last_runner_micros_ = 0;
  std::deque<std::string> finished_tasks_;  // oldest first
  std::deque<std::string> finished_groups_;
  size_t pending_tasks_ = 0;
  size_t active_groups_ = 0;
  int64_t last_id_micros_ = 0;
  int64_t log_events_dropped_ = 0;
  int64_t log_bytes_ = 0;
  bool draining_ = false;
  runtime::Event idle_;  // set when no task is pending
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_ENGINE_H_
