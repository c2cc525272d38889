// A binary min-heap of timers, ordered by deadline and then by insertion order, where each
// timer knows its index so that cancelling it is O(log n) with nothing left behind (asyncio
// instead leaves cancelled handles in its heap until they surface).
// Not thread-safe: owned by one event loop.
#ifndef COTASK_SCHEDULER_RUNTIME_INTERNAL_TIMER_HEAP_H_
#define COTASK_SCHEDULER_RUNTIME_INTERNAL_TIMER_HEAP_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cotask::runtime::internal {

class TimerNode {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr size_t kNotScheduled = static_cast<size_t>(-1);

  explicit TimerNode(void (*fire)(TimerNode*)) : fire_(fire) {}
  TimerNode(const TimerNode&) = delete;
  TimerNode& operator=(const TimerNode&) = delete;

  bool scheduled() const { return index_ != kNotScheduled; }
  TimePoint deadline() const { return deadline_; }

 private:
  friend class TimerHeap;
  void (*fire_)(TimerNode*);
  TimePoint deadline_{};
  uint64_t sequence_ = 0;
  size_t index_ = kNotScheduled;
};

class TimerHeap {
 public:
  using TimePoint = TimerNode::TimePoint;

  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  TimePoint earliest() const { return heap_.front()->deadline_; }
  TimerNode* front() const { return heap_.front(); }

  void Add(TimerNode* timer, TimePoint deadline);
  // Removes a scheduled timer; does nothing if it is not scheduled.
  void Remove(TimerNode* timer);
  // Removes every timer due at `now` and calls its fire function, earliest first.
  // A fire function may add or remove timers. Returns how many fired.
  size_t FireDue(TimePoint now);

 private:
  static bool Before(const TimerNode* a, const TimerNode* b) {
    return a->deadline_ < b->deadline_ ||
           (a->deadline_ == b->deadline_ && a->sequence_ < b->sequence_);
  }
  void Place(TimerNode* timer, size_t index) {
    heap_[index] = timer;
    timer->index_ = index;
  }
  void SiftUp(size_t index);
  void SiftDown(size_t index);

  std::vector<TimerNode*> heap_;
  uint64_t next_sequence_ = 0;
};

}  // namespace cotask::runtime::internal

#endif  // COTASK_SCHEDULER_RUNTIME_INTERNAL_TIMER_HEAP_H_
