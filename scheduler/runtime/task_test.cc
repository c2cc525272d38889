#include "scheduler/runtime/task.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

using ::cotask::testing::StatusIs;

Task<int> Add(int a, int b) { co_return a + b; }

Task<int> Record(std::vector<std::string>* log, std::string name, int value) {
  log->push_back(name);
  co_return value;
}

TEST(TaskTest, ATaskIsLazyAndAwaitingItRunsItInline) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<int> {
    Task<int> child = Record(&log, "child", 5);
    log.push_back("created");
    COTASK_CO_ASSIGN_OR_RETURN(int v, co_await std::move(child));
    log.push_back("awaited");
    co_return v;
  };
  EXPECT_EQ(runner.Run(main()).value(), 5);
  EXPECT_THAT(log, ElementsAre("created", "child", "awaited"));
}

TEST(TaskTest, CreateTaskStartsInALaterIteration) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<int> {
    TaskHandle<int> child = CreateTask(Record(&log, "child", 9));
    log.push_back("after create");
    EXPECT_FALSE(child.done());
    EXPECT_EQ(child.result().status().code(), absl::StatusCode::kFailedPrecondition);
    absl::StatusOr<int> v = co_await child;
    EXPECT_TRUE(child.done());
    EXPECT_FALSE(child.cancelled());
    EXPECT_EQ(child.result().value(), 9);
    co_return v;
  };
  EXPECT_EQ(runner.Run(main()).value(), 9);
  EXPECT_THAT(log, ElementsAre("after create", "child"));
}

Task<int> Fail(std::string message) { co_return absl::NotFoundError(message); }

TEST(TaskTest, AnErrorIsTheOutcomeAndReachesWhoeverAwaits) {
  Runner runner;
  auto main = []() -> Task<int> {
    TaskHandle<int> child = CreateTask(Fail("no such thing"));
    absl::StatusOr<int> v = co_await child;
    EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kNotFound, "no such thing"));
    EXPECT_FALSE(child.cancelled());
    co_return v;
  };
  EXPECT_THAT(runner.Run(main()).status(), StatusIs(absl::StatusCode::kNotFound, "no such thing"));
}

Task<int64_t> DeepChain(int depth) {
  int64_t sum = 0;
  for (int i = 0; i < depth; ++i) {
    COTASK_CO_ASSIGN_OR_RETURN(int v, co_await Add(i, 1));
    sum += v;
  }
  co_return sum;
}

TEST(TaskTest, ManySynchronousAwaitsDoNotGrowTheStack) {
  Runner runner;
  constexpr int64_t kDepth = 1'000'000;
  EXPECT_EQ(runner.Run(DeepChain(kDepth)).value(), kDepth * (kDepth + 1) / 2);
}

// Counts the copies made of it.
struct Copies {
  explicit Copies(int* count) : count(count) {}
  Copies(const Copies& other) : count(other.count) { ++*count; }
  Copies& operator=(const Copies&) = delete;
  Copies(Copies&&) noexcept = default;
  Copies& operator=(Copies&&) noexcept = default;
  int* count;
};

Task<Copies> MakeCopies(int* count) { co_return Copies(count); }

// Awaits a task made here twice: `co_await` (the outcome copied: other readers may come) and
// TakeOutcome (moved out). Returns the copies made by the second alone.
Task<int> AwaitBothWays(int* count) {
  TaskHandle<Copies> first = CreateTask(MakeCopies(count));
  COTASK_CO_RETURN_IF_ERROR((co_await first).status());
  const int after_first = *count;
  TaskHandle<Copies> second = CreateTask(MakeCopies(count));
  COTASK_CO_RETURN_IF_ERROR((co_await TakeOutcome(second)).status());
  EXPECT_GE(after_first, 1);
  co_return *count - after_first;
}

