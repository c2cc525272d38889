// EngineObserver: what the engine tells whoever watches it (the service's metrics), without
// knowing who that is. Called on the engine's loop thread, synchronously: implementations are
// quick (counters) and must not call back into the engine.
#ifndef COTASK_SCHEDULER_ENGINE_OBSERVER_H_
#define COTASK_SCHEDULER_ENGINE_OBSERVER_H_

#include <cstdint>

#include "cotask/v1/scheduler.pb.h"

namespace cotask::engine {

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // Every task state change: `from` is STATE_UNSPECIFIED at creation; RUNNING -> PENDING is a
  // retry (task.attempt() is the next attempt's number). `task` is as it is after the change.
  virtual void OnTaskState(const v1::Task& task, v1::Task::State from, v1::Task::State to) = 0;
  // Every group state change (OPEN at creation).
  virtual void OnGroupState(const v1::Group& group, v1::Group::State to) = 0;
  // The event logs: the bytes all of them hold now, and events just dropped to stay bounded.
  virtual void OnEventLogs(int64_t bytes_retained, int64_t events_dropped) = 0;
  // An exec task's process was started, or could not be.
  virtual void OnSpawn(bool started) = 0;
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_OBSERVER_H_
