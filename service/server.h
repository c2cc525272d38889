// Server: cotaskd's gRPC server and the engine behind it.
//
// It serves cotask.v1.Scheduler, grpc.health.v1.Health and server reflection (so grpcurl and
// grpcui work). Threads: one runs the engine's event loop (tasks, groups, executors); each of
// `io_threads` runs the event loop of one server completion queue, where the handlers of the
// calls live and from which they hop to the engine and back. With io_threads 0 the engine's
// loop serves the calls itself: no hops (a task's end reaches its watcher sooner; on 2 CPUs
// more calls/s: bench/README.md), but gRPC's work and the engine's share one thread, which
// bounds a larger machine. (cotaskd's --io_threads=-1 picks 0 on <= 2 CPUs, else 1.)
//
// Thread-safety: Start, SetServing and Shutdown may be called from any thread that does not
// run one of the server's loops.
#ifndef COTASK_SERVICE_SERVER_H_
#define COTASK_SERVICE_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/engine/engine.h"
#include "service/log.h"
#include "service/scheduler_service.h"

namespace cotask::service {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see Server::address()).
  std::string address = "127.0.0.1:50051";
  // 0 to 64.
  int io_threads = 1;
  // The largest request message accepted (gRPC answers RESOURCE_EXHAUSTED past it).
  int max_request_bytes = 4 << 20;
  // Reparent orphaned descendants of exec tasks to cotaskd and reap them (see
  // process::SupervisorOptions): no zombies when cotaskd is a container's PID 1.
  bool adopt_orphans = true;
  // HTTP/2 keepalive: the server pings a connection idle this long, and drops it (cancelling
  // its calls: a runner ends) if the ping is not answered within keepalive_timeout. Clients
  // may ping every 10s or more.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Set: a connection is closed (GOAWAY) once this old, its calls given the grace to end, so
  // that clients spread over new servers behind a load balancer; clients reconnect (Watch
  // resumes where it was).
  absl::Duration max_connection_age = absl::InfiniteDuration();
  absl::Duration max_connection_age_grace = absl::Seconds(10);
  // Tasks that end FAILED or TIMED_OUT are logged at this level; unset: not logged.
  std::optional<LogLevel> task_failure_log_level = LogLevel::kWarning;
  // Where /metrics is served (Prometheus); port 0 picks one; empty: not served.
  std::string metrics_address = "127.0.0.1:9464";
  engine::EngineOptions engine;
  SchedulerServiceOptions scheduler;
};

class Server {
 public:
  // UNAVAILABLE (naming the address) if it cannot listen there.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  // Shutdown(0) if it has not been called.
  ~Server();

  // host:port actually bound, with the real port when 0 was asked for.
  const std::string& address() const;
  int port() const;
  // host:port of /metrics (with the real port); empty if not served.
  const std::string& metrics_address() const;

  // What grpc.health.v1.Health answers for the server as a whole ("") and for each service.
  void SetServing(bool serving);

  // The drain: health turns NOT_SERVING and new tasks and groups are refused with UNAVAILABLE;
  // tasks get `drain_timeout` to end, then what is left is cancelled (exec processes get their
  // kill grace); once every task and group has ended, open calls (watches) end and the
  // threads stop.
  void Shutdown(absl::Duration drain_timeout);

  struct State;

 private:
  explicit Server(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace cotask::service

#endif  // COTASK_SERVICE_SERVER_H_
