#include "scheduler/runtime/internal/timer_heap.h"

#include <chrono>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cotask::runtime::internal {
namespace {

using ::testing::ElementsAre;
using TimePoint = TimerHeap::TimePoint;

struct Recorded : TimerNode {
  explicit Recorded(int id, std::vector<int>* log) : TimerNode(&Fire), id(id), log(log) {}
  static void Fire(TimerNode* node) {
    auto* self = static_cast<Recorded*>(node);
    self->log->push_back(self->id);
  }
  int id;
  std::vector<int>* log;
};

TimePoint At(int ms) { return TimePoint() + std::chrono::milliseconds(ms); }

TEST(TimerHeapTest, FiresDueTimersEarliestFirstAndTiesInInsertionOrder) {
  std::vector<int> log;
  Recorded a(1, &log), b(2, &log), c(3, &log), d(4, &log);
  TimerHeap heap;
  heap.Add(&a, At(30));
  heap.Add(&b, At(10));
  heap.Add(&c, At(10));
  heap.Add(&d, At(50));
  EXPECT_EQ(heap.earliest(), At(10));
  EXPECT_EQ(heap.FireDue(At(30)), 3u);
  EXPECT_THAT(log, ElementsAre(2, 3, 1));
  EXPECT_FALSE(a.scheduled());
  EXPECT_TRUE(d.scheduled());
  EXPECT_EQ(heap.size(), 1u);
}

TEST(TimerHeapTest, RemoveLeavesNothingBehind) {
  std::vector<int> log;
  Recorded a(1, &log), b(2, &log), c(3, &log);
  TimerHeap heap;
  heap.Add(&a, At(1));
  heap.Add(&b, At(2));
  heap.Add(&c, At(3));
  heap.Remove(&a);
  heap.Remove(&a);  // removing twice is harmless
  EXPECT_FALSE(a.scheduled());
  EXPECT_EQ(heap.size(), 2u);
  EXPECT_EQ(heap.earliest(), At(2));
  heap.FireDue(At(100));
  EXPECT_THAT(log, ElementsAre(2, 3));
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeapTest, RandomAddsAndRemovesKeepOrder) {
  std::mt19937 rng(7);
  std::vector<int> log;
  std::vector<std::unique_ptr<Recorded>> timers;
  TimerHeap heap;
  std::vector<int> expected_deadlines;
  for (int i = 0; i < 2000; ++i) {
    timers.push_back(std::make_unique<Recorded>(i, &log));
    heap.Add(timers.back().get(), At(static_cast<int>(rng() % 500)));
  }
  for (int i = 0; i < 2000; i += 3) heap.Remove(timers[i].get());
  heap.FireDue(At(1000));
  ASSERT_EQ(log.size(), 2000u - 667u);
  for (size_t i = 1; i < log.size(); ++i) {
    auto prev = timers[log[i - 1]]->deadline(), cur = timers[log[i]]->deadline();
    ASSERT_TRUE(prev < cur || (prev == cur && log[i - 1] < log[i]));
    ASSERT_NE(log[i] % 3, 0);
  }
}

}  // namespace
}  // namespace cotask::runtime::internal
