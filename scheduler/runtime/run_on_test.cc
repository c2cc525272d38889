#include "scheduler/runtime/run_on.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "scheduler/runtime/loop_thread.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::cotask::testing::StatusIs;
using namespace std::chrono_literals;

Task<std::thread::id> ThreadOf(EventLoop::Duration delay) {
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(delay));
  co_return std::this_thread::get_id();
}

Task<std::thread::id> HopAndBack(EventLoop* other, EventLoop::Duration delay) {
  COTASK_CO_ASSIGN_OR_RETURN(std::thread::id remote, co_await RunOn(*other, ThreadOf(delay)));
  co_return remote;
}

TEST(RunOnTest, RunsOnTheTargetLoopAndResumesOnTheCallersOwn) {
  EventLoop loop;    // before `other`: outlives the thread that posts to it
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  absl::StatusOr<std::thread::id> remote = loop.RunUntilComplete(HopAndBack(&other.loop(), 1ms));
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_NE(*remote, std::this_thread::get_id());
}

TEST(RunOnTest, CancellingTheCallerCancelsTheRemoteTask) {
  EventLoop loop;    // before `other`: outlives the thread that posts to it
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  TaskHandle<std::thread::id> call = loop.CreateTask(HopAndBack(&other.loop(), 1h));
  loop.CallLater(5ms, [&] { call.Cancel("stop"); });
  EXPECT_THAT(loop.RunUntilComplete(call).status(), StatusIs(absl::StatusCode::kCancelled, "stop"));
}

TEST(RunOnTest, CancelledBeforeTheRemoteStartsItNeverRuns) {
  EventLoop loop;    // before `other`: outlives the thread that posts to it
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  TaskHandle<std::thread::id> call = loop.CreateTask(HopAndBack(&other.loop(), 0ms));
  loop.CallSoon([&] { call.Cancel("early"); });
  absl::StatusOr<std::thread::id> outcome = loop.RunUntilComplete(call);
  // Either the cancel arrived first (CANCELLED) or the hop was quicker (a result): never a
  // hang, never both.
  if (!outcome.ok()) {
    EXPECT_THAT(outcome.status(), StatusIs(absl::StatusCode::kCancelled, "early"));
  }
}

TEST(RunOnTest, ATargetThatHasShutDownAnswersUnavailable) {
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  other.Stop();
  EventLoop loop;
  EXPECT_THAT(loop.RunUntilComplete(HopAndBack(&other.loop(), 0ms)).status(),
              StatusIs(absl::StatusCode::kUnavailable, "the target event loop has shut down"));
}

// The caller's own loop as the target (a server whose calls are served on the engine's loop):
// the same outcome, cancel and cancel-before-start, without a Post.
TEST(RunOnTest, OnTheCallersOwnLoopItRunsThereAndReturnsTheOutcome) {
  EventLoop loop;
  absl::StatusOr<std::thread::id> remote = loop.RunUntilComplete(HopAndBack(&loop, 1ms));
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(*remote, std::this_thread::get_id());
}

TEST(RunOnTest, OnTheCallersOwnLoopCancellingTheCallerCancelsTheRemoteTask) {
  EventLoop loop;
  TaskHandle<std::thread::id> call = loop.CreateTask(HopAndBack(&loop, 1h));
  loop.CallLater(5ms, [&] { call.Cancel("stop"); });
  EXPECT_THAT(loop.RunUntilComplete(call).status(), StatusIs(absl::StatusCode::kCancelled, "stop"));
}

Task<int> CountRuns(int* runs) {
  ++*runs;
  co_return 7;
}

Task<int> CallCountRuns(EventLoop* loop, int* runs) {
  co_return co_await RunOn(*loop, CountRuns(runs));
}

TEST(RunOnTest, OnTheCallersOwnLoopACancelBeforeTheRemoteStartsMeansItNeverRuns) {
  EventLoop loop;
  int runs = 0;
  TaskHandle<int> call = loop.CreateTask(CallCountRuns(&loop, &runs));
  // The caller runs first (suspending in RunOn, the remote task made but not yet run); this
  // runs right after it, in the same iteration, before the remote task's first step.
  loop.CallSoon([&] { call.Cancel("early"); });
  EXPECT_THAT(loop.RunUntilComplete(call).status(),
              StatusIs(absl::StatusCode::kCancelled, "early"));
  EXPECT_EQ(runs, 0);
}

Task<int> CountTasks(EventLoop* loop) {
  int tasks = 0;
  loop->ForEachTask([&](const TaskRef&) { ++tasks; });
  co_return tasks;
}

Task<int> CallCountTasks(EventLoop* loop) { co_return co_await RunOn(*loop, CountTasks(loop)); }

// The coroutine runs inside the one task that reports back (no second task to schedule per
// call): on the caller's own loop, the caller and that task are all there is.
TEST(RunOnTest, ACallIsOneTaskOnTheTarget) {
  EventLoop loop;
  EXPECT_EQ(loop.RunUntilComplete(CallCountTasks(&loop)).value_or(-1), 2);
}

// What a remote task did, told to the test's thread: `started` as soon as it runs (polled by
// the caller's loop), the rest when it ended (a std::promise: a hand-off TSan sees).
struct RemoteRun {
  std::atomic<bool> started = false;
  int runs = 0;
  bool cancelled = false;
  std::promise<void> ended;
};

