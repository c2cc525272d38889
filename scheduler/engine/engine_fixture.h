// EngineTest: an engine on a loop of the test's thread, with helpers to run it until a task or
// group has ended. For the engine's unit tests.
#ifndef COTASK_SCHEDULER_ENGINE_ENGINE_FIXTURE_H_
#define COTASK_SCHEDULER_ENGINE_ENGINE_FIXTURE_H_

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/engine/engine.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask::engine {

// Engine::CreateTasks into a reply of its own.
inline absl::StatusOr<v1::CreateTasksResponse> CreateTasks(Engine& engine,
                                                           const v1::CreateTasksRequest& request) {
  v1::CreateTasksResponse reply;
  COTASK_RETURN_IF_ERROR(engine.CreateTasks(request, &reply));
  return reply;
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : processes_(loop_) {}
  ~EngineTest() override {
    if (engine_) loop_.RunUntilComplete(engine_->Drain(std::chrono::seconds(0))).IgnoreError();
  }

  Engine& engine(EngineOptions options = {}) {
    if (!engine_) engine_ = std::make_unique<Engine>(loop_, processes_, std::move(options));
    return *engine_;
  }

  // A task made (the test fails if it cannot be), and a task as it is now.
  std::string Create(const v1::CreateTaskRequest& request) {
    absl::StatusOr<v1::Task> task = engine_->CreateTask(request);
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? task->id() : "";
  }
  v1::Task Get(const std::string& id) {
    v1::GetTaskRequest get;
    get.set_id(id);
    return *engine_->GetTask(get);
  }

  // Every event of a log from target.from_sequence on, waiting for its end (or with no_follow,
  // up to now).
  std::vector<v1::Event> WatchAll(v1::WatchRequest target) {
    auto events = loop_.RunUntilComplete(Collect(engine_.get(), std::move(target)));
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<v1::Event>{};
  }
  static runtime::Task<std::vector<v1::Event>> Collect(Engine* engine, v1::WatchRequest target) {
    std::vector<v1::Event> all;
    int64_t from = std::max<int64_t>(1, target.from_sequence());
    while (true) {
      COTASK_CO_ASSIGN_OR_RETURN(Engine::WatchBatch batch,
                                 co_await engine->NextEvents(target, from, 1 << 20));
      all.insert(all.end(), batch.events.begin(), batch.events.end());
      from = batch.next_sequence;
      if (batch.ended) co_return all;
    }
  }
  v1::Task AwaitTask(const std::string& id) {
    v1::WatchRequest target;
    target.set_task(id);
    WatchAll(target);
    v1::GetTaskRequest get;
    get.set_id(id);
    return *engine_->GetTask(get);
  }
  v1::Group AwaitGroup(const std::string& name) {
    v1::WatchRequest target;
    target.set_group(name);
    WatchAll(target);
    v1::GetGroupRequest get;
    get.set_name(name);
    return *engine_->GetGroup(get);
  }
  void RunFor(std::chrono::milliseconds d) {
    loop_
        .RunUntilComplete([](std::chrono::milliseconds d) -> runtime::Task<void> {
          co_return co_await runtime::Sleep(d);
        }(d))
        .IgnoreError();
  }
  v1::CloseGroupRequest Close(const std::string& name) {
    v1::CloseGroupRequest request;
    request.set_name(name);
    return request;
  }

  runtime::EventLoop loop_;
  process::ProcessSupervisor processes_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_ENGINE_FIXTURE_H_
