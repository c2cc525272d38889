// The engine's records of tasks, groups, named events and runners, shared by its source files
// (engine.cc: creating, reading, groups, Watch, drain; life.cc: a task's life and its state
// changes; coordination.cc: events, semaphores, runners). Not for use outside the engine.
#ifndef COTASK_SCHEDULER_ENGINE_RECORDS_H_
#define COTASK_SCHEDULER_ENGINE_RECORDS_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/clock.h"
#include "cotask/v1/scheduler.pb.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/event_log.h"
#include "scheduler/engine/validation.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/task.h"

namespace cotask::engine {

inline bool IsTerminal(v1::Task::State state) {
  return state == v1::Task::SUCCEEDED || state == v1::Task::FAILED ||
         state == v1::Task::CANCELLED || state == v1::Task::TIMED_OUT;
}

inline bool IsTerminal(v1::Group::State state) {
  return state == v1::Group::SUCCEEDED || state == v1::Group::FAILED ||
         state == v1::Group::CANCELLED || state == v1::Group::TIMED_OUT;
}

inline int64_t NowNanos() { return absl::GetCurrentTimeNanos(); }

// Of a time after 1970 (TaskTimes', the clock's).
inline google::protobuf::Timestamp TimestampOf(int64_t nanos) {
  // (Split by hand: TimeUtil's conversion checks and normalizes, 2.6% of the engine's thread.)
  google::protobuf::Timestamp time;
  time.set_seconds(nanos / 1'000'000'000);
  time.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return time;
}

// (Not TimeUtil::GetCurrentTime: Debian's protobuf 3.21 gives it whole seconds only.)
inline google::protobuf::Timestamp NowProto() { return TimestampOf(NowNanos()); }

inline absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

inline absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

inline LabelBounds LabelBoundsOf(const EngineOptions& options) {
  return {options.max_labels, options.max_label_key_bytes, options.max_label_value_bytes};
}

struct Engine::TaskRecord {
  explicit TaskRecord(size_t max_log_bytes) : log(max_log_bytes) {}

  // What only some tasks use (exec output, awaiting calls, debug runners), made on first use:
  // a pending task costs 64 B less without it.
  struct Rare {
    std::string output_tail;  // exec: the last bytes of stdout and stderr
    bool output_truncated = false;
    std::vector<std::weak_ptr<runtime::Event>> end_waiters;  // Run and WaitTasks calls
    runtime::TimerHandle slow_timer;                         // a debug runner's slow-task report
  };
  Rare& rare() {
    if (rare_ == nullptr) rare_ = std::make_unique<Rare>();
    return *rare_;
  }
  bool has_rare() const { return rare_ != nullptr; }

  // Without its id, which `key` spells (IdOf), its times, which are in `times`, and its group's
  // name while its group's record is kept (GroupOf): ViewInto puts them in its views. (Each
  // was a heap block per task.)
  v1::Task task;
  TaskKey key = 0;
  TaskTimes times;
  EventLog log;
  GroupRecord* group = nullptr;
  RunnerRecord* runner = nullptr;
  runtime::TaskRef life;  // the coroutine; set until the task has ended
  bool started = false;
  // A client has been given the task's outcome (Get, List, Run, WaitTasks, Watch, its group):
  // a debug runner reports failures nobody read.
  mutable bool outcome_read = false;
  // The log's first events, as long as they are the standard ones of a first attempt, are not
  // stored: they are made from the task's times when the log is first read or appended to
  // otherwise (Engine::TaskLog). This many of PENDING (at create_time), QUEUED and RUNNING (at
  // start_time: a task that needs no worker runs as it is queued) and a plain end (its state at
  // end_time, no error, at most an empty result). A pending task costs 160 B less, and a sleep
  // task that nobody watches makes no log at all.
  uint8_t deferred_events = 0;
  // Its result is there and empty (a sleep task's success): views make the empty message, which
  // the task does not keep (a heap block a task).
  bool empty_result = false;
  bool has_result() const { return empty_result || task.has_result(); }
  void clear_result() {
    task.clear_result();
    empty_result = false;
  }
  std::unique_ptr<DispatchState> dispatch;  // dispatch tasks only

 private:
  std::unique_ptr<Rare> rare_;
};

inline absl::string_view Engine::RequestEq::RequestIdOf(const RequestEntry& entry) {
  return entry.task->task.request_id();
}

// A task's place in its queue: the queue's order (FIFO, LIFO, priority) is the order of these.
struct ReadyKey {
  int64_t rank;   // -priority for PRIORITY queues, else 0
  int64_t order;  // creation ordinal (negated for LIFO)
  void* task;     // the TaskRecord
  friend bool operator<(const ReadyKey& a, const ReadyKey& b) {
    if (a.rank != b.rank) return a.rank < b.rank;
    return a.order < b.order;
  }
};

// An attempt held by a worker.
struct Engine::Lease {
  WorkerRecord* worker = nullptr;  // null once the lease has ended (result, loss)
  runtime::Event done;             // the result came, the lease was lost, or the grace is over
  std::optional<v1::TaskResultReport> result;
  std::string lost;  // why, if the worker was lost
  google::protobuf::Timestamp since;
  bool cancel_sent = false;
  bool cancel_acknowledged = false;
};

struct Engine::DispatchState {
  QueueRecord* queue = nullptr;
  int64_t ordinal = 0;
  std::optional<ReadyKey> ready;  // set while in queue->ready
  runtime::Event assigned;
  std::unique_ptr<Lease> lease;  // the current attempt's, once a worker has it
};

struct Engine::QueueRecord {
  v1::Queue queue;                  // name, order, maxsize, paused, declared, create_time
  absl::btree_set<ReadyKey> ready;  // QUEUED tasks, in the order workers get them
  int64_t size = 0;                 // tasks not started (PENDING, QUEUED)
  int64_t leased = 0;
  std::vector<WorkerRecord*> workers;  // serving it, not closing
  // Set (and replaced) when size drops while creates wait for room.
  std::shared_ptr<runtime::Event> room = std::make_shared<runtime::Event>();
  int room_waiters = 0;
};

struct Engine::WorkerRecord {
  v1::Worker worker;  // id, name, queues, capacity, labels, connect/last-seen times, ...
  std::vector<QueueRecord*> queues;
  absl::btree_map<std::string, TaskRecord*> leases;  // by task id
  absl::Time last_seen;
  absl::Duration heartbeat_timeout;
  runtime::TimerHandle heartbeat_timer;
  std::deque<v1::WorkResponse> outbox;
  std::shared_ptr<runtime::Event> outbox_changed = std::make_shared<runtime::Event>();
  uint64_t last_assignment = 0;
  size_t next_queue = 0;  // where PumpWorker starts, in turn
  bool closing = false;
  bool drained_sent = false;
  absl::Status expired;  // set if it went silent past heartbeat_timeout
};

struct Engine::GroupRecord {
  explicit GroupRecord(size_t max_log_bytes) : log(max_log_bytes) {}

  v1::Group group;
  EventLog log;
  GroupRecord* parent = nullptr;
  RunnerRecord* runner = nullptr;
  std::vector<Engine::TaskKey> task_keys;  // every child task, in creation order
  std::vector<std::string> group_names;    // every child group
  absl::flat_hash_set<TaskRecord*> active_tasks;
  absl::flat_hash_set<GroupRecord*> active_groups;
  runtime::TimerHandle deadline_timer;
  int depth = 1;           // 1 for a group without a parent
  bool aborted = false;    // a child failed: the rest were cancelled
  bool cancelled = false;  // CancelGroup, or its parent's cancellation
  bool timed_out = false;
};

struct Engine::EventRecord {
  v1::NamedEvent event;  // waiting_tasks is filled in when read
  runtime::Event signal;
  int waiting = 0;
};

struct Engine::RunnerRecord {
  std::string id;
  v1::OpenRunnerRequest context;
  absl::Duration slow_task_duration;
  // What it owns that has not ended, by id and name (sorted, for the closing report).
  absl::btree_set<std::string> tasks;
  absl::btree_set<std::string> groups;
  // debug: its tasks that failed or timed out (for the unread-failure report at its end; the
  // first kMaxRunnerReports), and reports waiting for the stream.
  std::vector<std::string> failed_tasks;
  std::deque<v1::RunnerResponse> reports;
  int64_t reports_dropped = 0;
  std::shared_ptr<runtime::Event> reports_changed = std::make_shared<runtime::Event>();
  bool closing = false;
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_RECORDS_H_
