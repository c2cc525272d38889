#include "scheduler/runtime/internal/timer_heap.h"

#include "scheduler/runtime/check.h"

namespace cotask::runtime::internal {

void TimerHeap::Add(TimerNode* timer, TimePoint deadline) {
  COTASK_CHECK(!timer->scheduled(), "timer added twice");
  timer->deadline_ = deadline;
  timer->sequence_ = next_sequence_++;
  heap_.push_back(timer);
  timer->index_ = heap_.size() - 1;
  SiftUp(timer->index_);
}

void TimerHeap::Remove(TimerNode* timer) {
  if (!timer->scheduled()) return;
  size_t index = timer->index_;
  COTASK_DCHECK(index < heap_.size() && heap_[index] == timer, "timer heap corrupted");
  timer->index_ = TimerNode::kNotScheduled;
  TimerNode* last = heap_.back();
  heap_.pop_back();
  if (last == timer) return;
  Place(last, index);
  SiftUp(index);
  SiftDown(last->index_);
}

size_t TimerHeap::FireDue(TimePoint now) {
  size_t fired = 0;
  while (!heap_.empty() && heap_.front()->deadline_ <= now) {
    TimerNode* timer = heap_.front();
    Remove(timer);
    ++fired;
    timer->fire_(timer);
  }
  return fired;
}

void TimerHeap::SiftUp(size_t index) {
  TimerNode* timer = heap_[index];
  while (index > 0) {
    size_t parent = (index - 1) / 2;
    if (!Before(timer, heap_[parent])) break;
    Place(heap_[parent], index);
    index = parent;
  }
  Place(timer, index);
}

void TimerHeap::SiftDown(size_t index) {
  TimerNode* timer = heap_[index];
  const size_t n = heap_.size();
  while (true) {
    size_t child = 2 * index + 1;
    if (child >= n) break;
    if (child + 1 < n && Before(heap_[child + 1], heap_[child])) ++child;
    if (!Before(heap_[child], timer)) break;
    Place(heap_[child], index);
    index = child;
  }
  Place(timer, index);
}

}  // namespace cotask::runtime::internal
