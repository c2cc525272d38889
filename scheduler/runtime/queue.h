// Queue<T>, LifoQueue<T>, PriorityQueue<T>: asyncio's queues, with Python 3.13's Shutdown.
//
// Put() waits while the queue holds `maxsize` items (0: unbounded); Get() waits while it is
// empty. Waiters are served in the order they began to wait. An item meets a waiting getter
// directly, and a getter that takes an item lets the longest-waiting putter in, so the wake-up
// always carries the item or the slot: a waiter cancelled after it was served keeps it.
// PriorityQueue gives the smallest item first (by Compare), ties in insertion order.
// Shutdown(): Put fails at once; Get drains what is left, then fails; with immediate = true
// the items are dropped and Get fails at once. Both fail with FAILED_PRECONDITION.
// Loop thread only. Get(), Put() and Join() are cancellable.
#ifndef COTASK_SCHEDULER_RUNTIME_QUEUE_H_
#define COTASK_SCHEDULER_RUNTIME_QUEUE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "scheduler/runtime/internal/wait_node.h"

namespace cotask::runtime {

namespace internal {

inline absl::Status QueueShutDownError() {
  return absl::FailedPreconditionError("the queue is shut down");
}

// FIFO (kLifo = false) or LIFO storage.
template <class T, bool kLifo>
class SequenceStorage {
 public:
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  void Push(T item) { items_.push_back(std::move(item)); }
  T Pop() {
    if constexpr (kLifo) {
      T item = std::move(items_.back());
      items_.pop_back();
      return item;
    } else {
      T item = std::move(items_.front());
      items_.pop_front();
      return item;
    }
  }

 private:
  std::deque<T> items_;
};

template <class T, class Compare>
class PriorityStorage {
 public:
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  void Push(T item) {
    items_.push_back({std::move(item), next_sequence_++});
    std::push_heap(items_.begin(), items_.end(), After{});
  }
  T Pop() {
    std::pop_heap(items_.begin(), items_.end(), After{});
    T item = std::move(items_.back().item);
    items_.pop_back();
    return item;
  }

 private:
  struct Entry {
    T item;
    uint64_t sequence;
  };
  // std::*_heap keep the greatest element first; "greatest" here is the one to serve first.
  struct After {
    bool operator()(const Entry& a, const Entry& b) const {
      Compare less;
      if (less(a.item, b.item)) return false;
      if (less(b.item, a.item)) return true;
      return a.sequence > b.sequence;
    }
  };
  std::vector<Entry> items_;
  uint64_t next_sequence_ = 0;
};

}  // namespace internal

template <class T, class Storage>
class BasicQueue {
 public:
  // maxsize 0: unbounded.
  explicit BasicQueue(size_t maxsize = 0) : maxsize_(maxsize) {}
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  size_t size() const { return items_.size(); }
  size_t maxsize() const { return maxsize_; }
  bool empty() const { return items_.empty(); }
  bool full() const { return maxsize_ > 0 && items_.size() >= maxsize_; }
  bool is_shutdown() const { return shutdown_; }
  int64_t unfinished_tasks() const { return unfinished_; }

  // RESOURCE_EXHAUSTED if full (asyncio's QueueFull), FAILED_PRECONDITION after Shutdown.
  absl::Status PutNowait(T item) {
    if (shutdown_) return internal::QueueShutDownError();
    if (getters_.empty() && full()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the queue is full: it holds its maxsize of ", maxsize_, " items"));
    }
    Admit(std::move(item));
    return absl::OkStatus();
  }

  // UNAVAILABLE if empty (asyncio's QueueEmpty), FAILED_PRECONDITION if empty after Shutdown.
  absl::StatusOr<T> GetNowait() {
    if (items_.empty()) {
      if (shutdown_) return internal::QueueShutDownError();
      return absl::UnavailableError("the queue is empty");
    }
    return Take();
  }

  // Marks one item got earlier as processed. FAILED_PRECONDITION if called more often than
  // items were put.
  absl::Status TaskDone() {
    if (unfinished_ <= 0) {
      return absl::FailedPreconditionError("TaskDone() called more times than items were put");
    }
    if (--unfinished_ == 0) WakeJoiners();
    return absl::OkStatus();
  }

