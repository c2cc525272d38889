// Benchmarks of the coroutine runtime (scheduler/runtime). Run through bench/run-runtime,
// which also times the same work in CPython asyncio; figures live in bench/README.md.
#include <grpc/support/time.h>
#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/loop_thread.h"
#include "scheduler/runtime/operation_base.h"
#include "scheduler/runtime/queue.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/semaphore.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/task_group.h"

namespace cotask::runtime {
namespace {

using namespace std::chrono_literals;

// How many children the body starts before it yields to let them run.
constexpr int kBatch = 1024;

Task<void> Trivial() { co_return absl::OkStatus(); }

// Creating, running and finishing one trivial child task in a TaskGroup.
void BM_TaskGroupChild(benchmark::State& state) {
  Runner runner;
  auto body = [&](TaskGroup& group) -> Task<void> {
    int n = 0;
    for (auto _ : state) {
      (void)group.CreateTask(Trivial());
      if (++n == kBatch) {
        n = 0;
        COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));  // the batch runs and ends here
      }
    }
    co_return absl::OkStatus();
  };
  auto main = [&]() -> Task<void> { co_return co_await TaskGroup::Run(body); };
  if (!runner.Run(main()).ok()) state.SkipWithError("task group failed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TaskGroupChild);

// A coroutine that yields with Sleep(0) and is resumed by the loop: one ready-queue round trip.
void BM_SleepZeroRoundTrip(benchmark::State& state) {
  Runner runner;
  auto main = [&]() -> Task<void> {
    for (auto _ : state) COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));
    co_return absl::OkStatus();
  };
  if (!runner.Run(main()).ok()) state.SkipWithError("sleep failed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SleepZeroRoundTrip);

// Post from another thread: callbacks per second through the mutex-guarded queue and the
// one alarm, while the loop runs on its own thread.
void BM_PostFromAnotherThread(benchmark::State& state) {
  LoopThread running;
  running.Start();
  EventLoop& loop = running.loop();
  std::atomic<int64_t> ran{0};
  int64_t posted = 0;
  for (auto _ : state) {
    loop.Post([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
    ++posted;
  }
  while (ran.load() < posted) std::this_thread::yield();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PostFromAnotherThread)->UseRealTime();

// Post to a loop blocked in its completion queue and wait until the callback has run: the
// wake-up latency another thread sees.
void BM_PostRoundTripToABlockedLoop(benchmark::State& state) {
  LoopThread running;
  running.Start();
  EventLoop& loop = running.loop();
  std::atomic<int64_t> ran{0};
  int64_t posted = 0;
  for (auto _ : state) {
    loop.Post([&ran] { ran.fetch_add(1, std::memory_order_release); });
    ++posted;
    while (ran.load(std::memory_order_acquire) < posted) {
    }
  }
}
BENCHMARK(BM_PostRoundTripToABlockedLoop)->UseRealTime();

// Two tasks passing one permit back and forth through a Semaphore: per hand-off.
Task<void> PingPong(Semaphore* mine, Semaphore* theirs, int64_t rounds) {
  for (int64_t i = 0; i < rounds; ++i) {
    COTASK_CO_RETURN_IF_ERROR(co_await mine->Acquire());
    COTASK_CO_RETURN_IF_ERROR(theirs->Release());
  }
  co_return absl::OkStatus();
}

void BM_SemaphoreHandOff(benchmark::State& state) {
  constexpr int64_t kRounds = 1 << 16;
  Runner runner;
  for (auto _ : state) {
    Semaphore a(1), b(1);
    auto main = [&]() -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(co_await b.Acquire());  // b starts taken: a goes first
      TaskHandle<void> x = CreateTask(PingPong(&a, &b, kRounds));
      TaskHandle<void> y = CreateTask(PingPong(&b, &a, kRounds));
      COTASK_CO_RETURN_IF_ERROR(co_await x);
      co_return co_await y;
    };
    if (!runner.Run(main()).ok()) state.SkipWithError("ping-pong failed");
  }
  state.SetItemsProcessed(state.iterations() * 2 * kRounds);
}
BENCHMARK(BM_SemaphoreHandOff)->Unit(benchmark::kMillisecond);

// A producer and a consumer through a Queue of maxsize 1: per item.
Task<void> Produce(Queue<int64_t>* queue, int64_t n) {
  for (int64_t i = 0; i < n; ++i) COTASK_CO_RETURN_IF_ERROR(co_await queue->Put(i));
  co_return absl::OkStatus();
}
Task<int64_t> Consume(Queue<int64_t>* queue, int64_t n) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    COTASK_CO_ASSIGN_OR_RETURN(int64_t v, co_await queue->Get());
    sum += v;
  }
  co_return sum;
}

void BM_QueueHandOff(benchmark::State& state) {
  constexpr int64_t kItems = 1 << 16;
  Runner runner;
  for (auto _ : state) {
    Queue<int64_t> queue(1);
    auto main = [&]() -> Task<int64_t> {
      TaskHandle<void> producer = CreateTask(Produce(&queue, kItems));
      TaskHandle<int64_t> consumer = CreateTask(Consume(&queue, kItems));
      COTASK_CO_RETURN_IF_ERROR(co_await producer);
      co_return co_await consumer;
    };
    auto sum = runner.Run(main());
    if (!sum.ok()) state.SkipWithError("queue failed");
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kItems);
}
BENCHMARK(BM_QueueHandOff)->Unit(benchmark::kMillisecond);

// --- Timers: one heap bounding the loop's wait (what EventLoop does) against one grpc::Alarm
// per timer. Each case schedules `n` timers 1-5 ms out and waits until all have fired; the
// "cancelled" cases schedule and cancel them (the fate of most timeouts).

std::vector<EventLoop::Duration> Delays(int64_t n) {
  std::mt19937 rng(1);
  std::vector<EventLoop::Duration> delays;
  for (int64_t i = 0; i < n; ++i) delays.push_back(1ms + std::chrono::microseconds(rng() % 4000));
  return delays;
}

void BM_TimersHeap(benchmark::State& state) {
  const auto delays = Delays(state.range(0));
  EventLoop loop;
  for (auto _ : state) {
    int64_t left = static_cast<int64_t>(delays.size());
    for (auto d : delays) {
      loop.CallLater(d, [&] {
        if (--left == 0) loop.Stop();
      });
    }
    loop.Run();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_TimersHeap)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond);

class AlarmTimer final : public OperationBase {
 public:
  AlarmTimer(EventLoop* loop, int64_t* left) : loop_(loop), left_(left) {}
  void Start(EventLoop::Duration d) {
    alarm_.Set(
        &loop_->completion_queue(),
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(d.count(), GPR_TIMESPAN)),
        static_cast<OperationBase*>(this));
  }
  void Cancel() { alarm_.Cancel(); }
  void Complete(bool) override {
    if (--*left_ == 0) loop_->Stop();
  }

