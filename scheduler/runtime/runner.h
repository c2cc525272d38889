// Runner: asyncio.Runner. Runs top-level coroutines one after another on one EventLoop that it
// owns; tasks they start may outlive them and go on running in later Run calls. Close() (or
// the destructor) cancels every task still running, waits for them all to end, and shuts the
// loop down, as asyncio.run does on its way out.
//
//   Runner runner;
//   absl::StatusOr<int> v = runner.Run(Main());
//
// Thread-safety: one thread at a time; Run blocks that thread until the coroutine has ended.
#ifndef COTASK_SCHEDULER_RUNTIME_RUNNER_H_
#define COTASK_SCHEDULER_RUNTIME_RUNNER_H_

#include "absl/status/status.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

class Runner {
 public:
  Runner() = default;
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  ~Runner() { Close(); }

  // FAILED_PRECONDITION (and the coroutine never runs) if the runner is closed or if called
  // from inside a running event loop.
  template <class T>
  ResultOf<T> Run(Task<T> main) {
    if (absl::Status status = CheckCanRun(); !status.ok()) return status;
    return loop_.RunUntilComplete(std::move(main));
  }

  void Close();
  bool closed() const { return closed_; }
  EventLoop& loop() { return loop_; }

 private:
  absl::Status CheckCanRun() const;

  EventLoop loop_;
  bool closed_ = false;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_RUNNER_H_