  void Shutdown(bool immediate = false) {
    shutdown_ = true;
    if (immediate) {
      while (!items_.empty()) {
        items_.Pop();
        if (unfinished_ > 0) --unfinished_;
      }
      if (unfinished_ == 0) WakeJoiners();
    }
    // Getters wait only while the queue is empty, so every one of them fails now.
    while (internal::WaitNode* getter = getters_.PopFront()) {
      getter->Wake(internal::QueueShutDownError());
    }
    while (internal::WaitNode* putter = putters_.PopFront()) {
      putter->Wake(internal::QueueShutDownError());
    }
  }

  class [[nodiscard]] PutAwaiter : public internal::WaitNode {
   public:
    PutAwaiter(BasicQueue& queue, T item) : queue_(&queue), item_(std::move(item)) {}
    bool await_ready() {
      if (BindAndTakeCancel("Queue::Put")) return true;
      if (queue_->shutdown_) {
        error_ = internal::QueueShutDownError();
        return true;
      }
      if (!queue_->getters_.empty() || (!queue_->full() && queue_->putters_.empty())) {
        queue_->Admit(std::move(*item_));
        return true;
      }
      return false;
    }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(queue_->putters_, at); }
    absl::Status await_resume() { return TakeOutcome(); }

   private:
    friend class BasicQueue;
    BasicQueue* queue_;
    std::optional<T> item_;  // moved into the queue when this putter's turn comes
  };
  PutAwaiter Put(T item) { return PutAwaiter(*this, std::move(item)); }

  class [[nodiscard]] GetAwaiter : public internal::WaitNode {
   public:
    explicit GetAwaiter(BasicQueue& queue) : queue_(&queue) {}
    bool await_ready() {
      if (BindAndTakeCancel("Queue::Get")) return true;
      if (!queue_->items_.empty()) {
        item_.emplace(queue_->Take());
        return true;
      }
      if (queue_->shutdown_) {
        error_ = internal::QueueShutDownError();
        return true;
      }
      return false;
    }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(queue_->getters_, at); }
    absl::StatusOr<T> await_resume() {
      absl::Status status = TakeOutcome();
      if (!status.ok()) return status;
      return std::move(*item_);
    }

   private:
    friend class BasicQueue;
    BasicQueue* queue_;
    std::optional<T> item_;  // filled before the getter is woken
  };
  GetAwaiter Get() { return GetAwaiter(*this); }

  // asyncio's Queue.join: waits until every item put has been marked with TaskDone().
  class [[nodiscard]] JoinAwaiter : public internal::WaitNode {
   public:
    explicit JoinAwaiter(BasicQueue& queue) : queue_(&queue) {}
    bool await_ready() { return BindAndTakeCancel("Queue::Join") || queue_->unfinished_ == 0; }
    void await_suspend(std::coroutine_handle<> at) { SuspendOn(queue_->joiners_, at); }
    absl::Status await_resume() { return TakeOutcome(); }

   private:
    BasicQueue* queue_;
  };
  JoinAwaiter Join() { return JoinAwaiter(*this); }

 private:
  // A new item enters: straight to the longest-waiting getter, or into the storage.
  void Admit(T item) {
    ++unfinished_;
    if (auto* getter = static_cast<GetAwaiter*>(getters_.PopFront())) {
      getter->item_.emplace(std::move(item));
      getter->Wake();
      return;
    }
    items_.Push(std::move(item));
  }
  // An item leaves: the slot it frees goes to the longest-waiting putter.
  T Take() {
    T item = items_.Pop();
    if (auto* putter = static_cast<PutAwaiter*>(putters_.PopFront())) {
      ++unfinished_;
      items_.Push(std::move(*putter->item_));
      putter->Wake();
    }
    return item;
  }
  void WakeJoiners() {
    while (internal::WaitNode* joiner = joiners_.PopFront()) joiner->Wake();
  }

  Storage items_;
  internal::WaitList getters_;
  internal::WaitList putters_;
  internal::WaitList joiners_;
  size_t maxsize_;
  int64_t unfinished_ = 0;
  bool shutdown_ = false;
};

template <class T>
using Queue = BasicQueue<T, internal::SequenceStorage<T, /*kLifo=*/false>>;
template <class T>
using LifoQueue = BasicQueue<T, internal::SequenceStorage<T, /*kLifo=*/true>>;
template <class T, class Compare = std::less<T>>
using PriorityQueue = BasicQueue<T, internal::PriorityStorage<T, Compare>>;

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_QUEUE_H_
