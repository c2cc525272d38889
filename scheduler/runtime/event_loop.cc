#include "scheduler/runtime/event_loop.h"

#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

#include <mutex>
#include <utility>
#include <vector>

#include "scheduler/runtime/check.h"
#include "scheduler/runtime/operation_base.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

namespace {
constinit thread_local EventLoop* current_loop = nullptr;
}  // namespace

namespace internal {

// A callback scheduled with CallLater/CallAt. The loop holds one reference while the timer is
// scheduled or due; each TimerHandle holds one.
class CallbackTimer final : public TimerNode {
 public:
  CallbackTimer(EventLoop& loop, absl::AnyInvocable<void() &&> fn)
      : TimerNode(&Fire), loop_(&loop), fn_(std::move(fn)) {}

  void AddRef() { ++refs_; }
  void Release() {
    if (--refs_ == 0) delete this;
  }

  void Cancel() {
    if (cancelled_ || ran_) return;
    cancelled_ = true;
    fn_ = nullptr;
    if (scheduled()) {
      loop_->RemoveTimer(this);
      Release();
    }
  }
  bool cancelled() const { return cancelled_; }

  // The loop is shutting down: drop the callback unrun.
  void Discard() {
    loop_->RemoveTimer(this);
    fn_ = nullptr;
    Release();
  }

 private:
  static void Fire(TimerNode* node) {
    auto* timer = static_cast<CallbackTimer*>(node);
    timer->loop_->ready_.PushBack({&RunDue, timer});
  }
  static void RunDue(void* arg, bool execute) {
    auto* timer = static_cast<CallbackTimer*>(arg);
    if (execute && !timer->cancelled_) {
      timer->ran_ = true;
      std::move(timer->fn_)();
      timer->fn_ = nullptr;
    }
    timer->Release();
  }

  EventLoop* loop_;
  absl::AnyInvocable<void() &&> fn_;
  uint32_t refs_ = 1;
  bool cancelled_ = false;
  bool ran_ = false;
};

}  // namespace internal

TimerHandle::TimerHandle(internal::CallbackTimer* timer) : timer_(timer) {
  if (timer_ != nullptr) timer_->AddRef();
}
TimerHandle::TimerHandle(const TimerHandle& other) : TimerHandle(other.timer_) {}
TimerHandle& TimerHandle::operator=(TimerHandle other) {
  std::swap(timer_, other.timer_);
  return *this;
}
TimerHandle::~TimerHandle() {
  if (timer_ != nullptr) timer_->Release();
}
void TimerHandle::Cancel() {
  if (timer_ != nullptr) timer_->Cancel();
}
bool TimerHandle::cancelled() const { return timer_ != nullptr && timer_->cancelled(); }

// The completion queue, and Post's queue with the one alarm that wakes the loop for it.
struct EventLoop::Completions {
  class PostOperation final : public OperationBase {
   public:
    explicit PostOperation(EventLoop& loop) : loop_(&loop) {}
    void Complete(bool /*ok*/) override { loop_->RunPosted(); }

   private:
    EventLoop* loop_;
  };

  Completions(EventLoop& loop, std::unique_ptr<grpc::CompletionQueue> q)
      : queue(std::move(q)), post_operation(loop) {}

  std::unique_ptr<grpc::CompletionQueue> queue;
  PostOperation post_operation;
  grpc::Alarm post_alarm;
  std::mutex mutex;
  // Guarded by mutex. The alarm is armed exactly when `posted` goes from empty to non-empty,
  // and the loop empties `posted` only when that alarm's tag comes back, so the alarm is never
  // set while in flight.
  std::vector<absl::AnyInvocable<void() &&>> posted;
  bool closed = false;
};

EventLoop::EventLoop() : EventLoop(std::make_unique<grpc::CompletionQueue>()) {}

std::unique_ptr<grpc::CompletionQueue> EventLoop::NonPollingQueue() {
  grpc_completion_queue_attributes attributes{GRPC_CQ_CURRENT_VERSION, GRPC_CQ_NEXT,
                                              GRPC_CQ_NON_POLLING, nullptr};
  return std::make_unique<grpc::CompletionQueue>(grpc_completion_queue_create(
      grpc_completion_queue_factory_lookup(&attributes), &attributes, nullptr));
}

EventLoop::EventLoop(std::unique_ptr<grpc::CompletionQueue> queue)
    : completions_(std::make_unique<Completions>(*this, std::move(queue))) {}

EventLoop::~EventLoop() {
  if (!closed_) Shutdown();
}

EventLoop* EventLoop::Current() { return current_loop; }

grpc::CompletionQueue& EventLoop::completion_queue() { return *completions_->queue; }

void EventLoop::EnterRun() {
  COTASK_CHECK(!closed_, "running an event loop that was shut down");
  COTASK_CHECK(!running_, "the event loop is already running");
  COTASK_CHECK(current_loop == nullptr, "another event loop is running on this thread");
  running_ = true;
  stopping_ = false;
  current_loop = this;
}

void EventLoop::ExitRun() {
  running_ = false;
  stopping_ = false;
  current_loop = nullptr;
}

void EventLoop::Run() {
  EnterRun();
  while (!stopping_) RunOnce();
  ExitRun();
}

