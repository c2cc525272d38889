// asyncio's test_timeouts.py behaviours, re-expressed.
#include "scheduler/runtime/timeout.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/queue.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

using ::cotask::testing::StatusIs;

Task<int> SleepThen(EventLoop::Duration d, int value, std::vector<std::string>* log) {
  absl::Status s = co_await Sleep(d);
  if (log != nullptr) log->push_back(s.ok() ? "slept" : "op: " + std::string(s.message()));
  COTASK_CO_RETURN_IF_ERROR(s);
  co_return value;
}

int Cancelling() { return internal::CurrentTaskOrDie("test").cancelling(); }

TEST(TimeoutTest, AnOperationThatEndsInTimeKeepsItsResult) {
  Runner runner;
  auto main = []() -> Task<int> {
    absl::StatusOr<int> v = co_await Timeout(1h, SleepThen(1ms, 5, nullptr));
    EXPECT_EQ(Cancelling(), 0);
    co_return v;
  };
  EXPECT_EQ(runner.Run(main()).value(), 5);
}

TEST(TimeoutTest, AnOperationTooSlowIsCancelledAndTheOutcomeIsADeadlineError) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    auto start = EventLoop::Clock::now();
    absl::StatusOr<int> v = co_await Timeout(10ms, SleepThen(1h, 5, &log));
    EXPECT_GE(EventLoop::Clock::now() - start, 10ms);
    EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, "timed out after 10ms"));
    EXPECT_EQ(Cancelling(), 0);     // the timeout's own cancellation was withdrawn
    co_return co_await Sleep(1ms);  // and the task goes on normally
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("op: timeout"));
}

TEST(TimeoutTest, AZeroTimeoutExpiresBeforeASuspendingOperationEnds) {
  Runner runner;
  auto main = []() -> Task<void> {
    absl::Status s = co_await Timeout(0ms, Sleep(1h));
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(TimeoutTest, NestedTimeoutsEachReportTheirOwnExpiry) {
  Runner runner;
  auto main = []() -> Task<void> {
    // The inner one expires first: the outer sees the inner's deadline error pass through.
    absl::StatusOr<int> a = co_await Timeout(1h, Timeout(5ms, SleepThen(1h, 1, nullptr)));
    EXPECT_THAT(a.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, "timed out after 5ms"));
    // The outer one expires first: the inner sees a cancellation that is not its own.
    absl::StatusOr<int> b = co_await Timeout(5ms, Timeout(1h, SleepThen(1h, 1, nullptr)));
    EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, "timed out after 5ms"));
    EXPECT_EQ(Cancelling(), 0);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(TimeoutTest, ACancellationFromOutsideStaysACancellation) {
  Runner runner;
  auto guarded = []() -> Task<int> { co_return co_await Timeout(1h, SleepThen(1h, 1, nullptr)); };
  auto main = [&]() -> Task<void> {
    TaskHandle<int> t = CreateTask(guarded());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    t.Cancel("outside");
    absl::StatusOr<int> v = co_await Shield(t);
    EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kCancelled, "outside"));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

// Expires, and is cancelled from outside too, before the task gets to run: the outside
// request must not be swallowed by the timeout.
TEST(TimeoutTest, ExpiryAndAnOutsideCancellationTogetherStayACancellation) {
  Runner runner;
  auto guarded = []() -> Task<int> { co_return co_await Timeout(2ms, SleepThen(1h, 1, nullptr)); };
  auto main = [&]() -> Task<void> {
    TaskHandle<int> t = CreateTask(guarded());
    EventLoop& loop = internal::CurrentTaskOrDie("test").loop();
    // Due at the same time as the timeout: whichever fires first, the outcome is CANCELLED.
    loop.CallLater(2ms, [t] { t.Cancel("outside"); });
    absl::StatusOr<int> v = co_await Shield(t);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kCancelled);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

Task<int> IgnoresCancellation() {
  (void)co_await Sleep(20ms);  // cancelled by the timeout, and ignored
  co_return 99;
}

TEST(TimeoutTest, AnOperationThatIgnoresTheCancellationKeepsItsValue) {
  Runner runner;
  auto main = []() -> Task<int> {
    absl::StatusOr<int> v = co_await Timeout(1ms, IgnoresCancellation());
    EXPECT_EQ(Cancelling(), 0);
    co_return v;
  };
  EXPECT_EQ(runner.Run(main()).value(), 99);
}

TEST(TimeoutTest, WorksOnAnyAwaitableWithAStatusResult) {
  Runner runner;
  Queue<int> queue;
  auto main = [&]() -> Task<void> {
    absl::StatusOr<int> got = co_await Timeout(2ms, queue.Get());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(4));
    got = co_await Timeout(1h, queue.Get());
    EXPECT_EQ(got.value(), 4);
    TaskHandle<int> t = CreateTask(SleepThen(1h, 1, nullptr));
    absl::StatusOr<int> v = co_await Timeout(2ms, t);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_TRUE(t.cancelled());  // awaiting a task and being cancelled cancels it
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

}  // namespace
}  // namespace cotask::runtime
