// The engine alone, in-process on one loop (no gRPC): what one task costs cotaskd's engine
// thread, the bound on every service scenario's tasks/s. A profile of this binary
// (`perf record bench/engine_bench`) shows the engine's costs without the transport's.
//   build/release/bench/engine_bench [--benchmark_repetitions=5]
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "google/protobuf/arena.h"
#include "scheduler/engine/engine.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask::engine {
namespace {

// Runs the loop until the group has no active child.
runtime::Task<void> AwaitGroupIdle(Engine* engine, std::string name) {
  v1::GetGroupRequest get;
  get.set_name(std::move(name));
  while (engine->GetGroup(get)->active_children() > 0) {
    COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(std::chrono::nanoseconds(0)));
  }
  co_return absl::OkStatus();
}

struct Bench {
  explicit Bench(EngineOptions options = {})
      : processes(loop), engine(loop, processes, std::move(options)) {
    v1::CreateGroupRequest group;
    group.set_name("bench");
    group.set_policy(v1::Group::ALL);
    if (!engine.CreateGroup(group).ok()) std::abort();
  }
  ~Bench() { loop.RunUntilComplete(engine.Drain(std::chrono::seconds(0))).IgnoreError(); }

  runtime::EventLoop loop;
  process::ProcessSupervisor processes;
  Engine engine;
};

void AddNoOp(int64_t i, v1::CreateTasksRequest* batch) {
  v1::CreateTaskRequest& request = *batch->add_requests();
  request.mutable_spec()->mutable_sleep();  // sleep(0)
  request.set_group("bench");
  request.set_request_id(absl::StrCat("bench-request-", i));  // as the clients set one
}

// CreateTasks of state.range(0) sleep(0) tasks into a group, then the loop runs until they
// have all ended: per task, everything the engine does for it (records, state changes, event
// logs, the group's bookkeeping, forgetting it later).
void BM_CreateTasksAndRunThem(benchmark::State& state) {
  EngineOptions options;
  if (state.range(1) > 0) options.retain_finished_tasks = static_cast<size_t>(state.range(1));
  Bench bench(options);
  int64_t next = 0;
  for (auto _ : state) {
    // (As the server has them: the call's request and reply on an arena of the call's.)
    google::protobuf::Arena arena;
    auto* request = google::protobuf::Arena::CreateMessage<v1::CreateTasksRequest>(&arena);
    auto* reply = google::protobuf::Arena::CreateMessage<v1::CreateTasksResponse>(&arena);
    for (int64_t i = 0; i < state.range(0); ++i) AddNoOp(next++, request);
    if (!bench.engine.CreateTasks(*request, reply).ok()) std::abort();
    if (!bench.loop.RunUntilComplete(AwaitGroupIdle(&bench.engine, "bench")).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
// Arguments: tasks a call, and --retain_finished_tasks (0: its default).
BENCHMARK(BM_CreateTasksAndRunThem)
    ->Args({1000, 0})
    ->Args({1000, 1000})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cotask::engine

BENCHMARK_MAIN();
