// LoopThread: an EventLoop running on a thread of its own (a server's engine or I/O loop, the
// other side of a RunOn, a benchmark's Post target).
//
//   LoopThread engine;
//   engine.Start();                      // the loop runs on the new thread
//   engine.loop().Post([] { ... });      // any thread talks to it through Post
//   engine.Stop();                       // (or the destructor) stops, shuts down and joins
//
// Thread-safety: Start, Stop and the destructor from one owning thread that is not the loop's;
// loop() may be handed to any thread for Post.
#ifndef COTASK_SCHEDULER_RUNTIME_LOOP_THREAD_H_
#define COTASK_SCHEDULER_RUNTIME_LOOP_THREAD_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "scheduler/runtime/event_loop.h"

namespace grpc {
class CompletionQueue;
}

namespace cotask::runtime {

class LoopThread {
 public:
  LoopThread();
  // Drives the loop with a queue made elsewhere (e.g. a grpc::ServerCompletionQueue).
  explicit LoopThread(std::unique_ptr<grpc::CompletionQueue> queue);
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;
  ~LoopThread() { Stop(); }

  EventLoop& loop() { return *loop_; }

  // Starts the thread, named `name` by the time Start returns (what top -H, perf and
  // /proc/PID/task/*/comm show; cut to 15 bytes; empty: the process's name): setup runs on it
  // before the loop runs (to make what must be made on the loop's thread), teardown after the loop
  // has stopped and before it is shut down.
  void Start(const std::string& name = "", absl::AnyInvocable<void() &&> setup = nullptr,
             absl::AnyInvocable<void() &&> teardown = nullptr);
  // Makes the loop return, runs teardown, shuts the loop down and joins the thread. Does
  // nothing if the thread never started or has been stopped.
  void Stop();

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_LOOP_THREAD_H_
