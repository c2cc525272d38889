#include "service/server.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <future>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/loop_thread.h"
#include "scheduler/runtime/task.h"
#include "service/health_service.h"
#include "service/metrics.h"
#include "service/workers_service.h"

namespace cotask::service {
namespace {

// host:port -> host, for reporting the bound address ("[::1]:0" -> "[::1]").
absl::string_view HostOf(absl::string_view address) {
  size_t colon = address.rfind(':');
  return colon == absl::string_view::npos ? address : address.substr(0, colon);
}

runtime::Task<void> DrainThenSignal(engine::Engine* engine, runtime::EventLoop::Duration timeout,
                                    std::promise<void>* done) {
  absl::Status status = co_await engine->Drain(timeout);
  done->set_value();
  co_return status;
}

// Tasks that fail, in the log (task ids belong in logs, never in metric labels).
class TaskFailureLog final : public engine::EngineObserver {
 public:
  explicit TaskFailureLog(LogLevel level) : level_(level) {}
  void OnTaskState(const engine::TaskChange& change) override {
    const v1::Task& task = change.task;
    const v1::Task::State to = change.to;
    if (to != v1::Task::FAILED && to != v1::Task::TIMED_OUT) return;
    LogFields fields = {{"task", engine::TaskIdOf(change.key)},
                        {"kind", task.spec().has_exec()       ? "exec"
                                 : task.spec().has_dispatch() ? "dispatch"
                                                              : "sleep"},
                        {"state", v1::Task::State_Name(to)},
                        {"attempt", absl::StrCat(task.attempt())},
                        {"error", task.error().message()}};
    if (!change.group.empty()) fields.emplace_back("group", change.group);
    Log(level_, "task failed", fields);
  }

 private:
  LogLevel level_;
};

// The engine has one observer: this tells them all.
class Observers final : public engine::EngineObserver {
 public:
  void Add(engine::EngineObserver* observer) { observers_.push_back(observer); }
  void OnTaskState(const engine::TaskChange& change) override {
    for (engine::EngineObserver* o : observers_) o->OnTaskState(change);
  }
  void OnGroupState(const v1::Group& group, v1::Group::State to) override {
    for (engine::EngineObserver* o : observers_) o->OnGroupState(group, to);
  }
  void OnEventLogs(int64_t bytes_retained, int64_t events_dropped) override {
    for (engine::EngineObserver* o : observers_) o->OnEventLogs(bytes_retained, events_dropped);
  }
  void OnSpawn(bool started) override {
    for (engine::EngineObserver* o : observers_) o->OnSpawn(started);
  }
  void OnQueue(const engine::QueueFigures& queue) override {
    for (engine::EngineObserver* o : observers_) o->OnQueue(queue);
  }
  void OnWorkers(int64_t connected) override {
    for (engine::EngineObserver* o : observers_) o->OnWorkers(connected);
  }
  void OnLeaseLost(const std::string& queue) override {
    for (engine::EngineObserver* o : observers_) o->OnLeaseLost(queue);
  }
  void OnQueueFull(const std::string& queue) override {
    for (engine::EngineObserver* o : observers_) o->OnQueueFull(queue);
  }

 private:
  std::vector<engine::EngineObserver*> observers_;
};

}  // namespace

struct Server::State {
  ServerOptions options;
  // Outlive the engine (its observers) and the server (its calls count in them).
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<TaskFailureLog> failure_log;
  Observers observers;
  std::unique_ptr<runtime::LoopThread> engine_thread;
  // Made and destroyed on the engine thread.
  std::unique_ptr<process::ProcessSupervisor> processes;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<SchedulerService> scheduler;
  std::unique_ptr<WorkersService> workers;
  std::unique_ptr<HealthService> health;
  std::vector<std::unique_ptr<runtime::LoopThread>> io_threads;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  int port = 0;
  bool shut_down = false;

