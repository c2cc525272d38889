// asyncio's test_queues.py behaviours (with 3.13's shutdown), re-expressed.
#include "scheduler/runtime/queue.h"

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

template <class Q>
std::vector<int> Drain(Q& queue) {
  std::vector<int> out;
  while (!queue.empty()) out.push_back(*queue.GetNowait());
  return out;
}

TEST(QueueTest, FifoLifoAndPriorityOrders) {
  Queue<int> fifo;
  LifoQueue<int> lifo;
  PriorityQueue<int> priority;
  for (int v : {3, 1, 2}) {
    ASSERT_TRUE(fifo.PutNowait(v).ok());
    ASSERT_TRUE(lifo.PutNowait(v).ok());
    ASSERT_TRUE(priority.PutNowait(v).ok());
  }
  EXPECT_THAT(Drain(fifo), ElementsAre(3, 1, 2));
  EXPECT_THAT(Drain(lifo), ElementsAre(2, 1, 3));
  EXPECT_THAT(Drain(priority), ElementsAre(1, 2, 3));
}

struct Job {
  int priority;
  std::string name;
};
struct ByPriority {
  bool operator()(const Job& a, const Job& b) const { return a.priority < b.priority; }
};

TEST(QueueTest, PriorityTiesComeOutInInsertionOrder) {
  PriorityQueue<Job, ByPriority> queue;
  for (auto [p, n] : std::vector<std::pair<int, std::string>>{
           {2, "x"}, {1, "a"}, {2, "y"}, {1, "b"}, {2, "z"}, {1, "c"}}) {
    ASSERT_TRUE(queue.PutNowait(Job{p, n}).ok());
  }
  std::string order;
  while (!queue.empty()) order += queue.GetNowait()->name;
  EXPECT_EQ(order, "abcxyz");
}

TEST(QueueTest, NowaitCallsReportFullAndEmpty) {
  Queue<int> queue(2);
  EXPECT_THAT(queue.GetNowait().status(),
              StatusIs(absl::StatusCode::kUnavailable, "the queue is empty"));
  ASSERT_TRUE(queue.PutNowait(1).ok());
  ASSERT_TRUE(queue.PutNowait(2).ok());
  EXPECT_TRUE(queue.full());
  EXPECT_THAT(queue.PutNowait(3), StatusIs(absl::StatusCode::kResourceExhausted,
                                           "the queue is full: it holds its maxsize of 2 items"));
  EXPECT_EQ(queue.size(), 2u);  // nothing accepted was lost
  EXPECT_THAT(Drain(queue), ElementsAre(1, 2));
}

Task<void> Put(Queue<int>* q, std::vector<std::string>* log, std::string name, int v) {
  absl::Status s = co_await q->Put(v);
  log->push_back(name + (s.ok() ? " put" : ": " + std::string(s.message())));
  co_return s;
}

Task<int> Get(Queue<int>* q, std::vector<std::string>* log, std::string name) {
  absl::StatusOr<int> v = co_await q->Get();
  log->push_back(
      name + (v.ok() ? " got " + std::to_string(*v) : ": " + std::string(v.status().message())));
  co_return v;
}

TEST(QueueTest, PutWaitsWhileFullAndPuttersGoInInOrder) {
  Runner runner;
  Queue<int> queue(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await queue.Put(0));
    TaskHandle<void> a = CreateTask(Put(&queue, &log, "a", 1));
    TaskHandle<void> b = CreateTask(Put(&queue, &log, "b", 2));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    EXPECT_TRUE(log.empty());
    std::vector<int> got;
    for (int i = 0; i < 3; ++i) {
      COTASK_CO_ASSIGN_OR_RETURN(int v, co_await queue.Get());
      got.push_back(v);
      COTASK_CO_RETURN_IF_ERROR(co_await Sleep(0ms));
    }
    EXPECT_THAT(got, ElementsAre(0, 1, 2));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a put", "b put"));
}

TEST(QueueTest, GetWaitsWhileEmptyAndGettersAreServedInOrder) {
  Runner runner;
  Queue<int> queue;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    TaskHandle<int> a = CreateTask(Get(&queue, &log, "a"));
    TaskHandle<int> b = CreateTask(Get(&queue, &log, "b"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(10));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(20));
    EXPECT_EQ(queue.size(), 0u);  // handed straight to the waiting getters
    EXPECT_EQ((co_await a).value(), 10);
    EXPECT_EQ((co_await b).value(), 20);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a got 10", "b got 20"));
}