absl::Status EventLoop::RunUntilDone(internal::TaskState& task) {
  COTASK_CHECK(&task.loop() == this, "RunUntilComplete of a task on another loop");
  EnterRun();
  while (!task.done() && !stopping_) RunOnce();
  ExitRun();
  if (!task.done()) {
    return absl::FailedPreconditionError("the event loop stopped before the task ended");
  }
  return absl::OkStatus();
}

void EventLoop::Stop() { stopping_ = true; }

void EventLoop::RunOnce() {
  TimePoint now = Clock::now();
  const bool timer_due = !timers_.empty() && timers_.earliest() <= now;
  if (ready_.empty() && !timer_due) {
    PollCompletions(/*block=*/true, timers_.empty() ? TimePoint::max() : timers_.earliest());
    now = Clock::now();
  } else if (now - last_poll_ >= kBusyPollInterval) {
    PollCompletions(/*block=*/false, now);
  }
  timers_.FireDue(now);
  // Run what is ready now; what this schedules runs in the next iteration.
  for (size_t n = ready_.size(); n > 0; --n) {
    ReadyItem item = ready_.PopFront();
    item.run(item.arg, /*execute=*/true);
  }
}

void EventLoop::PollCompletions(bool block, TimePoint deadline) {
  // At most this many completions per poll, so ready work is not starved by a flood.
  constexpr int kMaxCompletionsPerPoll = 256;
  gpr_timespec wait_until = gpr_time_0(GPR_CLOCK_MONOTONIC);
  if (block) {
    if (deadline == TimePoint::max()) {
      wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    } else {
      // gRPC's monotonic clock has its own epoch: convert via the remaining time.
      auto remaining =
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
      if (remaining.count() > 0) {
        wait_until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                  gpr_time_from_nanos(remaining.count(), GPR_TIMESPAN));
      }
    }
  }
  grpc::CompletionQueue& queue = *completions_->queue;
  void* tag = nullptr;
  bool ok = false;
  for (int i = 0; i < kMaxCompletionsPerPoll; ++i) {
    auto status = queue.AsyncNext(&tag, &ok, wait_until);
    if (status != grpc::CompletionQueue::GOT_EVENT) {
      COTASK_CHECK(status == grpc::CompletionQueue::TIMEOUT,
                   "the event loop's completion queue was shut down while the loop ran");
      break;
    }
    static_cast<OperationBase*>(tag)->Complete(ok);
    wait_until = gpr_time_0(GPR_CLOCK_MONOTONIC);
  }
  last_poll_ = Clock::now();
}

void EventLoop::CallSoon(absl::AnyInvocable<void() &&> fn) {
  using Box = absl::AnyInvocable<void() &&>;
  ready_.PushBack({[](void* arg, bool execute) {
                     std::unique_ptr<Box> box(static_cast<Box*>(arg));
                     if (execute) std::move (*box)();
                   },
                   new Box(std::move(fn))});
}

TimerHandle EventLoop::CallLater(Duration delay, absl::AnyInvocable<void() &&> fn) {
  return CallAt(Clock::now() + delay, std::move(fn));
}

TimerHandle EventLoop::CallAt(TimePoint when, absl::AnyInvocable<void() &&> fn) {
  auto* timer = new internal::CallbackTimer(*this, std::move(fn));
  timers_.Add(timer, when);
  return TimerHandle(timer);
}

bool EventLoop::Post(absl::AnyInvocable<void() &&> fn) {
  Completions& c = *completions_;
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.closed) return false;
  c.posted.push_back(std::move(fn));
  if (c.posted.size() == 1) {
    c.post_alarm.Set(c.queue.get(), gpr_time_0(GPR_CLOCK_MONOTONIC), &c.post_operation);
  }
  return true;
}

void EventLoop::RunPosted() {
  std::vector<absl::AnyInvocable<void() &&>> posted;
  {
    std::lock_guard<std::mutex> lock(completions_->mutex);
    posted.swap(completions_->posted);
  }
  for (auto& fn : posted) std::move(fn)();
}

void EventLoop::RegisterTask(internal::TaskState* task) {
  COTASK_CHECK(!closed_, "CreateTask on an event loop that was shut down");
  tasks_.PushBack(task);
  task->Wake();
}

void EventLoop::Shutdown() {
  COTASK_CHECK(!running_, "Shutdown of a running event loop");
  if (closed_) return;
  closed_ = true;
  Completions& c = *completions_;
  std::vector<absl::AnyInvocable<void() &&>> posted;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.closed = true;
    posted.swap(c.posted);
  }
  // Drain the queue: every operation still in flight comes back, and nothing is resumed.
  c.queue->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (c.queue->Next(&tag, &ok)) {
  }
  posted.clear();
  // Destroy what is left. Destroying a frame can schedule other tasks or release timers, so
  // repeat until nothing remains.
  const absl::Status why = absl::CancelledError("the event loop was shut down");
  while (!tasks_.empty() || !ready_.empty()) {
    while (internal::TaskState* task = tasks_.front()) task->Abandon(why);
    while (!ready_.empty()) {
      ReadyItem item = ready_.PopFront();
      item.run(item.arg, /*execute=*/false);
    }
  }
  // Only callback timers can remain: the timers of sleeping tasks went with their frames.
  while (!timers_.empty()) {
    auto* timer = static_cast<internal::CallbackTimer*>(timers_.front());
    timer->Discard();
  }
}

void EventLoop::RunTaskStep(void* task, bool execute) {
  if (execute) static_cast<internal::TaskState*>(task)->Step();
}

}  // namespace cotask::runtime
