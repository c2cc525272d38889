// SchedulerService: cotask.v1.Scheduler served with gRPC's async API. Each call is a handler
// coroutine on an I/O event loop (the loop of one of the server's completion queues); the
// handler hops to the engine's loop for the engine's part (RunOn) and back to answer.
//
// Thread-safety: construct before the server starts; Listen once per I/O loop before that
// loop runs. The engine is only ever touched on its own loop.
#ifndef COTASK_SERVICE_SCHEDULER_SERVICE_H_
#define COTASK_SERVICE_SCHEDULER_SERVICE_H_

#include <atomic>
#include <cstddef>
#include <memory>

#include "absl/status/status.h"

namespace grpc {
class Service;
class ServerCompletionQueue;
class Status;
}  // namespace grpc

namespace cotask::runtime {
class EventLoop;
}
namespace cotask::engine {
class Engine;
}

namespace cotask::service {

class Metrics;

struct SchedulerServiceOptions {
  // Open Watch and StreamStats streams; past it they answer RESOURCE_EXHAUSTED.
  size_t max_watchers = 10'000;
  // How many bytes of events a Watch takes from the engine per hop.
  size_t watch_batch_bytes = 256 << 10;
};

class SchedulerService {
 public:
  // `metrics` (StreamStats' figures) outlives the service.
  SchedulerService(engine::Engine& engine, runtime::EventLoop& engine_loop, const Metrics& metrics,
                   SchedulerServiceOptions options);
  ~SchedulerService();
  SchedulerService(const SchedulerService&) = delete;
  SchedulerService& operator=(const SchedulerService&) = delete;

  // For grpc::ServerBuilder::RegisterService.
  grpc::Service* service();

  // Starts taking calls of every method from `queue`, handled on `loop`, whose queue it is.
  void Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The gRPC status of an error: its code and message, and a google.rpc.Status with its
// ErrorInfo in the details (sent as the grpc-status-details-bin trailer).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace cotask::service

#endif  // COTASK_SERVICE_SCHEDULER_SERVICE_H_
