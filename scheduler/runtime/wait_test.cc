// asyncio.wait / gather behaviours (test_tasks.py), re-expressed.
#include "scheduler/runtime/wait.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

Task<int> After(EventLoop::Duration d, int value, absl::Status fail = absl::OkStatus()) {
  COTASK_CO_RETURN_IF_ERROR(co_await Sleep(d));
  COTASK_CO_RETURN_IF_ERROR(fail);
  co_return value;
}

std::vector<int> Values(const std::vector<TaskHandle<int>>& tasks) {
  std::vector<int> values;
  values.reserve(tasks.size());
  for (const auto& t : tasks) values.push_back(t.result().ok() ? *t.result() : -1);
  return values;
}

TEST(WaitTest, AllCompletedWaitsForEveryTask) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(3ms, 1)), CreateTask(After(1ms, 2))};
    COTASK_CO_ASSIGN_OR_RETURN(auto r, co_await Wait(tasks, ReturnWhen::kAllCompleted));
    EXPECT_THAT(Values(r.done), ElementsAre(1, 2));
    EXPECT_TRUE(r.pending.empty());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(WaitTest, FirstCompletedReturnsAsSoonAsOneHasEnded) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(1h, 1)), CreateTask(After(1ms, 2)),
                                          CreateTask(After(1h, 3))};
    COTASK_CO_ASSIGN_OR_RETURN(auto r, co_await Wait(tasks, ReturnWhen::kFirstCompleted));
    EXPECT_THAT(Values(r.done), ElementsAre(2));
    EXPECT_EQ(r.pending.size(), 2u);
    for (const auto& t : r.pending) EXPECT_FALSE(t.done());  // wait cancels nothing
    for (const auto& t : tasks) t.Cancel();
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(WaitTest, FirstExceptionIgnoresSuccessesAndCancellations) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(1ms, 1)), CreateTask(After(1h, 2)),
                                          CreateTask(After(5ms, 3, absl::InternalError("x"))),
                                          CreateTask(After(1h, 4))};
    tasks[1].Cancel();
    COTASK_CO_ASSIGN_OR_RETURN(auto r, co_await Wait(tasks, ReturnWhen::kFirstException));
    EXPECT_EQ(r.done.size(), 3u);
    EXPECT_EQ(r.done.back().status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(r.pending.size(), 1u);
    tasks[3].Cancel();
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(WaitTest, FirstExceptionWithoutAnyFailureWaitsForAll) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(1ms, 1)), CreateTask(After(2ms, 2))};
    COTASK_CO_ASSIGN_OR_RETURN(auto r, co_await Wait(tasks, ReturnWhen::kFirstException));
    EXPECT_EQ(r.done.size(), 2u);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(WaitTest, TheTimeoutEndsTheWaitAndCancelsNothing) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(1h, 1)), CreateTask(After(1ms, 2))};
    auto start = EventLoop::Clock::now();
    COTASK_CO_ASSIGN_OR_RETURN(auto r, co_await Wait(tasks, ReturnWhen::kAllCompleted, 10ms));
    EXPECT_GE(EventLoop::Clock::now() - start, 10ms);
    EXPECT_THAT(Values(r.done), ElementsAre(2));
    EXPECT_EQ(r.pending.size(), 1u);
    for (const auto& t : r.pending) {
      EXPECT_FALSE(t.done());
      t.Cancel();
    }
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(WaitTest, AnEmptyListIsInvalid) {
  Runner runner;
  auto main = []() -> Task<void> {
    auto r = co_await Wait(std::vector<TaskHandle<int>>{});
    co_return r.status();
  };
  absl::Status s = runner.Run(main());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "Wait: tasks is empty; give it at least one task");
}

TEST(WaitTest, CancellingTheWaiterEndsTheWaitOnly) {
  Runner runner;
  auto main = []() -> Task<void> {
    std::vector<TaskHandle<int>> tasks = {CreateTask(After(20ms, 1))};
    auto waiter = [](std::vector<TaskHandle<int>> ts) -> Task<void> {
      co_return (co_await Wait(std::move(ts))).status();
    };
    TaskHandle<void> w = CreateTask(waiter(tasks));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    w.Cancel("stop waiting");
    absl::Status s = co_await Shield(w);
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
    EXPECT_FALSE(tasks[0].done());
    EXPECT_EQ((co_await tasks[0]).value(), 1);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(GatherTest, ReturnsEveryOutcomeInOrder) {
  Runner runner;
  auto main = []() -> Task<std::vector<absl::StatusOr<int>>> {
    std::vector<Task<int>> tasks;
    tasks.push_back(After(3ms, 1));
    tasks.push_back(After(1ms, 2, absl::NotFoundError("two")));
    tasks.push_back(After(2ms, 3));
    co_return co_await Gather(std::move(tasks));
  };
  auto r = runner.Run(main());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].value(), 1);
  EXPECT_EQ((*r)[1].status(), absl::NotFoundError("two"));
  EXPECT_EQ((*r)[2].value(), 3);
}

Task<int> Logged(std::vector<std::string>* log, std::string name) {
  absl::Status s = co_await Sleep(1h);
  log->push_back(name + ": " + std::string(s.message()));
  co_return s;
}

TEST(GatherTest, GatheringNothingReturnsNothing) {
  Runner runner;
  auto main = []() -> Task<std::vector<absl::StatusOr<int>>> {
    co_return co_await Gather(std::vector<Task<int>>{});
  };
  auto r = runner.Run(main());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->empty());
}

TEST(GatherTest, CancellingTheGathererCancelsEveryTaskAndWaitsForThem) {
  Runner runner;
  std::vector<std::string> log;
  auto gatherer = [&]() -> Task<void> {
    std::vector<Task<int>> tasks;
    tasks.push_back(Logged(&log, "a"));
    tasks.push_back(Logged(&log, "b"));
    auto r = co_await Gather(std::move(tasks));
    log.push_back("gather: " + std::string(r.status().message()));
    co_return r.status();
  };
  auto main = [&]() -> Task<void> {
    TaskHandle<void> g = CreateTask(gatherer());
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    g.Cancel("enough");
    EXPECT_EQ((co_await Shield(g)).code(), absl::StatusCode::kCancelled);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a: enough", "b: enough", "gather: enough"));
}

}  // namespace
}  // namespace cotask::runtime
