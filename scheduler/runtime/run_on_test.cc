#include "scheduler/runtime/run_on.h"

#include <chrono>
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
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  EventLoop loop;
  absl::StatusOr<std::thread::id> remote = loop.RunUntilComplete(HopAndBack(&other.loop(), 1ms));
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_NE(*remote, std::this_thread::get_id());
}

TEST(RunOnTest, CancellingTheCallerCancelsTheRemoteTask) {
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  EventLoop loop;
  TaskHandle<std::thread::id> call = loop.CreateTask(HopAndBack(&other.loop(), 1h));
  loop.CallLater(5ms, [&] { call.Cancel("stop"); });
  EXPECT_THAT(loop.RunUntilComplete(call).status(), StatusIs(absl::StatusCode::kCancelled, "stop"));
}

TEST(RunOnTest, CancelledBeforeTheRemoteStartsItNeverRuns) {
  LoopThread other;  // the other loop, on a thread of its own
  other.Start();
  EventLoop loop;
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

}  // namespace
}  // namespace cotask::runtime
