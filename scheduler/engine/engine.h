// Engine: cotask's task table, task and group state machines, executors and event logs.
//
// Each task's life is one coroutine on the engine's loop: it becomes QUEUED, then RUNNING, runs
// its executor (sleep, exec, or a remote worker for dispatch tasks) under its timeout, and ends
// in one terminal state. Every state
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
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cotask/v1/scheduler.pb.h"
#include "cotask/v1/workers.pb.h"
#include "scheduler/engine/event_log.h"
#include "scheduler/engine/observer.h"
#include "scheduler/engine/permits.h"
#include "scheduler/engine/task_key.h"
#include "scheduler/process/process_spec.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/task.h"

namespace cotask::process {
class ProcessSupervisor;
}

namespace cotask::engine {

// A queue declared by the server's configuration (--queues).
struct QueueSpec {
  std::string name;
  v1::Queue::Order order = v1::Queue::FIFO;
  int64_t maxsize = 0;  // 0: EngineOptions::queue_maxsize
};

// Parses the --queues flag: "name[:fifo|lifo|priority][:maxsize][,...]"; the error names the
// entry.
absl::StatusOr<std::vector<QueueSpec>> ParseQueues(absl::string_view flag);

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

  // Named queues declared at start; others are made on first use (FIFO, queue_maxsize), up
  // to max_queues in all.
  std::vector<QueueSpec> queues;
  int64_t queue_maxsize = 100'000;
  size_t max_queues = 1000;
  // Workers connected at once.
  size_t max_workers = 1000;
  // A worker that sends nothing for this long is gone (unless its hello asks otherwise).
  absl::Duration worker_heartbeat_timeout = absl::Seconds(30);
  // A cancelled task's worker has this long to end it before the task ends anyway.
  absl::Duration worker_cancel_grace = absl::Seconds(10);

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
  size_t queues = 0;
  size_t workers = 0;
};