Task<int> SleepThenCount(EventLoop::Duration delay, RemoteRun* run) {
  run->started = true;
  absl::Status slept = co_await Sleep(delay);
  run->cancelled = absl::IsCancelled(slept);
  if (slept.ok()) ++run->runs;
  run->ended.set_value();
  COTASK_CO_RETURN_IF_ERROR(slept);
  co_return run->runs;
}

// On the caller's loop: until the remote task has taken its first step. A cancel sent before
// then is a cancel before the start (the coroutine never runs), whatever delay a test picked:
// a busy machine may not run the target's thread for milliseconds.
Task<void> UntilStarted(const RemoteRun* run) {
  while (!run->started) COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
  co_return absl::OkStatus();
}

// StartOn: the remote task runs while the caller does something else; the outcome waits.
Task<int> StartThenAwait(EventLoop* other, RemoteRun* run) {
  RemoteCall<int> call = StartOn(*other, SleepThenCount(1ms, run));
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(50ms));  // the remote task ends meanwhile
  co_return co_await call;
}

TEST(RunOnTest, StartOnRunsAtOnceAndItsOutcomeWaitsToBeAwaited) {
  RemoteRun run;  // these two before `other`: they outlive the thread that touches them
  EventLoop loop;
  LoopThread other;
  other.Start();
  EXPECT_EQ(loop.RunUntilComplete(StartThenAwait(&other.loop(), &run)).value_or(-1), 1);
  EXPECT_FALSE(run.cancelled);
}

Task<int> StartThenDrop(EventLoop* other, RemoteRun* run) {
  {
    RemoteCall<int> call = StartOn(*other, SleepThenCount(1h, run));
    COTASK_CO_RETURN_IF_ERROR(co_await UntilStarted(run));
  }  // dropped before its outcome came: the remote task is cancelled
  co_return 0;
}

TEST(RunOnTest, ARemoteCallDroppedBeforeItsOutcomeCancelsTheRemoteTask) {
  RemoteRun run;  // these two before `other`: they outlive the thread that touches them
  EventLoop loop;
  LoopThread other;
  other.Start();
  ASSERT_TRUE(loop.RunUntilComplete(StartThenDrop(&other.loop(), &run)).ok());
  ASSERT_EQ(run.ended.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(run.cancelled);
  EXPECT_EQ(run.runs, 0);
}

Task<int> StartThenDropAtOnce(EventLoop* other, RemoteRun* run) {
  { RemoteCall<int> call = StartOn(*other, SleepThenCount(0ms, run)); }
  co_return 0;
}

// The target's thread is held up until the call has been started and dropped: the start and
// the cancel arrive together, and the coroutine never runs (as a task cancelled before its
// first step never does), on another thread as on the caller's own loop.
TEST(RunOnTest, ARemoteCallDroppedBeforeTheTargetStartedItNeverRuns) {
  RemoteRun run;  // these two before `other`: they outlive the thread that touches them
  EventLoop loop;
  LoopThread other;
  other.Start();
  std::promise<void> holding;
  std::promise<void> release;
  other.loop().Post([&holding, until = release.get_future()] {
    holding.set_value();
    until.wait();
  });
  holding.get_future().wait();
  ASSERT_TRUE(loop.RunUntilComplete(StartThenDropAtOnce(&other.loop(), &run)).ok());
  release.set_value();
  // Posted after the start and the cancel: runs after the remote task's first step.
  std::promise<void> after;
  other.loop().Post([&other, &after] { other.loop().CallSoon([&after] { after.set_value(); }); });
  ASSERT_EQ(after.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(run.started);
  EXPECT_EQ(run.runs, 0);
}

Task<int> StartCancelAwait(EventLoop* other, RemoteRun* run) {
  RemoteCall<int> call = StartOn(*other, SleepThenCount(1h, run));
  COTASK_CO_RETURN_IF_ERROR(co_await UntilStarted(run));
  call.Cancel("enough");
  co_return co_await call;
}

TEST(RunOnTest, ARemoteCallCancelledGivesTheRemoteTasksCancelledOutcome) {
  RemoteRun run;  // these two before `other`: they outlive the thread that touches them
  EventLoop loop;
  LoopThread other;
  other.Start();
  EXPECT_THAT(loop.RunUntilComplete(StartCancelAwait(&other.loop(), &run)).status(),
              StatusIs(absl::StatusCode::kCancelled, "enough"));
  EXPECT_TRUE(run.cancelled);
}

Task<int> StartAndAwait(EventLoop* other, RemoteRun* run) {
  RemoteCall<int> call = StartOn(*other, SleepThenCount(1h, run));
  co_return co_await call;
}

TEST(RunOnTest, AwaitingARemoteCallIsCancelledWithTheCallerAndTheRemoteTaskToo) {
  RemoteRun run;  // these two before `other`: they outlive the thread that touches them
  EventLoop loop;
  LoopThread other;
  other.Start();
  TaskHandle<int> caller = loop.CreateTask(StartAndAwait(&other.loop(), &run));
  // Cancelled once the remote task runs (the caller is awaiting it by then).
  absl::AnyInvocable<void()> cancel_once_started = [&] {
    if (run.started) {
      caller.Cancel("stop");
    } else {
      loop.CallLater(1ms, [&] { cancel_once_started(); });
    }
  };
  loop.CallSoon([&] { cancel_once_started(); });
  EXPECT_THAT(loop.RunUntilComplete(caller).status(),
              StatusIs(absl::StatusCode::kCancelled, "stop"));
  EXPECT_TRUE(run.cancelled);  // the caller waited for the remote task's cancelled end
}

}  // namespace
}  // namespace cotask::runtime
