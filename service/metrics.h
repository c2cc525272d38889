// Metrics: cotaskd's Prometheus metrics, served on /metrics of their own HTTP address.
//
// - cotask_*: tasks (created, finished by kind and state, pending and running, time waiting and
//   running, retries, cancellations), groups, event logs, exec spawns, build info: fed by the
//   engine as its observer (engine::EngineObserver), on the engine's thread;
// - grpc_server_*: go-grpc-prometheus's names and labels, counted by the services' serve helpers
//   on the I/O threads (a GrpcCall per call, of its method's GrpcMethod): cotask's own services
//   (Scheduler, Workers, Health), not gRPC's reflection service;
// - process_*: read from /proc at each scrape.
// - cotask_queue_*, cotask_workers_connected: queues and workers, from the same observer.
// No label carries a task id, a group name or anything else a client chooses freely: kinds,
// states, gRPC methods and codes, and queue names (at most --max_queues of them).
//
// Thread-safety: the observer's calls come from one thread at a time (the engine's: its task
// figures have a single writer, see metrics.cc); GrpcCalls may run on any threads at once;
// scrapes (the exposer's thread) and Snapshot may run alongside both.
#ifndef COTASK_SERVICE_METRICS_H_
#define COTASK_SERVICE_METRICS_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cotask/v1/scheduler.pb.h"
#include "scheduler/engine/observer.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace cotask::service {

struct GrpcMethodMetrics;

// One call's grpc_server_* figures, as go-grpc-prometheus counts them: started when made,
// Received and Sent per message, Handled once at its end (its code and how long it took).
// A null method counts nothing (the benchmarks' ceiling server).
class GrpcCall {
 public:
  explicit GrpcCall(GrpcMethodMetrics* method);
  void Received();
  void Sent();
  void Handled(absl::StatusCode code);

 private:
  GrpcMethodMetrics* method_;
  std::chrono::steady_clock::time_point start_;
};

class Metrics final : public engine::EngineObserver {
 public:
  // Serves /metrics on `address` (host:port; port 0 picks one). UNAVAILABLE if it cannot.
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& address);
  // Metrics that are not served (for tests, and for --metrics_address="").
  static std::unique_ptr<Metrics> Unserved();
  ~Metrics() override;

  // host:port actually bound; empty if not served.
  const std::string& address() const;
  prometheus::Registry& registry();
  // The text exposition of everything, as a scrape gets it.
  std::string Scrape() const;
  // The cotask_* figures now, for StreamStats.
  v1::Stats Snapshot() const;

  // The grpc_server_* figures of `method` of `service` ("cotask.v1.Scheduler", "Run"), for its
  // serve loop; its grpc_type comes from the generated descriptors. Dies if they have no such
  // method, so that a misspelt name fails at startup. Lives as long as the metrics.
  GrpcMethodMetrics& GrpcMethod(std::string_view service, std::string_view method) const;

  void OnTaskState(const engine::TaskChange& change) override;
  void OnGroupState(const v1::Group& group, v1::Group::State to) override;
  void OnEventLogs(int64_t bytes_retained, int64_t events_dropped) override;
  void OnSpawn(bool started) override;
  void OnQueue(const engine::QueueFigures& queue) override;
  void OnWorkers(int64_t connected) override;
  void OnLeaseLost(const std::string& queue) override;
  void OnQueueFull(const std::string& queue) override;

  struct State;

 private:
  explicit Metrics(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace cotask::service

#endif  // COTASK_SERVICE_METRICS_H_
