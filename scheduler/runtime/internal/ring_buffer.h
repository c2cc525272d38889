// A growable FIFO ring buffer of trivially copyable items: the event loop's ready queue.
// One allocation per doubling, none in steady state, two loads and a store per push or pop.
// Not thread-safe.
#ifndef COTASK_SCHEDULER_RUNTIME_INTERNAL_RING_BUFFER_H_
#define COTASK_SCHEDULER_RUNTIME_INTERNAL_RING_BUFFER_H_

#include <cstddef>
#include <memory>
#include <type_traits>

#include "scheduler/runtime/check.h"

namespace cotask::runtime::internal {

template <class T>
class RingBuffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  bool empty() const { return head_ == tail_; }
  size_t size() const { return tail_ - head_; }

  void PushBack(T item) {
    if (tail_ - head_ == capacity_) Grow();
    items_[tail_++ & (capacity_ - 1)] = item;
  }

  T PopFront() {
    COTASK_DCHECK(!empty(), "PopFront on an empty ring buffer");
    return items_[head_++ & (capacity_ - 1)];
  }

 private:
  void Grow() {
    size_t capacity = capacity_ == 0 ? 256 : capacity_ * 2;
    auto items = std::make_unique_for_overwrite<T[]>(capacity);
    size_t n = size();
    for (size_t i = 0; i < n; ++i) items[i] = items_[(head_ + i) & (capacity_ - 1)];
    items_ = std::move(items);
    capacity_ = capacity;
    head_ = 0;
    tail_ = n;
  }

  std::unique_ptr<T[]> items_;
  size_t capacity_ = 0;  // always 0 or a power of two
  size_t head_ = 0;      // monotonically increasing; the index is head_ & (capacity_ - 1)
  size_t tail_ = 0;
};

}  // namespace cotask::runtime::internal

#endif  // COTASK_SCHEDULER_RUNTIME_INTERNAL_RING_BUFFER_H_