class Engine {
 public:
  Engine(runtime::EventLoop& loop, process::ProcessSupervisor& processes, EngineOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Destroy only once no task is running (after Drain) or with the loop stopped for good.
  ~Engine();

  absl::StatusOr<v1::Task> CreateTask(const v1::CreateTaskRequest& request);
  // Fills `reply` (empty; it may be on the caller's protobuf Arena, so that a large batch's
  // reply is built without a heap allocation per message and freed where the caller is).
  absl::Status CreateTasks(const v1::CreateTasksRequest& request, v1::CreateTasksResponse* reply);
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

  // Named queues (asyncio.Queue, LifoQueue, PriorityQueue) of dispatch tasks.
  absl::StatusOr<v1::Queue> CreateQueue(const v1::CreateQueueRequest& request);
  absl::StatusOr<v1::Queue> GetQueue(const v1::GetQueueRequest& request) const;
  absl::StatusOr<v1::ListQueuesResponse> ListQueues(const v1::ListQueuesRequest& request) const;
  absl::StatusOr<v1::Queue> PauseQueue(const v1::PauseQueueRequest& request);
  absl::StatusOr<v1::Queue> ResumeQueue(const v1::ResumeQueueRequest& request);
  // Creates that wait (wait_for_room, and at most until `deadline`) for room in full queues
  // instead of failing at once. Cancellable.
  runtime::Task<v1::Task> CreateTaskWaiting(v1::CreateTaskRequest request,
                                            absl::Time deadline = absl::InfiniteFuture());
  // (`request` and `reply` belong to the caller, who keeps them until this task has ended.)
  runtime::Task<void> CreateTasksWaiting(const v1::CreateTasksRequest& request,
                                         v1::CreateTasksResponse* reply,
                                         absl::Time deadline = absl::InfiniteFuture());

  // Workers (Workers.Work, one stream each). OpenWorker registers the worker of a `hello` and
  // gives the stream's first message; `peer` is for ListWorkers.
  absl::StatusOr<v1::WorkResponse> OpenWorker(const v1::WorkerHello& hello, std::string peer);
  // One message of the worker's after its hello. An error (a malformed message) ends the
  // worker's stream with it.
  absl::Status WorkerMessage(const std::string& worker, const v1::WorkRequest& message);
  // The messages for the worker's stream (assignments, cancels, drained), waiting until there
  // is one; empty once the worker is closing; an error if the worker went silent past its
  // heartbeat timeout (its stream ends with it). Cancellable.
  runtime::Task<std::vector<v1::WorkResponse>> NextWorkerCommands(std::string worker);
  // The worker's stream has ended (`reason`, for the lost tasks' errors): the tasks it holds
  // go back to their queues (under their retry policies), and the worker is gone.
  void CloseWorker(const std::string& worker, const std::string& reason);
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers(const v1::ListWorkersRequest& request) const;

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
  // The same step without the wait, for a caller on the engine's own loop (a Watch served
  // there): fills `batch`, and if it is empty and the watch goes on, sets `changed` to the
  // event to await before asking again (an idle watcher then costs the engine nothing but its
  // place among the event's waiters).
  absl::Status ReadEvents(const v1::WatchRequest& target, int64_t from, size_t max_bytes,
                          WatchBatch* batch, std::shared_ptr<runtime::Event>* changed);

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
  struct QueueRecord;
  struct WorkerRecord;
  struct DispatchState;
  struct Lease;

  // A request id with its hash, computed once per create: task_requests_ then grows, and a
  // batch's repeats are found, without hashing ids again (the set's own ids sit in task records
  // long gone from the cache).
  struct RequestKey {
    explicit RequestKey(absl::string_view id) : id(id), hash(absl::HashOf(id)) {}
    RequestKey(absl::string_view id, size_t hash) : id(id), hash(hash) {}
    absl::string_view id;
    size_t hash;
  };
  // task_requests_'s element, 16 bytes: a task made with a request_id (its record holds the
  // id), and that id's hash. Looked up by RequestKey.
  struct RequestEntry {
    TaskRecord* task;
    size_t hash;
  };
  struct RequestHash {
    using is_transparent = void;
    size_t operator()(const RequestKey& key) const { return key.hash; }
    size_t operator()(const RequestEntry& entry) const { return entry.hash; }
  };
  struct RequestEq {
    using is_transparent = void;
    static absl::string_view RequestIdOf(const RequestKey& key) { return key.id; }
    static absl::string_view RequestIdOf(const RequestEntry& entry);  // (records.h)
    // The whole hashes first: the set's probes match 7 bits of them, and reading an entry's id
    // is three cache misses (record, string, bytes), 6% of the engine's thread in batches.
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return a.hash == b.hash && RequestIdOf(a) == RequestIdOf(b);
    }
  };

  // A batch's items, as CreateBatch takes them (views of the request's own pointers).
  static absl::Span<const v1::CreateTaskRequest* const> ItemsOf(
      const v1::CreateTasksRequest& request) {
    return absl::MakeConstSpan(request.requests().data(), request.requests_size());
  }
  // Creates all the tasks or none, appending them to `created` (untouched on an error);
  // name_items: errors name the item ("requests[3].spec"). When a queue is full, `full_queue`
  // (if given) names it.
  absl::Status CreateBatch(absl::Span<const v1::CreateTaskRequest* const> requests, bool name_items,
                           google::protobuf::RepeatedPtrField<v1::Task>* created,
                           std::string* full_queue = nullptr);
  // The queues a batch's dispatch tasks go to have room for them (and new queues are within
  // max_queues).
  absl::Status CheckQueuesHaveRoom(const absl::flat_hash_map<std::string, int64_t>& new_tasks,
                                   std::string* full_queue) const;
  // Waits until `queue` may have room, or `deadline`: false if the deadline came first.
  runtime::Task<bool> AwaitRoom(std::string queue, absl::Time deadline);
  absl::Status ValidateDispatch(const v1::CreateTaskRequest& request) const;
  // `group`: the record of the request's group, if there is one by that name.
  absl::Status ValidateCreate(const v1::CreateTaskRequest& request, const GroupRecord* group) const;
  // options.after, retry, acquire, wait_events.
  absl::Status ValidateCoordination(const v1::TaskOptions& options) const;
  absl::Status CheckGroupAccepts(const std::string& name, const char* field) const;
  // The same for a group whose record (null: none by that name) is known.
  static absl::Status CheckGroupAccepts(const GroupRecord* group, const std::string& name,
                                        const char* field);
  // `group`: the record of the request's group (null: none); `request_key`: of its request_id
  // (if it has one).
  TaskRecord& AddTask(const v1::CreateTaskRequest& request, GroupRecord* group,
                      const std::optional<RequestKey>& request_key);
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
  // A sleep task's: how long, and its outcome once it has slept (RunSleep, or Life itself).
  static absl::Duration SleepDuration(const TaskRecord& task);
  static Outcome SleepOutcome(TaskRecord& task);
  runtime::Task<Outcome> RunExec(TaskRecord* task);
  void AppendOutput(TaskRecord& task, v1::Output::Stream stream, absl::string_view bytes);

