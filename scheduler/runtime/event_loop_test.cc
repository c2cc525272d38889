#include "scheduler/runtime/event_loop.h"

#include <grpc/support/time.h>
#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/operation_base.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {
namespace {

using ::testing::ElementsAre;
using namespace std::chrono_literals;

TEST(EventLoopTest, CallSoonRunsCallbacksInFifoOrder) {
  EventLoop loop;
  std::vector<int> log;
  loop.CallSoon([&] { log.push_back(1); });
  loop.CallSoon([&] {
    log.push_back(2);
    loop.CallSoon([&] {
      log.push_back(4);
      loop.Stop();
    });
  });
  loop.CallSoon([&] { log.push_back(3); });
  loop.Run();
  EXPECT_THAT(log, ElementsAre(1, 2, 3, 4));
}

TEST(EventLoopTest, CallLaterRunsByDeadlineNotBeforeIt) {
  EventLoop loop;
  std::vector<int> log;
  const auto start = loop.Now();
  EventLoop::TimePoint fired_at{};
  loop.CallLater(30ms, [&] {
    log.push_back(30);
    fired_at = loop.Now();
    loop.Stop();
  });
  loop.CallLater(10ms, [&] { log.push_back(10); });
  loop.CallAt(start + 20ms, [&] { log.push_back(20); });
  loop.Run();
  EXPECT_THAT(log, ElementsAre(10, 20, 30));
  EXPECT_GE(fired_at - start, 30ms);
}

TEST(EventLoopTest, CancelledTimerNeverRunsEvenWhenAlreadyDue) {
  EventLoop loop;
  bool ran_pending = false, ran_due = false;
  TimerHandle pending = loop.CallLater(5ms, [&] { ran_pending = true; });
  TimerHandle due;
  // Both timers are due in the same iteration; the first cancels the second.
  loop.CallLater(1ms, [&] { due.Cancel(); });
  due = loop.CallLater(1ms, [&] { ran_due = true; });
  pending.Cancel();
  EXPECT_TRUE(pending.cancelled());
  loop.CallLater(20ms, [&] { loop.Stop(); });
  loop.Run();
  EXPECT_FALSE(ran_pending);
  EXPECT_FALSE(ran_due);
  EXPECT_TRUE(due.cancelled());
}

TEST(EventLoopTest, PostFromAnotherThreadWakesABlockedLoop) {
  EventLoop loop;
  std::atomic<bool> ran{false};
  std::thread poster([&] {
    std::this_thread::sleep_for(20ms);  // the loop is blocked in the completion queue by now
    loop.Post([&] {
      ran = true;
      loop.Stop();
    });
  });
  loop.Run();
  poster.join();
  EXPECT_TRUE(ran);
}

// cotaskd's engine loop: its queue never polls sockets, yet timers and Post wake it.
TEST(EventLoopTest, ALoopOnANonPollingQueueRunsTimersAndPostedWork) {
  EventLoop loop(EventLoop::NonPollingQueue());
  const auto start = loop.Now();
  EventLoop::TimePoint fired_at{};
  loop.CallLater(20ms, [&] { fired_at = loop.Now(); });
  std::atomic<bool> ran{false};
  std::thread poster([&] {
    std::this_thread::sleep_for(40ms);  // after the timer: the loop is blocked again
    loop.Post([&] {
      ran = true;
      loop.Stop();
    });
  });
  loop.Run();
  poster.join();
  EXPECT_GE(fired_at - start, 20ms);
  EXPECT_TRUE(ran);
}

TEST(EventLoopTest, PostFromManyThreadsRunsEachCallbackOnceInPerThreadOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  EventLoop loop;
  std::vector<std::vector<int>> seen(kThreads);  // only touched on the loop thread
  int total = 0;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(loop.Post([&, t, i] {
          seen[t].push_back(i);
          if (++total == kThreads * kPerThread) loop.Stop();
        }));
      }
    });
  }
  loop.Run();
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

Task<int> SpinUntil(const std::atomic<bool>* flag) {
  int spins = 0;
  while (!flag->load()) {
    if (absl::Status s = co_await Sleep(0ms); !s.ok()) co_return s;
    ++spins;
  }
  co_return spins;
}

TEST(EventLoopTest, BusyReadyQueueDoesNotStarvePostedWork) {
  EventLoop loop;
  std::atomic<bool> flag{false};
  std::thread poster([&] { loop.Post([&] { flag = true; }); });
  absl::StatusOr<int> spins = loop.RunUntilComplete(SpinUntil(&flag));
  poster.join();
  ASSERT_TRUE(spins.ok()) << spins.status();
}

TEST(EventLoopTest, PostAfterShutdownIsRefusedAndDropsTheCallback) {
  EventLoop loop;
  loop.Shutdown();
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  EXPECT_FALSE(loop.Post([token = std::move(token)] { *token = 1; }));
  EXPECT_TRUE(watch.expired());
}

