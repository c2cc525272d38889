// asyncio's test_taskgroups.py behaviours, re-expressed.
#include "scheduler/runtime/task_group.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/timeout.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using namespace std::chrono_literals;

using ::cotask::testing::StatusIs;

// A child that sleeps, then returns a value or fails; it logs how it ended.
Task<int> Child(std::vector<std::string>* log, std::string name, EventLoop::Duration d,
                absl::Status fail = absl::OkStatus()) {
  absl::Status s = co_await Sleep(d);
  if (!s.ok()) {
    log->push_back(name + " cancelled");
    co_return s;
  }
  if (!fail.ok()) {
    log->push_back(name + " failed");
    co_return fail;
  }
  log->push_back(name + " done");
  co_return 1;
}

TEST(TaskGroupTest, WaitsForEveryChildAndReturnsTheBodysResult) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<int> {
    return TaskGroup::Run([&](TaskGroup& group) -> Task<int> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "a", 10ms)).status());
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "b", 1ms)).status());
      log.push_back("body done");
      co_return 7;
    });
  };
  EXPECT_EQ(runner.Run(main()).value(), 7);
  EXPECT_THAT(log, ElementsAre("body done", "b done", "a done"));
}

TEST(TaskGroupTest, FirstFailureCancelsTheSiblingsAndTheBody) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    absl::StatusOr<int> r = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<int> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "slow", 1h)).status());
      COTASK_CO_RETURN_IF_ERROR(
          group.CreateTask(Child(&log, "bad", 1ms, absl::InternalError("boom"))).status());
      absl::Status s = co_await Sleep(1h);
      log.push_back("body: " + std::string(s.message()));
      co_return s;
    });
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(r.status().message(), "task group failed with 1 error: [INTERNAL: boom]");
    EXPECT_THAT(TaskGroupErrors(r.status()), ElementsAre(absl::InternalError("boom")));
    // The group withdrew its own cancellation of this task: it can go on.
    internal::TaskState& self = internal::CurrentTaskOrDie("test");
    EXPECT_EQ(self.cancelling(), 0);
    co_return co_await Sleep(1ms);
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, UnorderedElementsAre("bad failed", "slow cancelled",
                                        "body: cancelled by its task group: a child task failed"));
  EXPECT_EQ(log.front(), "bad failed");
}

// A child that ignores its cancellation and fails anyway, a little later.
Task<int> Stubborn(absl::Status fail) {
  (void)co_await Sleep(1h);                        // only the group's cancellation ends this
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(2ms));  // the request was consumed: a plain sleep
  co_return fail;
}

TEST(TaskGroupTest, TheErrorListsEveryFailureInTheOrderTheyEnded) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Stubborn(absl::NotFoundError("second"))).status());
      COTASK_CO_RETURN_IF_ERROR(
          group.CreateTask(Child(&log, "x", 1ms, absl::InternalError("first"))).status());
      co_return absl::OkStatus();
    });
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(s.message(),
              "task group failed with 2 errors: [INTERNAL: first]; [NOT_FOUND: second]");
    EXPECT_THAT(TaskGroupErrors(s),
                ElementsAre(absl::InternalError("first"), absl::NotFoundError("second")));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("x failed"));
}

TEST(TaskGroupTest, NoNewChildrenOnceAChildHasFailed) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(
          group.CreateTask(Child(&log, "bad", 0ms, absl::InternalError("boom"))).status());
      (void)co_await Sleep(1h);  // cancelled by the failure
      absl::StatusOr<TaskHandle<int>> late = group.CreateTask(Child(&log, "late", 0ms));
      EXPECT_THAT(late.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          "TaskGroup is shutting down: it accepts no new tasks"));
      co_return absl::OkStatus();
    });
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("bad failed"));  // "late" never ran
}

TEST(TaskGroupTest, ABodyErrorCancelsTheChildrenAndIsListedLast) {
  Runner runner;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "a", 1h)).status());
      COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));  // a has started
      co_return absl::InvalidArgumentError("body broke");
    });
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(TaskGroupErrors(s), ElementsAre(absl::InvalidArgumentError("body broke")));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a cancelled"));
}

TEST(TaskGroupTest, CancellingTheOwnerInTheBodyCancelsTheChildrenAndWaitsForThem) {
  Runner runner;
  std::vector<std::string> log;
  auto owner = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "a", 1h)).status());
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(Child(&log, "b", 1h)).status());
      co_return co_await Sleep(1h);
    });
    log.push_back("group: " + std::string(s.message()));
    co_return s;
  };
  auto main = [&]() -> Task<void> {
    TaskHandle<void> t = CreateTask(owner());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    t.Cancel("owner cancelled");
    absl::Status s = co_await Shield(t);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kCancelled, "owner cancelled"));
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(t.cancelling(), 1);  // an outside request is not withdrawn
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a cancelled", "b cancelled", "group: owner cancelled"));
}