TEST(TaskTest, TakeOutcomeMovesTheOutcomeOutWhereAwaitingCopiesIt) {
  EventLoop loop;
  int count = 0;
  absl::StatusOr<int> copies_taking = loop.RunUntilComplete(AwaitBothWays(&count));
  ASSERT_TRUE(copies_taking.ok()) << copies_taking.status();
  EXPECT_EQ(*copies_taking, 0);
}

Task<void> SleepFor(EventLoop::Duration d, bool* body_ran) {
  *body_ran = true;
  co_return co_await Sleep(d);
}

TEST(TaskTest, CancelledBeforeItStartsTheBodyNeverRuns) {
  Runner runner;
  bool ran = false;
  auto main = [&]() -> Task<void> {
    TaskHandle<void> child = CreateTask(SleepFor(1h, &ran));
    EXPECT_TRUE(child.Cancel("stop"));
    absl::Status s = co_await child;
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kCancelled, "stop"));
    EXPECT_TRUE(child.cancelled());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_FALSE(ran);
}

Task<std::string> SleepAndReport(int* resumptions) {
  absl::Status s = co_await Sleep(1h);
  ++*resumptions;
  if (absl::IsCancelled(s)) co_return std::string("saw: ") + std::string(s.message());
  co_return std::string("slept");
}

TEST(TaskTest, CancelResumesTheSleepOnceWithTheMessageAndTheTaskMayCarryOn) {
  Runner runner;
  int resumptions = 0;
  auto main = [&]() -> Task<std::string> {
    TaskHandle<std::string> child = CreateTask(SleepAndReport(&resumptions));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    EXPECT_TRUE(child.Cancel("enough"));
    EXPECT_TRUE(child.Cancel("again"));  // counted, not delivered twice
    EXPECT_EQ(child.cancelling(), 2);
    absl::StatusOr<std::string> v = co_await child;
    // The child caught the cancellation and returned normally (as catching CancelledError).
    EXPECT_FALSE(child.cancelled());
    EXPECT_FALSE(child.Cancel("too late"));
    co_return v;
  };
  EXPECT_EQ(runner.Run(main()).value(), "saw: again");
  EXPECT_EQ(resumptions, 1);
}

Task<void> WakeThenWork(Event* event, std::vector<std::string>* log) {
  COTASK_CO_RETURN_IF_ERROR(co_await event->Wait());
  log->push_back("woken");
  absl::Status s = co_await Sleep(1h);
  log->push_back(std::string(s.message()));
  co_return s;
}

TEST(TaskTest, CancelAfterTheAwaitCompletedIsDeliveredAtTheNextAwait) {
  Runner runner;
  std::vector<std::string> log;
  Event event;
  auto main = [&]() -> Task<void> {
    TaskHandle<void> child = CreateTask(WakeThenWork(&event, &log));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));
    event.Set();           // the child's Wait has completed; it waits for its turn
    child.Cancel("late");  // so the cancellation goes to its next await
    absl::Status s = co_await child;
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kCancelled, "late"));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("woken", "late"));
}

Task<int> ReturnWithoutAwaiting(Event* event) {
  COTASK_CO_RETURN_IF_ERROR(co_await event->Wait());
  co_return 1;
}

TEST(TaskTest, ATaskThatEndsWithACancellationUndeliveredEndsCancelled) {
  Runner runner;
  Event event;
  auto main = [&]() -> Task<void> {
    TaskHandle<int> child = CreateTask(ReturnWithoutAwaiting(&event));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));
    event.Set();
    child.Cancel("bye");
    absl::StatusOr<int> v = co_await child;
    EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kCancelled, "bye"));
    EXPECT_TRUE(child.cancelled());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(TaskTest, UncancelWithdrawsAnUndeliveredRequest) {
  Runner runner;
  auto main = []() -> Task<void> {
    internal::TaskState& self = internal::CurrentTaskOrDie("test");
    EXPECT_TRUE(self.Cancel("x"));
    EXPECT_EQ(self.cancelling(), 1);
    EXPECT_EQ(self.Uncancel(), 0);
    co_return co_await Sleep(1ms);  // not cancelled
  };
  EXPECT_TRUE(runner.Run(main()).ok());
}