  // Dispatch tasks (dispatch.cc). The queue made on first use, or null past max_queues.
  QueueRecord* EnsureQueue(const std::string& name);
  QueueRecord& DeclareQueue(const QueueSpec& spec, bool declared);
  absl::StatusOr<QueueRecord*> FindQueue(const std::string& name, const char* field) const;
  v1::Queue DescribeQueue(const QueueRecord& queue) const;
  // Puts the QUEUED task in its queue and waits until a worker takes it (then it is RUNNING).
  runtime::Task<void> AwaitWorker(TaskRecord* task);
  // The attempt on its worker: until the worker's result, the lease's loss, or a cancellation
  // (then the worker is told, and given the grace period).
  runtime::Task<Outcome> RunDispatch(TaskRecord* task);
  // Hands the queue's ready tasks to its workers while some have room.
  void Pump(QueueRecord& queue);
  void PumpWorker(WorkerRecord& worker);
  void Assign(TaskRecord& task, WorkerRecord& worker);
  // The task's lease ends (its result came, or it was lost): the worker's slot is free.
  void EndLease(TaskRecord& task);
  void LoseLeases(WorkerRecord& worker, const std::string& why);
  // The worker takes nothing more: its leases are lost, its queues forget it, its stream ends.
  void StopWorker(WorkerRecord& worker, const std::string& reason);
  void PushWorkerCommand(WorkerRecord& worker, v1::WorkResponse command);
  // A draining worker that holds nothing more is told so, once.
  void SayDrainedIfSo(WorkerRecord& worker);
  void CheckHeartbeat(const std::string& worker);
  // The queue's counts follow its tasks' states (called by Transition).
  void QueueStateChanged(TaskRecord& task, v1::Task::State from, v1::Task::State to);
  void ReportQueue(const QueueRecord& queue);

