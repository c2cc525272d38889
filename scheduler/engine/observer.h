// EngineObserver: what the engine tells whoever watches it (the service's metrics), without
// knowing who that is; an observer overrides what it wants to hear. Called on the engine's loop
// thread, synchronously: implementations are quick (counters) and must not call back into the
// engine.
#ifndef COTASK_SCHEDULER_ENGINE_OBSERVER_H_
#define COTASK_SCHEDULER_ENGINE_OBSERVER_H_

#include <cstdint>
#include <string>

#include "cotask/v1/scheduler.pb.h"
#include "scheduler/engine/task_key.h"

namespace cotask::engine {

// A task's times, in Unix nanoseconds; 0: not yet (start, end). The engine keeps them so, not
// as the three Timestamp messages of v1::Task (made and freed on its thread for every task),
// and puts them in the task's views.
struct TaskTimes {
  int64_t create = 0;
  int64_t start = 0;  // of the current attempt's run (RUNNING)
  int64_t end = 0;
};

// A task's state change, as an observer is told it: the task as it is after it.
struct TaskChange {
  const v1::Task& task;  // without its id, times and group, which are these:
  TaskKey key;           // the number its id spells (TaskIdOf spells it)
  const TaskTimes& times;
  const std::string& group;  // its group's name; "": none
  v1::Task::State from;      // STATE_UNSPECIFIED at creation
  v1::Task::State to;        // RUNNING -> PENDING is a retry (attempt: the next one's number)
};

// A queue's figures now (see v1::Queue).
struct QueueFigures {
  const std::string& name;
  int64_t size;    // not started
  int64_t depth;   // QUEUED, waiting for a worker
  int64_t leased;  // held by workers
  int64_t workers;
  bool paused;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // Every task state change.
  virtual void OnTaskState(const TaskChange& /*change*/) {}
  // Every group state change (OPEN at creation).
  virtual void OnGroupState(const v1::Group& /*group*/, v1::Group::State /*to*/) {}
  // The event logs: the bytes all of them hold now, and events just dropped to stay bounded.
  virtual void OnEventLogs(int64_t /*bytes_retained*/, int64_t /*events_dropped*/) {}
  // An exec task's process was started, or could not be.
  virtual void OnSpawn(bool /*started*/) {}
  // Queues and workers: a queue's figures changed; the workers connected now; a task's lease
  // was lost with its worker; a create was refused because the queue was full.
  virtual void OnQueue(const QueueFigures& /*queue*/) {}
  virtual void OnWorkers(int64_t /*connected*/) {}
  virtual void OnLeaseLost(const std::string& /*queue*/) {}
  virtual void OnQueueFull(const std::string& /*queue*/) {}
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_OBSERVER_H_