// On cancellation, takes a while to clean up before it ends.
Task<int> SlowToStop(std::vector<std::string>* log) {
  absl::Status s = co_await Sleep(1h);
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(5ms));  // the request was delivered already
  log->push_back("cleaned up after: " + std::string(s.message()));
  co_return s;
}

TEST(TaskGroupTest, CancellingTheOwnerAtTheExitStillWaitsForEveryChild) {
  Runner runner;
  std::vector<std::string> log;
  auto owner = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(SlowToStop(&log)).status());
      co_return absl::OkStatus();  // straight to the exit, which waits
    });
    log.push_back("group: " + std::string(s.message()));
    co_return s;
  };
  auto main = [&]() -> Task<void> {
    TaskHandle<void> t = CreateTask(owner());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    t.Cancel("stop");
    (void)co_await Shield(t);
    EXPECT_TRUE(t.cancelled());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("cleaned up after: cancelled by its task group", "group: stop"));
}

TEST(TaskGroupTest, ChildrenMayAddSiblingsWhileTheGroupWaitsAtItsExit) {
  Runner runner;
  std::vector<std::string> log;
  // Outlives every task that runs it (a closure in the body's frame would die with the body).
  auto spawner = [&](TaskGroup* group) -> Task<int> {
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(2ms));
    COTASK_CO_RETURN_IF_ERROR(group->CreateTask(Child(&log, "sibling", 2ms)).status());
    co_return 0;
  };
  auto main = [&]() -> Task<void> {
    co_return co_await TaskGroup::Run([&](TaskGroup& group) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(group.CreateTask(spawner(&group)).status());
      co_return absl::OkStatus();
    });
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("sibling done"));
}

TEST(TaskGroupTest, GroupsNestAndAnInnerFailureIsTheOuterOnesChildFailure) {
  Runner runner;
  std::vector<std::string> log;
  auto inner_group = [&]() -> Task<int> {
    return TaskGroup::Run([&](TaskGroup& inner) -> Task<int> {
      COTASK_CO_RETURN_IF_ERROR(
          inner.CreateTask(Child(&log, "leaf", 1ms, absl::DataLossError("leaf broke"))).status());
      COTASK_CO_RETURN_IF_ERROR(inner.CreateTask(Child(&log, "leaf sibling", 1h)).status());
      co_return 0;
    });
  };
  auto main = [&]() -> Task<void> {
    absl::Status s = co_await TaskGroup::Run([&](TaskGroup& outer) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(outer.CreateTask(inner_group()).status());
      COTASK_CO_RETURN_IF_ERROR(outer.CreateTask(Child(&log, "outer sibling", 1h)).status());
      co_return absl::OkStatus();
    });
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    std::vector<absl::Status> outer_errors = TaskGroupErrors(s);
    EXPECT_EQ(outer_errors.size(), 1u);
    EXPECT_THAT(TaskGroupErrors(outer_errors[0]), ElementsAre(absl::DataLossError("leaf broke")));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, UnorderedElementsAre("leaf failed", "leaf sibling cancelled",
                                        "outer sibling cancelled"));
}

TEST(TaskGroupTest, ATimeoutAroundAGroupCancelsItAndIsADeadlineError) {
  Runner runner;
  std::vector<std::string> log;
  auto group = [&]() -> Task<void> {
    return TaskGroup::Run([&](TaskGroup& g) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(g.CreateTask(Child(&log, "a", 1h)).status());
      COTASK_CO_RETURN_IF_ERROR(g.CreateTask(Child(&log, "b", 1h)).status());
      co_return absl::OkStatus();
    });
  };
  auto main = [&]() -> Task<void> {
    absl::Status s = co_await Timeout(5ms, group());
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, "timed out after 5ms"));
    EXPECT_EQ(internal::CurrentTaskOrDie("test").cancelling(), 0);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a cancelled", "b cancelled"));
}

TEST(TaskGroupTest, AnEmptyGroupEndsAtOnce) {
  Runner runner;
  auto main = []() -> Task<int> {
    return TaskGroup::Run([](TaskGroup& group) -> Task<int> {
      EXPECT_EQ(group.size(), 0u);
      co_return 3;
    });
  };
  EXPECT_EQ(runner.Run(main()).value(), 3);
}

TEST(TaskGroupErrorTest, RoundTripsAndIgnoresOtherStatuses) {
  absl::Status e = TaskGroupError({absl::AbortedError("x"), absl::UnknownError("y; z")});
  EXPECT_EQ(e.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(TaskGroupErrors(e), ElementsAre(absl::AbortedError("x"), absl::UnknownError("y; z")));
  EXPECT_THAT(TaskGroupErrors(absl::InternalError("plain")), IsEmpty());
  EXPECT_THAT(TaskGroupErrors(absl::OkStatus()), IsEmpty());
}

}  // namespace
}  // namespace cotask::runtime
