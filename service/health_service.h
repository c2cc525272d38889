// HealthService: grpc.health.v1.Health, served like the rest of the API: handler coroutines on
// the I/O loops, the statuses on one loop (the engine's) where they change.
//
// It answers for the server as a whole ("") and for cotask.v1.Scheduler; any other name is
// NOT_FOUND for Check and SERVICE_UNKNOWN for Watch (as the health protocol says). Watch sends
// the current status, then every change. Close() (the end of a drain) sends watchers a last
// NOT_SERVING and ends their streams with UNAVAILABLE, so that the server's shutdown waits for
// no one.
//
// Thread-safety: SetServing and Close may be called from any thread (they post to the statuses'
// loop); Listen once per I/O loop before it runs.
#ifndef COTASK_SERVICE_HEALTH_SERVICE_H_
#define COTASK_SERVICE_HEALTH_SERVICE_H_

#include <memory>

namespace grpc {
class Service;
class ServerCompletionQueue;
}  // namespace grpc

namespace cotask::runtime {
class EventLoop;
}

namespace cotask::service {

class Metrics;

class HealthService {
 public:
  // The statuses live on `state_loop` (they start NOT_SERVING). `metrics` (its calls'
  // grpc_server_* figures) outlives the service.
  HealthService(runtime::EventLoop& state_loop, const Metrics& metrics);
  ~HealthService();
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  grpc::Service* service();
  void Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue);

  void SetServing(bool serving);
  void Close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cotask::service

#endif  // COTASK_SERVICE_HEALTH_SERVICE_H_