 private:
  EventLoop* loop_;
  int64_t* left_;
  grpc::Alarm alarm_;
};

// Sets one alarm per delay; each one's completion counts `left` down and stops the loop at 0.
std::vector<std::unique_ptr<AlarmTimer>> StartAlarms(
    EventLoop& loop, int64_t& left, const std::vector<EventLoop::Duration>& delays) {
  left = static_cast<int64_t>(delays.size());
  std::vector<std::unique_ptr<AlarmTimer>> timers;
  for (auto d : delays) {
    timers.push_back(std::make_unique<AlarmTimer>(&loop, &left));
    timers.back()->Start(d);
  }
  return timers;
}

void BM_TimersAlarmEach(benchmark::State& state) {
  const auto delays = Delays(state.range(0));
  EventLoop loop;
  for (auto _ : state) {
    int64_t left = 0;
    auto timers = StartAlarms(loop, left, delays);
    loop.Run();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_TimersAlarmEach)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond);

void BM_TimersHeapCancelled(benchmark::State& state) {
  const auto delays = Delays(state.range(0));
  EventLoop loop;
  std::vector<TimerHandle> handles;
  for (auto _ : state) {
    handles.clear();
    for (auto d : delays) handles.push_back(loop.CallLater(d, [] {}));
    for (auto& h : handles) h.Cancel();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_TimersHeapCancelled)->Arg(100000)->Unit(benchmark::kMillisecond);

void BM_TimersAlarmEachCancelled(benchmark::State& state) {
  const auto delays = Delays(state.range(0));
  EventLoop loop;
  for (auto _ : state) {
    int64_t left = 0;
    auto timers = StartAlarms(loop, left, delays);
    for (auto& t : timers) t->Cancel();
    loop.Run();  // every cancelled alarm still comes back through the queue
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_TimersAlarmEachCancelled)->Arg(100000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cotask::runtime

BENCHMARK_MAIN();