TEST(QueueTest, AGetterCancelledAfterBeingHandedAnItemKeepsIt) {
  Runner runner;
  Queue<int> queue;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    TaskHandle<int> a = CreateTask(Get(&queue, &log, "a"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(7));
    a.Cancel("late");  // a was handed 7 already
    absl::StatusOr<int> v = co_await a;
    // The item was not lost: a's Get returned it; the task then ended with the request
    // undelivered, so it is CANCELLED, but the log shows the item arrived.
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(queue.empty());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("a got 7"));
}

TEST(QueueTest, ACancelledGetterOrPutterLeavesTheLineAndLosesNothing) {
  Runner runner;
  Queue<int> queue(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    TaskHandle<int> g1 = CreateTask(Get(&queue, &log, "g1"));
    TaskHandle<int> g2 = CreateTask(Get(&queue, &log, "g2"));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    g1.Cancel("g1 cancelled");
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(5));
    EXPECT_EQ((co_await g2).value(), 5);
    // A putter waiting on a full queue, cancelled: its item never goes in.
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(6));
    TaskHandle<void> p = CreateTask(Put(&queue, &log, "p", 99));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    p.Cancel("p cancelled");
    (void)co_await p;
    EXPECT_EQ(queue.GetNowait().value(), 6);
    EXPECT_TRUE(queue.empty());
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("g1: g1 cancelled", "g2 got 5", "p: p cancelled"));
}

TEST(QueueTest, JoinWaitsUntilEveryItemIsDone) {
  Runner runner;
  Queue<int> queue;
  auto main = [&]() -> Task<void> {
    for (int i = 0; i < 3; ++i) COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(i));
    EXPECT_EQ(queue.unfinished_tasks(), 3);
    auto worker = [](Queue<int>* q) -> Task<void> {
      for (int i = 0; i < 3; ++i) {
        COTASK_CO_RETURN_IF_ERROR((co_await q->Get()).status());
        COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
        COTASK_CO_RETURN_IF_ERROR(q->TaskDone());
      }
      co_return absl::OkStatus();
    };
    TaskHandle<void> w = CreateTask(worker(&queue));
    COTASK_CO_RETURN_IF_ERROR(co_await queue.Join());
    EXPECT_TRUE(w.done());
    EXPECT_EQ(queue.unfinished_tasks(), 0);
    EXPECT_THAT(queue.TaskDone(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                           "TaskDone() called more times than items were put"));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
}

TEST(QueueTest, ShutdownRefusesPutsAndLetsGetsDrainWhatIsLeft) {
  Runner runner;
  Queue<int> queue(1);
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(1));
    TaskHandle<void> blocked_putter = CreateTask(Put(&queue, &log, "putter", 2));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    queue.Shutdown();
    EXPECT_TRUE(queue.is_shutdown());
    EXPECT_THAT(co_await blocked_putter,
                StatusIs(absl::StatusCode::kFailedPrecondition, "the queue is shut down"));
    EXPECT_THAT(queue.PutNowait(3),
                StatusIs(absl::StatusCode::kFailedPrecondition, "the queue is shut down"));
    EXPECT_EQ((co_await queue.Get()).value(), 1);  // what was in it still comes out
    EXPECT_THAT((co_await queue.Get()).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition, "the queue is shut down"));
    EXPECT_THAT(queue.GetNowait().status(),
                StatusIs(absl::StatusCode::kFailedPrecondition, "the queue is shut down"));
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("putter: the queue is shut down"));
}

TEST(QueueTest, ImmediateShutdownDropsItemsWakesGettersAndReleasesJoin) {
  Runner runner;
  Queue<int> queue;
  Queue<int> empty;
  std::vector<std::string> log;
  auto main = [&]() -> Task<void> {
    TaskHandle<int> getter = CreateTask(Get(&empty, &log, "getter"));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(1));
    COTASK_CO_RETURN_IF_ERROR(queue.PutNowait(2));
    TaskHandle<void> joiner =
        CreateTask([](Queue<int>* q) -> Task<void> { co_return co_await q->Join(); }(&queue));
    COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1ms));
    empty.Shutdown(/*immediate=*/true);
    queue.Shutdown(/*immediate=*/true);
    EXPECT_TRUE(queue.empty());
    EXPECT_EQ(queue.unfinished_tasks(), 0);
    COTASK_CO_RETURN_IF_ERROR(co_await joiner);
    EXPECT_EQ((co_await getter).status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ((co_await queue.Get()).status().code(), absl::StatusCode::kFailedPrecondition);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_THAT(log, ElementsAre("getter: the queue is shut down"));
}

}  // namespace
}  // namespace cotask::runtime