Task<int> Inner(std::vector<std::string>* log, bool swallow) {
  absl::Status s = co_await Sleep(1h);
  log->push_back("inner: " + std::string(s.message()));
  if (swallow) co_return 42;
  co_return s;
}

TEST(TaskTest, CancellingAnAwaitingTaskCancelsTheAwaitedOneAndWaitsForIt) {
  Runner runner;
  std::vector<std::string> log;
  auto outer = [&]() -> Task<int> {
    TaskHandle<int> inner = CreateTask(Inner(&log, /*swallow=*/false));
    absl::StatusOr<int> v = co_await inner;
    log.push_back("outer: " + std::string(v.status().message()));
    EXPECT_TRUE(inner.cancelled());
    co_return v;
  };
  auto main = [&]() -> Task<void> {
    TaskHandle<int> t = CreateTask(outer());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    t.Cancel("from main");
    absl::StatusOr<int> v = co_await Shield(t);
    EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kCancelled, "from main"));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("inner: from main", "outer: from main"));
}

TEST(TaskTest, IfTheAwaitedTaskIgnoresTheCancellationTheAwaiterGetsItAtItsNextAwait) {
  Runner runner;
  std::vector<std::string> log;
  auto outer = [&]() -> Task<int> {
    TaskHandle<int> inner = CreateTask(Inner(&log, /*swallow=*/true));
    absl::StatusOr<int> v = co_await inner;
    EXPECT_EQ(v.value(), 42);
    absl::Status s = co_await Sleep(1h);
    log.push_back("outer next await: " + std::string(s.message()));
    co_return s;
  };
  auto main = [&]() -> Task<void> {
    TaskHandle<int> t = CreateTask(outer());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    t.Cancel("stop");
    absl::StatusOr<int> v = co_await Shield(t);
    EXPECT_TRUE(t.cancelled());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("inner: stop", "outer next await: stop"));
}

Task<int> SlowValue() {
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(20ms));
  co_return 11;
}

TEST(TaskTest, ShieldStopsTheWaitButNotTheTask) {
  Runner runner;
  auto main = []() -> Task<int> {
    TaskHandle<int> slow = CreateTask(SlowValue());
    auto waiter = [](TaskHandle<int> t) -> Task<int> { co_return co_await Shield(t); };
    TaskHandle<int> w = CreateTask(waiter(slow));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    w.Cancel("give up");
    absl::StatusOr<int> wv = co_await Shield(w);
    EXPECT_THAT(wv.status(), StatusIs(absl::StatusCode::kCancelled, "give up"));
    EXPECT_FALSE(slow.done());
    co_return co_await slow;
  };
  EXPECT_EQ(runner.Run(main()).value(), 11);
}

TEST(TaskTest, ATaskCannotAwaitItself) {
  Runner runner;
  TaskHandle<int> self;
  auto main = [&]() -> Task<int> {
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));
    co_return co_await self;
  };
  auto outer = [&]() -> Task<int> {
    self = CreateTask(main());
    co_return co_await self;
  };
  EXPECT_THAT(runner.Run(outer()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "a task cannot await itself"));
}

// Deliberately flows off the end: the runtime must catch it (GCC does not warn; clang does).
#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wreturn-type"
#endif
Task<void> ForgetsToReturn() {
  if (false) co_return absl::OkStatus();
}
#ifdef __clang__
#pragma clang diagnostic pop
#endif

TEST(TaskDeathTest, ACoroutineThatFallsOffTheEndIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Runner runner;
        (void)runner.Run(ForgetsToReturn());
      },
      "ended without co_return");
}

}  // namespace
}  // namespace cotask::runtime
