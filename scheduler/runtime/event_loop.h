// EventLoop: asyncio's event loop, driven by one grpc::CompletionQueue.
//
// One thread runs the loop (Run, RunUntilComplete). Each iteration polls the completion queue,
// fires due timers and runs the callbacks and task steps that were ready when it began, in FIFO
// order, as asyncio's _run_once does. The queue is polled without blocking at least every
// kBusyPollInterval while there is ready work, and with a blocking wait bounded by the earliest
// timer when there is none. Timers live in one heap; the loop's blocking wait on the queue is
// what wakes it for them, so a timer costs no gRPC work at all (bench/README.md has the
// measurements that chose this over a grpc::Alarm per timer).
//
// Thread-safety: everything here runs on the loop thread, except Post, which any thread may
// call: its callbacks are queued under a mutex and one grpc::Alarm set to "now" wakes the loop,
// armed only when that queue goes from empty to non-empty.
//
// Shutdown drains the completion queue without resuming anything, drops queued callbacks
// unrun, and destroys the frames of tasks still alive (their outcome becomes CANCELLED).
#ifndef COTASK_SCHEDULER_RUNTIME_EVENT_LOOP_H_
#define COTASK_SCHEDULER_RUNTIME_EVENT_LOOP_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "scheduler/runtime/internal/intrusive_list.h"
#include "scheduler/runtime/internal/ring_buffer.h"
#include "scheduler/runtime/internal/timer_heap.h"
#include "scheduler/runtime/result.h"

namespace grpc {
class CompletionQueue;
}

namespace cotask::runtime {

template <class T>
class Task;
template <class T>
class TaskHandle;
class EventLoop;

namespace internal {
class TaskState;
struct LoopTasksTag;
class CallbackTimer;
}  // namespace internal

// A callback scheduled with CallLater/CallAt. Cancel() stops it from running, also when it is
// already due and waiting for its turn. Dropping the handle does not cancel the callback.
class TimerHandle {
 public:
  TimerHandle() = default;
  explicit TimerHandle(internal::CallbackTimer* timer);
  TimerHandle(const TimerHandle& other);
  TimerHandle& operator=(TimerHandle other);
  ~TimerHandle();

  void Cancel();
  // True once Cancel() was called before the callback ran.
  bool cancelled() const;

 private:
  internal::CallbackTimer* timer_ = nullptr;
};

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = Clock::duration;
  using TimePoint = Clock::time_point;

  // How long ready work may run before the completion queue is polled again.
  static constexpr Duration kBusyPollInterval = std::chrono::microseconds(100);

  EventLoop();
  // Takes a queue made elsewhere (e.g. a grpc::ServerCompletionQueue from a ServerBuilder, or
  // NonPollingQueue()).
  explicit EventLoop(std::unique_ptr<grpc::CompletionQueue> queue);

  // A queue whose waits never poll gRPC's sockets: for a loop that serves no calls and makes
  // none (cotaskd's engine), which then never does the transport's work for other loops' calls
  // (a polling queue's wait may be picked to read and write any connection's bytes).
  static std::unique_ptr<grpc::CompletionQueue> NonPollingQueue();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // The loop running on the calling thread, or null.
  static EventLoop* Current();

  // Runs until Stop() is called.
  void Run();
  // Starts the task and runs the loop until it has ended; returns its outcome. If the loop is
  // stopped before that, returns FAILED_PRECONDITION and leaves the task running.
  template <class T>
  ResultOf<T> RunUntilComplete(Task<T> task);
  template <class T>
  ResultOf<T> RunUntilComplete(const TaskHandle<T>& task);
  // Makes Run/RunUntilComplete return after the current iteration. Loop thread only; from
  // another thread, Post([&loop] { loop.Stop(); }).
  void Stop();

  bool is_running() const { return running_; }
  bool is_closed() const { return closed_; }
  TimePoint Now() const { return Clock::now(); }

  // asyncio's call_soon: runs fn in a later iteration, after what is already ready.
  void CallSoon(absl::AnyInvocable<void() &&> fn);
  TimerHandle CallLater(Duration delay, absl::AnyInvocable<void() &&> fn);
  TimerHandle CallAt(TimePoint when, absl::AnyInvocable<void() &&> fn);
  // asyncio's call_soon_threadsafe: callable from any thread. Returns false, and destroys fn
  // unrun, once the loop has been shut down.
  bool Post(absl::AnyInvocable<void() &&> fn);

  // Wraps the coroutine in a task scheduled to start in a later iteration (asyncio's
  // create_task). Defined in task.h.
  template <class T>
  TaskHandle<T> CreateTask(Task<T> task);

  // The queue that drives this loop: gRPC operations whose tag is an OperationBase go here.
  grpc::CompletionQueue& completion_queue();

  // See the class comment. Loop thread only, with the loop not running; the destructor calls
  // it if nobody has.
  void Shutdown();

  // The tasks that have not ended, oldest first (for Runner's cleanup and for debugging).
  template <class Fn>
  void ForEachTask(Fn&& fn);

  // For awaitables and the runtime's own types.
  void Schedule(internal::TaskState* task) { ready_.PushBack({&RunTaskStep, task}); }
  void AddTimer(internal::TimerNode* timer, TimePoint deadline) { timers_.Add(timer, deadline); }
  void RemoveTimer(internal::TimerNode* timer) { timers_.Remove(timer); }
  void RegisterTask(internal::TaskState* task);

 private:
  friend class internal::CallbackTimer;
  struct ReadyItem {
    // execute == false: the loop is shutting down; release what arg holds without running it.
    void (*run)(void* arg, bool execute);
    void* arg;
  };
  struct Completions;  // the completion queue and the Post machinery, kept out of this header

  static void RunTaskStep(void* task, bool execute);
  void RunOnce();
  absl::Status RunUntilDone(internal::TaskState& task);
  void PollCompletions(bool block, TimePoint deadline);
  void RunPosted();
  void EnterRun();
  void ExitRun();

  std::unique_ptr<Completions> completions_;
  internal::RingBuffer<ReadyItem> ready_;
  internal::TimerHeap timers_;
  internal::IntrusiveList<internal::TaskState, internal::LoopTasksTag> tasks_;
  TimePoint last_poll_{};
  bool running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_EVENT_LOOP_H_
