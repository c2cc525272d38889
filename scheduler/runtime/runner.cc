#include "scheduler/runtime/runner.h"

#include <vector>

#include "scheduler/runtime/wait.h"

namespace cotask::runtime {

absl::Status Runner::CheckCanRun() const {
  if (closed_) return absl::FailedPreconditionError("the Runner is closed");
  if (EventLoop::Current() != nullptr) {
    return absl::FailedPreconditionError(
        "Runner::Run cannot be called from inside a running event loop");
  }
  return absl::OkStatus();
}

namespace {
Task<void> AwaitAll(std::vector<TaskRef> tasks) {
  // Waiting is not cancellable from outside here: nothing else runs this coroutine.
  auto waited = co_await Wait(std::move(tasks), ReturnWhen::kAllCompleted);
  co_return waited.status();
}
}  // namespace

void Runner::Close() {
  if (closed_) return;
  closed_ = true;
  std::vector<TaskRef> remaining;
  loop_.ForEachTask([&](TaskRef task) {
    task.Cancel("the runner is closing");
    remaining.push_back(std::move(task));
  });
  if (!remaining.empty()) {
    absl::Status status = loop_.RunUntilComplete(AwaitAll(std::move(remaining)));
    COTASK_CHECK(status.ok(), "waiting for the cancelled tasks failed");
  }
  loop_.Shutdown();
}

}  // namespace cotask::runtime