  // The one place where a task's state changes (at `now`, Unix nanoseconds: NowNanos() if not
  // given).
  void Transition(TaskRecord& task, v1::Task::State to, const absl::Status& error = {});
  void Transition(TaskRecord& task, v1::Task::State to, const absl::Status& error, int64_t now);
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
  // A task's log, with its deferred events in it (TaskRecord::deferred_events).
  EventLog& TaskLog(TaskRecord& task);
  // The task's id (its record keeps the key it spells, not the text).
  static std::string IdOf(const TaskRecord& task);
  // The name of the task's group ("": none).
  static const std::string& GroupOf(const TaskRecord& task);
  // tasks_'s key: the number a task's id spells ("t" and 14 hex digits of a strictly increasing
  // count of microseconds). Keys sort as the ids do and compare without reading the ids' text
  // (which cost a cache miss per comparison: 6% of the engine's thread in batches).
  using TaskKey = engine::TaskKey;
  TaskKey NewTaskKey(int64_t now);  // now: Unix nanoseconds
  // The task with this id; null if there is none (never made, or forgotten).
  TaskRecord* FindRecord(absl::string_view id) const;
  TaskRecord& RecordOf(absl::string_view id) const;  // one that must be there
  void ForgetFinished();
  // Appends to a log, keeping count of the bytes all logs hold and of the events dropped.
  // A task's log keeps its events without the task's id and group, a group's log its children
  // tasks' without the group (the log's owner says them: a dozen strings fewer per task); a
  // reader's copies get them here.
  void StampEvents(const v1::WatchRequest& target, std::vector<v1::Event>* events) const;
  void AppendToLog(EventLog& log, v1::Event event, bool last = false);
  // A plain task state change (EventLog::AppendStateChange): most of what logs hold.
  // `task`: the child task's key in a group's log, 0 in the task's own.
  void AppendStateToLog(EventLog& log, TaskKey task, const google::protobuf::Timestamp& time,
                        v1::Task::State state, int32_t attempt, bool empty_result = false,
                        bool last = false);
  // The figures (and the observer) after an append to `log`, of `before` bytes, dropped `dropped`.
  void CountLogged(const EventLog& log, size_t before, int64_t dropped);
  void SignalIfIdle();
  // `event` is set when the task ends (at once if it has).
  static void AddEndWaiter(TaskRecord& task, const std::shared_ptr<runtime::Event>& event);
  // Delayed tasks that wait only for their start time get their coroutine then (StartDue).
  void AddDelayed(TaskRecord& task, absl::Time start);
  void StartDue();
  void ArmDelayedTimer();
  // The task as clients see it: a delayed task that has not begun shows waiting.until (not kept
  // in the record: 140 B a pending task).
  v1::Task View(const TaskRecord& task) const;
  void ViewInto(const TaskRecord& task, v1::Task* view) const;  // (view on any arena)
  // A group as clients see it: with its log's last_sequence.
  static v1::Group View(const GroupRecord& group);

  runtime::EventLoop& loop_;
  process::ProcessSupervisor& processes_;
  const EngineOptions options_;

  // Ordered by id, i.e. by creation time, for listing. (The key views the task's own id.)
  absl::btree_map<TaskKey, std::unique_ptr<TaskRecord>> tasks_;
  absl::btree_map<std::string, std::unique_ptr<GroupRecord>> groups_;
  // The tasks made with a request_id, found by it.
  absl::flat_hash_set<RequestEntry, RequestHash, RequestEq> task_requests_;
  absl::flat_hash_map<std::string, std::string> group_requests_;  // request_id -> group name
  Permits permits_;
  absl::flat_hash_map<std::string, std::unique_ptr<EventRecord>> events_;
  absl::flat_hash_map<std::string, std::unique_ptr<RunnerRecord>> runners_;
  absl::btree_map<std::string, std::unique_ptr<QueueRecord>> queues_;
  absl::btree_map<std::string, std::unique_ptr<WorkerRecord>> workers_;
  size_t connected_workers_ = 0;  // workers_ not closing
  int64_t last_worker_micros_ = 0;
  uint64_t task_ordinal_ = 0;  // creation order, for queue ties
  uint64_t assignments_ = 0;   // for fairness among workers
  int64_t last_runner_micros_ = 0;
  std::deque<TaskKey> finished_tasks_;  // oldest first
  std::deque<std::string> finished_groups_;
  size_t pending_tasks_ = 0;
  size_t active_groups_ = 0;
  int64_t last_id_micros_ = 0;
  int64_t log_events_dropped_ = 0;
  int64_t log_bytes_ = 0;
  bool draining_ = false;
  runtime::Event idle_;  // set when no task is pending
  // Delayed tasks without a coroutine yet, by start time; one timer for the earliest (a timer
  // each cost ~100 B a task).
  absl::btree_set<std::pair<absl::Time, TaskRecord*>> delayed_;
  runtime::TimerHandle delayed_timer_;
  absl::Time delayed_timer_at_ = absl::InfiniteFuture();
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_ENGINE_H_