  // Stops the loops: I/O first (their handlers may still hop to the engine), then the engine
  // (with io_threads 0, the one that serves the calls).
  void StopLoops() {
    for (auto& io : io_threads) io->Stop();
    io_threads.clear();
    if (engine_thread) engine_thread->Stop();
  }
};

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  auto state = std::make_unique<State>();
  state->options = std::move(options);
  const ServerOptions& opts = state->options;
  if (opts.metrics_address.empty()) {
    state->metrics = Metrics::Unserved();
  } else {
    absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Start(opts.metrics_address);
    if (!metrics.ok()) return metrics.status();
    state->metrics = *std::move(metrics);
  }
  state->observers.Add(state->metrics.get());
  if (opts.task_failure_log_level.has_value()) {
    state->failure_log = std::make_unique<TaskFailureLog>(*opts.task_failure_log_level);
    state->observers.Add(state->failure_log.get());
  }
  state->options.engine.observer = &state->observers;

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // The server's completion queues, each with the loop that serves the calls arriving on it:
  // one per I/O thread, or, with io_threads 0, the engine's own (the calls are served on the
  // engine's thread and their hops to the engine are direct).
  std::vector<std::pair<grpc::ServerCompletionQueue*, runtime::LoopThread*>> serving;
  for (int i = 0; i < opts.io_threads; ++i) {
    std::unique_ptr<grpc::ServerCompletionQueue> queue = builder.AddCompletionQueue();
    grpc::ServerCompletionQueue* raw = queue.get();
    state->io_threads.push_back(std::make_unique<runtime::LoopThread>(std::move(queue)));
    serving.emplace_back(raw, state->io_threads.back().get());
  }
  // The engine's loop and thread before the services: they need the engine to exist. With I/O
  // threads, its queue does not poll the sockets, so the engine's thread runs only the engine
  // (measured: batched tasks/s +18%, bench/README.md).
  if (opts.io_threads == 0) {
    std::unique_ptr<grpc::ServerCompletionQueue> queue = builder.AddCompletionQueue();
    grpc::ServerCompletionQueue* raw = queue.get();
    state->engine_thread = std::make_unique<runtime::LoopThread>(std::move(queue));
    serving.emplace_back(raw, state->engine_thread.get());
  } else {
    state->engine_thread =
        std::make_unique<runtime::LoopThread>(runtime::EventLoop::NonPollingQueue());
  }
  std::promise<void> engine_ready;
  State* s = state.get();
  runtime::EventLoop& engine_loop = state->engine_thread->loop();
  state->engine_thread->Start(
      "cotask-engine",
      [s, &engine_loop, &engine_ready] {
        s->processes = std::make_unique<process::ProcessSupervisor>(
            engine_loop, process::SupervisorOptions{.adopt_orphans = s->options.adopt_orphans});
        s->engine = std::make_unique<engine::Engine>(engine_loop, *s->processes, s->options.engine);
        engine_ready.set_value();
      },
      [s] {
        s->engine.reset();
        s->processes.reset();
      });
  engine_ready.get_future().wait();

  state->scheduler = std::make_unique<SchedulerService>(*state->engine, engine_loop,
                                                        *state->metrics, opts.scheduler);
  state->workers = std::make_unique<WorkersService>(*state->engine, engine_loop, *state->metrics);
  state->health = std::make_unique<HealthService>(engine_loop, *state->metrics);
  builder.AddListeningPort(opts.address, grpc::InsecureServerCredentials(), &state->port);
  builder.RegisterService(state->scheduler->service());
  builder.RegisterService(state->workers->service());
  builder.RegisterService(state->health->service());
  builder.SetMaxReceiveMessageSize(opts.max_request_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(opts.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(opts.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (opts.max_connection_age != absl::InfiniteDuration()) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(absl::ToInt64Milliseconds(opts.max_connection_age)));
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
        static_cast<int>(absl::ToInt64Milliseconds(opts.max_connection_age_grace)));
  }
  state->server = builder.BuildAndStart();
  if (state->server == nullptr || state->port == 0) {
    // The queues were never used by a server: their loops can shut down without one.
    state->server.reset();
    state->StopLoops();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on --address=", opts.address,
        ": it must be host:port with a free port (0 picks one), on an interface of this host"));
  }
  for (size_t i = 0; i < serving.size(); ++i) {
    grpc::ServerCompletionQueue* queue = serving[i].first;
    runtime::LoopThread* thread = serving[i].second;
    auto listen = [s, queue, loop = &thread->loop()] {
      s->scheduler->Listen(*loop, *queue);
      s->workers->Listen(*loop, *queue);
      s->health->Listen(*loop, *queue);
    };
    if (thread == state->engine_thread.get()) {
      // Already running: the handlers are made on its thread.
      std::promise<void> listening;
      thread->loop().Post([&listen, &listening] {
        listen();
        listening.set_value();
      });
      listening.get_future().wait();
    } else {
      listen();
      thread->Start(absl::StrCat("cotask-io-", i));
    }
  }
  state->address = absl::StrCat(HostOf(opts.address), ":", state->port);
  std::unique_ptr<Server> server(new Server(std::move(state)));
  server->SetServing(true);
  return server;
}

Server::Server(std::unique_ptr<State> state) : state_(std::move(state)) {}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

const std::string& Server::address() const { return state_->address; }
int Server::port() const { return state_->port; }
const std::string& Server::metrics_address() const { return state_->metrics->address(); }

void Server::SetServing(bool serving) { state_->health->SetServing(serving); }

void Server::Shutdown(absl::Duration drain_timeout) {
  if (state_->shut_down) return;
  state_->shut_down = true;
  SetServing(false);
  std::promise<void> drained;
  engine::Engine* engine = state_->engine.get();
  const auto timeout = absl::ToChronoNanoseconds(drain_timeout);
  if (state_->engine_thread->loop().Post([engine, timeout, &drained] {
        runtime::CreateTask(DrainThenSignal(engine, timeout, &drained));
      })) {
    drained.get_future().wait();
  }
  // Every task and group has ended, so every Watch has seen its last event, and health
  // watchers are told now; what is still open is a slow reader or a unary call finishing: a
  // second is plenty.
  state_->health->Close();
  state_->server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  state_->server->Wait();
  state_->StopLoops();
}

}  // namespace cotask::service
