// WorkersService: cotask.v1.Workers served with gRPC's async API, on the same I/O loops as the
// Scheduler service. Each Work stream is a handler coroutine: a reader that hands the worker's
// messages to the engine, and a writer that sends the engine's assignments and cancels, until
// the stream ends; the engine then takes the worker's tasks back (engine.h, CloseWorker).
//
// Thread-safety: as SchedulerService's.
#ifndef COTASK_SERVICE_WORKERS_SERVICE_H_
#define COTASK_SERVICE_WORKERS_SERVICE_H_

#include <memory>

namespace grpc {
class Service;
class ServerCompletionQueue;
}  // namespace grpc

namespace cotask::runtime {
class EventLoop;
}
namespace cotask::engine {
class Engine;
}

namespace cotask::service {

class Metrics;

class WorkersService {
 public:
  // `metrics` (its calls' grpc_server_* figures) outlives the service.
  WorkersService(engine::Engine& engine, runtime::EventLoop& engine_loop, const Metrics& metrics);
  ~WorkersService();
  WorkersService(const WorkersService&) = delete;
  WorkersService& operator=(const WorkersService&) = delete;

  // For grpc::ServerBuilder::RegisterService.
  grpc::Service* service();
  // Starts taking calls from `queue`, handled on `loop`, whose queue it is.
  void Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cotask::service

#endif  // COTASK_SERVICE_WORKERS_SERVICE_H_
