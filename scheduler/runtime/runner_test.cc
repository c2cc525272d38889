// asyncio.Runner behaviours (test_runners.py), re-expressed.
#include "scheduler/runtime/runner.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

using ::cotask::testing::StatusIs;

Task<int> Value(int v) { co_return v; }

Task<int> Ticker(std::vector<std::string>* log) {
  int ticks = 0;
  while (true) {
    absl::Status s = co_await Sleep(1ms);
    if (!s.ok()) {
      log->push_back("ticker stopped: " + std::string(s.message()));
      co_return s;
    }
    ++ticks;
  }
}

TEST(RunnerTest, RunsCoroutinesOneAfterAnotherOnTheSameLoop) {
  Runner runner;
  EXPECT_EQ(runner.Run(Value(1)).value(), 1);
  EXPECT_EQ(runner.Run(Value(2)).value(), 2);
  EXPECT_FALSE(runner.loop().is_closed());
}

TEST(RunnerTest, TasksOutliveTheCoroutineThatStartedThemAndCloseCancelsThem) {
  std::vector<std::string> log;
  TaskHandle<int> ticker;
  {
    Runner runner;
    auto start = [&]() -> Task<void> {
      ticker = CreateTask(Ticker(&log));
      co_return absl::OkStatus();
    };
    ASSERT_TRUE(runner.Run(start()).ok());
    auto later = [&]() -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(co_await Sleep(3ms));
      EXPECT_FALSE(ticker.done());  // still ticking in the second Run
      co_return absl::OkStatus();
    };
    ASSERT_TRUE(runner.Run(later()).ok());
    runner.Close();
    EXPECT_TRUE(runner.closed());
    EXPECT_TRUE(runner.loop().is_closed());
  }
  ASSERT_TRUE(ticker.done());
  EXPECT_TRUE(ticker.cancelled());
  EXPECT_THAT(log, ElementsAre("ticker stopped: the runner is closing"));
}

TEST(RunnerTest, RunAfterCloseIsRefused) {
  Runner runner;
  runner.Close();
  EXPECT_THAT(runner.Run(Value(1)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "the Runner is closed"));
}

TEST(RunnerTest, RunInsideARunningLoopIsRefused) {
  Runner outer;
  auto main = []() -> Task<void> {
    Runner inner;
    co_return inner.Run(Value(1)).status();
  };
  EXPECT_THAT(outer.Run(main()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "Runner::Run cannot be called from inside a running event loop"));
}

}  // namespace
}  // namespace cotask::runtime
