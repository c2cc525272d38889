#include "scheduler/runtime/loop_thread.h"

#include <grpcpp/completion_queue.h>
#include <pthread.h>

#include <utility>

namespace cotask::runtime {

LoopThread::LoopThread() : loop_(std::make_unique<EventLoop>()) {}

LoopThread::LoopThread(std::unique_ptr<grpc::CompletionQueue> queue)
    : loop_(std::make_unique<EventLoop>(std::move(queue))) {}

void LoopThread::Start(const std::string& name, absl::AnyInvocable<void() &&> setup,
                       absl::AnyInvocable<void() &&> teardown) {
  thread_ = std::thread(
      [loop = loop_.get(), setup = std::move(setup), teardown = std::move(teardown)]() mutable {
        if (setup) std::move(setup)();
        loop->Run();
        if (teardown) std::move(teardown)();
        loop->Shutdown();
      });
  // Named from here, so that it has its name once Start returns. (Linux takes at most 15
  // bytes and refuses a longer name.)
  if (!name.empty()) pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

void LoopThread::Stop() {
  if (!thread_.joinable()) return;
  loop_->Post([loop = loop_.get()] { loop->Stop(); });
  thread_.join();
}

}  // namespace cotask::runtime
