// Timeout: asyncio.timeout / wait_for. Timeout(d, op) awaits op inside the calling task; if
// op has not ended after d, the task is cancelled at its current await and the CANCELLED that
// comes out of op becomes DEADLINE_EXCEEDED. A cancellation from elsewhere stays CANCELLED:
// the task's cancelling() count tells the two apart, as in asyncio. op is anything awaitable
// whose result is an absl::Status or StatusOr: a Task<T>, Sleep, a queue Get, a TaskHandle.
//
//   absl::StatusOr<Reply> r = co_await Timeout(2s, Fetch(request));
#ifndef COTASK_SCHEDULER_RUNTIME_TIMEOUT_H_
#define COTASK_SCHEDULER_RUNTIME_TIMEOUT_H_

#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/internal/timer_heap.h"
#include "scheduler/runtime/result.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {
namespace internal {

template <class A>
decltype(auto) GetAwaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else {
    return std::forward<A>(a);
  }
}
template <class A>
using AwaitResultT = std::remove_cvref_t<decltype(GetAwaiter(std::declval<A&&>()).await_resume())>;

// Cancels the task when the deadline passes; Finish() turns the resulting cancellation into
// DEADLINE_EXCEEDED and withdraws the request (uncancel), as asyncio.Timeout.__aexit__ does.
class TimeoutScope final : private TimerNode {
 public:
  TimeoutScope(EventLoop::Duration delay);
  TimeoutScope(const TimeoutScope&) = delete;
  TimeoutScope& operator=(const TimeoutScope&) = delete;
  ~TimeoutScope();

  // The status the operation's outcome becomes: DEADLINE_EXCEEDED replaces a cancellation
  // that this timeout caused; anything else passes through.
  absl::Status Finish(const absl::Status& outcome);
  bool expired() const { return expired_; }

 private:
  static void Fire(TimerNode* timer);

  TaskState* task_;
  EventLoop::Duration delay_;
  int cancelling_at_entry_;
  bool expired_ = false;
};

}  // namespace internal

template <class A>
Task<typename ValueOfResult<internal::AwaitResultT<A>>::type> Timeout(EventLoop::Duration delay,
                                                                      A op) {
  internal::TimeoutScope scope(delay);
  internal::AwaitResultT<A> result = co_await std::move(op);
  if (absl::Status status = scope.Finish(StatusOf(result)); !status.ok()) co_return status;
  co_return result;
}

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_TIMEOUT_H_
