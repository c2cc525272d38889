// asyncio's test_locks.py Event behaviours, re-expressed.
#include "scheduler/runtime/event.h"

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

Task<void> WaitAndLog(Event* event, std::vector<std::string>* log, std::string name) {
  absl::Status s = co_await event->Wait();
  log->push_back(name + (s.ok() ? " woke" : " " + std::string(s.message())));
  co_return s;
}

TEST(EventTest, SetWakesEveryWaiterInTheOrderTheyBeganToWait) {
  Runner runner;
  Event event;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    std::vector<TaskHandle<void>> waiters;
    for (std::string name : {"a", "b", "c"}) {
      waiters.push_back(CreateTask(WaitAndLog(&event, &log, name)));
    }
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    EXPECT_TRUE(log.empty());
    EXPECT_FALSE(event.is_set());
    event.Set();
    EXPECT_TRUE(event.is_set());
    for (auto& w : waiters) COTASK_CO_RETURN_IF_ERROR(co_await w);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a woke", "b woke", "c woke"));
}

TEST(EventTest, WaitOnASetEventReturnsAtOnceAndClearResetsIt) {
  Runner runner;
  Event event;
  auto main = [&]() -> Task<void> {
    event.Set();
    COTASK_CO_RETURN_IF_ERROR(co_await event.Wait());
    event.Clear();
    EXPECT_FALSE(event.is_set());
    TaskHandle<void> w =
        CreateTask([](Event* e) -> Task<void> { co_return co_await e->Wait(); }(&event));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    EXPECT_FALSE(w.done());
    event.Set();
    co_return co_await w;
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(EventTest, ACancelledWaiterLeavesTheLineAndTheOthersStillWake) {
  Runner runner;
  Event event;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    TaskHandle<void> a = CreateTask(WaitAndLog(&event, &log, "a"));
    TaskHandle<void> b = CreateTask(WaitAndLog(&event, &log, "b"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    a.Cancel("no longer needed");
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    event.Set();
    (void)co_await a;
    COTASK_CO_RETURN_IF_ERROR(co_await b);
    EXPECT_TRUE(a.cancelled());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a no longer needed", "b woke"));
}

}  // namespace
}  // namespace cotask::runtime