Task<int> Seven() { co_return 7; }

TEST(EventLoopTest, RunUntilCompleteReturnsTheOutcome) {
  EventLoop loop;
  EXPECT_EQ(loop.RunUntilComplete(Seven()).value(), 7);
}

Task<void> SleepLong() { co_return co_await Sleep(10s); }

TEST(EventLoopTest, RunUntilCompleteStoppedEarlyIsFailedPrecondition) {
  EventLoop loop;
  TaskHandle<void> task = loop.CreateTask(SleepLong());
  loop.CallLater(1ms, [&] { loop.Stop(); });
  absl::Status status = loop.RunUntilComplete(task);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "the event loop stopped before the task ended");
  EXPECT_FALSE(task.done());
}

struct Tracked {
  explicit Tracked(bool* destroyed) : destroyed(destroyed) {}
  ~Tracked() { *destroyed = true; }
  bool* destroyed;
};

Task<void> HoldUntilCancelled(bool* destroyed, bool* resumed) {
  Tracked tracked(destroyed);
  absl::Status s = co_await Sleep(1h);
  *resumed = true;
  co_return s;
}

TEST(EventLoopTest, ShutdownDestroysWhatIsLeftWithoutResumingIt) {
  bool destroyed = false, resumed = false, callback_ran = false;
  TaskHandle<void> task;
  {
    EventLoop loop;
    task = loop.CreateTask(HoldUntilCancelled(&destroyed, &resumed));
    loop.CallLater(1ms, [&] { loop.Stop(); });
    loop.Run();
    loop.CallSoon([&] { callback_ran = true; });
    loop.CallLater(1h, [&] { callback_ran = true; });
    EXPECT_FALSE(destroyed);
  }
  EXPECT_TRUE(destroyed);
  EXPECT_FALSE(resumed);
  EXPECT_FALSE(callback_ran);
  ASSERT_TRUE(task.done());
  EXPECT_TRUE(task.cancelled());
  EXPECT_EQ(task.status().message(), "the event loop was shut down");
}

// A coroutine awaiting a gRPC operation: one small awaitable per operation, the tag is the
// operation, cancellation goes through gRPC's own lever (Alarm::Cancel).
class AlarmWait final : public OperationBase, public internal::CancelHook {
 public:
  explicit AlarmWait(EventLoop::Duration delay) : delay_(delay) {}
  bool await_ready() {
    task_ = &internal::CurrentTaskOrDie("AlarmWait");
    return false;
  }
  void await_suspend(std::coroutine_handle<> at) {
    auto deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                 gpr_time_from_millis(delay_ / 1ms, GPR_TIMESPAN));
    alarm_.Set(&task_->loop().completion_queue(), deadline, static_cast<OperationBase*>(this));
    task_->Suspend(at, this);
  }
  bool await_resume() {
    if (cancelled_) (void)task_->TakeCancelDelivery();
    return ok_;
  }
  void Complete(bool ok) override {
    ok_ = ok;
    if (cancelled_) {
      task_->WakeAfterCancel();
    } else {
      task_->Wake();
    }
  }
  void OnCancel() override {
    cancelled_ = true;
    alarm_.Cancel();  // the tag comes back with ok == false; we resume then, once
  }

 private:
  EventLoop::Duration delay_;
  internal::TaskState* task_ = nullptr;
  grpc::Alarm alarm_;
  bool ok_ = false;
  bool cancelled_ = false;
};

Task<bool> WaitAlarm(EventLoop::Duration delay) { co_return co_await AlarmWait(delay); }

TEST(EventLoopTest, CompletionQueueOperationsResumeTheirCoroutine) {
  EventLoop loop;
  EXPECT_EQ(loop.RunUntilComplete(WaitAlarm(5ms)).value(), true);
  TaskHandle<bool> cancelled = loop.CreateTask(WaitAlarm(1h));
  loop.CallLater(1ms, [&] { cancelled.Cancel(); });
  EXPECT_EQ(loop.RunUntilComplete(cancelled).value(), false);
}

class NeverCompletes final : public OperationBase {
 public:
  void Complete(bool) override { ADD_FAILURE() << "Complete called during shutdown"; }
};

TEST(EventLoopTest, ShutdownDrainsTheQueueWithoutCompletingOperations) {
  NeverCompletes operation;
  grpc::Alarm alarm;
  {
    EventLoop loop;
    alarm.Set(&loop.completion_queue(), gpr_time_0(GPR_CLOCK_MONOTONIC), &operation);
    // The alarm's tag is in the queue; Shutdown must take it out without calling Complete.
  }
}

}  // namespace
}  // namespace cotask::runtime
