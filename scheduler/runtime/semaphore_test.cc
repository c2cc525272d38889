// asyncio's test_locks.py Lock and (Bounded)Semaphore behaviours, re-expressed.
#include "scheduler/runtime/semaphore.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

using ::cotask::testing::StatusIs;

TEST(SemaphoreTest, CountsPermitsAndRefusesToReleaseMoreThanItsBound) {
  Runner runner;
  Semaphore sem(2);
  auto main = [&]() -> Task<void> {
    EXPECT_FALSE(sem.locked());
    COTASK_CO_RETURN_IF_ERROR(co_await sem.Acquire());
    COTASK_CO_RETURN_IF_ERROR(co_await sem.Acquire());
    EXPECT_TRUE(sem.locked());
    EXPECT_EQ(sem.available(), 0);
    EXPECT_FALSE(sem.TryAcquire());
    COTASK_CO_RETURN_IF_ERROR(sem.Release());
    COTASK_CO_RETURN_IF_ERROR(sem.Release());
    EXPECT_THAT(sem.Release(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         "Semaphore released too many times: all 2 permits are already free"));
    EXPECT_EQ(sem.available(), 2);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

Task<void> AcquireLog(Semaphore* sem, std::vector<std::string>* log, std::string name) {
  absl::Status s = co_await sem->Acquire();
  log->push_back(name + (s.ok() ? " acquired" : ": " + std::string(s.message())));
  co_return s;
}

TEST(SemaphoreTest, WaitersAcquireInFifoOrderAndNobodyBargesIn) {
  Runner runner;
  Semaphore sem(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await sem.Acquire());
    std::vector<TaskHandle<void>> ts;
    for (std::string name : {"a", "b", "c"}) ts.push_back(CreateTask(AcquireLog(&sem, &log, name)));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    for (int i = 0; i < 3; ++i) {
      COTASK_CO_RETURN_IF_ERROR(sem.Release());
      EXPECT_FALSE(sem.TryAcquire());  // the permit went straight to the next waiter
      COTASK_CO_RETURN_IF_ERROR(co_await ts[i]);
    }
    co_return sem.Release();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a acquired", "b acquired", "c acquired"));
  EXPECT_EQ(sem.available(), 1);
}

TEST(SemaphoreTest, ACancelledWaiterLeavesTheLineWithoutTakingAPermit) {
  Runner runner;
  Semaphore sem(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await sem.Acquire());
    TaskHandle<void> a = CreateTask(AcquireLog(&sem, &log, "a"));
    TaskHandle<void> b = CreateTask(AcquireLog(&sem, &log, "b"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    a.Cancel("gone");
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(sem.Release());
    COTASK_CO_RETURN_IF_ERROR(co_await b);
    co_return sem.Release();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a: gone", "b acquired"));
  EXPECT_EQ(sem.available(), 1);
}

// CPython bpo-45997 / gh-90155: a waiter woken by release() and cancelled before it runs
// must not swallow the wake-up. Here the woken waiter keeps the permit it was handed, gets
// the cancellation at its next await, and gives the permit back; the next waiter gets it.
Task<void> HoldThenRelease(Semaphore* sem, std::vector<std::string>* log, std::string name) {
  COTASK_CO_RETURN_IF_ERROR(co_await sem->Acquire());
  log->push_back(name + " acquired");
  absl::Status s = co_await Sleep(1h);
  log->push_back(name + ": " + std::string(s.message()));
  COTASK_CO_RETURN_IF_ERROR(sem->Release());
  co_return s;
}

TEST(SemaphoreTest, AWaiterCancelledJustAfterItIsWokenDoesNotSwallowTheWakeUp) {
  Runner runner;
  Semaphore sem(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await sem.Acquire());
    TaskHandle<void> a = CreateTask(HoldThenRelease(&sem, &log, "a"));
    TaskHandle<void> b = CreateTask(AcquireLog(&sem, &log, "b"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(sem.Release());       // wakes a ...
    a.Cancel("cancelled right after its wake-up");  // ... which has not run yet
    (void)co_await a;
    COTASK_CO_RETURN_IF_ERROR(co_await b);
    co_return sem.Release();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a acquired", "a: cancelled right after its wake-up", "b acquired"));
  EXPECT_EQ(sem.available(), 1);
}

TEST(LockTest, IsExclusiveFairAndRefusesAReleaseWhenNotHeld) {
  Runner runner;
  Lock lock;
  std::vector<std::string> log;
  auto critical = [&](std::string name) -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await lock.Acquire());
    log.push_back(name + " in");
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    log.push_back(name + " out");
    co_return lock.Release();
  };
  auto main = [&]() -> Task<void> {
    EXPECT_THAT(lock.Release(),
                StatusIs(absl::StatusCode::kFailedPrecondition, "Lock released while not held"));
    TaskHandle<void> a = CreateTask(critical("a"));
    TaskHandle<void> b = CreateTask(critical("b"));
    TaskHandle<void> c = CreateTask(critical("c"));
    COTASK_CO_RETURN_IF_ERROR(co_await a);
    COTASK_CO_RETURN_IF_ERROR(co_await b);
    COTASK_CO_RETURN_IF_ERROR(co_await c);
    EXPECT_FALSE(lock.locked());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a in", "a out", "b in", "b out", "c in", "c out"));
}

Task<void> LockThenRelease(Lock* lock, std::vector<std::string>* log, std::string name) {
  COTASK_CO_RETURN_IF_ERROR(co_await lock->Acquire());
  log->push_back(name + " locked");
  absl::Status s = co_await Sleep(1h);
  log->push_back(name + ": " + std::string(s.message()));
  COTASK_CO_RETURN_IF_ERROR(lock->Release());
  co_return s;
}

TEST(LockTest, AWaiterCancelledJustAfterItIsWokenDoesNotSwallowTheWakeUp) {
  Runner runner;
  Lock lock;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await lock.Acquire());
    TaskHandle<void> a = CreateTask(LockThenRelease(&lock, &log, "a"));
    TaskHandle<void> b = CreateTask(LockThenRelease(&lock, &log, "b"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(lock.Release());      // hands the lock to a ...
    a.Cancel("cancelled right after its wake-up");  // ... which has not run yet
    (void)co_await a;
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    EXPECT_THAT(log, ElementsAre("a locked", "a: cancelled right after its wake-up", "b locked"));
    b.Cancel("done");
    (void)co_await b;
    EXPECT_FALSE(lock.locked());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(LockTest, ACancelledWaiterNeverGetsTheLock) {
  Runner runner;
  Lock lock;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await lock.Acquire());
    TaskHandle<void> w = CreateTask([](Lock* l) -> Task<void> {
      COTASK_CO_RETURN_IF_ERROR(co_await l->Acquire());
      co_return l->Release();
    }(&lock));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    w.Cancel();
    (void)co_await w;
    EXPECT_TRUE(w.cancelled());
    COTASK_CO_RETURN_IF_ERROR(lock.Release());
    EXPECT_FALSE(lock.locked());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

}  // namespace
}  // namespace cotask::runtime
