#include "service/workers_service.h"

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cotask/v1/workers.grpc.pb.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/run_on.h"
#include "scheduler/runtime/sleep.h"
#include "service/internal/call_ops.h"
#include "service/internal/engine_calls.h"
#include "service/internal/serve.h"
#include "service/log.h"
#include "service/metrics.h"
#include "service/scheduler_service.h"

namespace cotask::service {

using internal::DoneSignal;
using internal::Op;
using Async = v1::Workers::AsyncService;

struct WorkersService::Impl {
  engine::Engine* engine;
  runtime::EventLoop* engine_loop;
  const Metrics* metrics;
  Async async;
};

namespace {

using Impl = WorkersService::Impl;
using WorkStream = grpc::ServerAsyncReaderWriter<v1::WorkResponse, v1::WorkRequest>;

runtime::Task<v1::WorkResponse> OpenWorker(engine::Engine* engine, v1::WorkerHello hello,
                                           std::string peer) {
  co_return engine->OpenWorker(hello, std::move(peer));
}

runtime::Task<void> Nothing() { co_return absl::OkStatus(); }

runtime::Task<void> CloseWorker(engine::Engine* engine, std::string worker, std::string reason) {
  engine->CloseWorker(worker, reason);
  co_return absl::OkStatus();
}

// How the worker's side of the stream ended, as the reader saw it. Shared with the engine's
// handling of the worker's messages, which may end it (a malformed message) after the stream's
// handler has gone: touched on the stream's loop only.
struct WorkerEnd {
  bool seen = false;
  std::string reason;     // for the lost tasks' errors and the log
  absl::Status status;    // the call's status: OK, or the error of a malformed message
  runtime::TaskRef main;  // the stream's handler, until it closes the worker
};

// Hands the worker's messages to the engine until its side ends (or a message is malformed),
// then stops the writer (`main`) so that the worker is closed. The messages are posted to the
// engine's loop in order without waiting for each (a round trip per result would bound a
// worker's rate by the loops' wake-ups); every kInFlight messages the reader waits for the
// engine to catch up, so that a flooding worker is held back by its own stream.
runtime::Task<void> ReadWorkerMessages(Impl* impl, WorkStream* stream, GrpcCall* call,
                                       std::string id, std::shared_ptr<WorkerEnd> end) {
  constexpr int kInFlight = 256;
  runtime::EventLoop* loop = &runtime::internal::CurrentTaskOrDie("ReadWorkerMessages").loop();
  v1::WorkRequest message;
  bool got = true;
  int posted = 0;
  while ((got = co_await Op([&](void* tag) { stream->Read(&message, tag); }))) {
    call->Received();
    if (!end->status.ok()) break;  // an earlier message was malformed
    impl->engine_loop->Post(
        [engine = impl->engine, id, message = std::move(message), end, loop]() mutable {
          absl::Status handled = engine->WorkerMessage(id, message);
          if (handled.ok() || absl::IsCancelled(handled)) return;
          loop->Post([end, handled = std::move(handled)] {
            if (!end->status.ok()) return;
            end->status = handled;
            end->reason = absl::StrCat("it broke the stream's protocol: ", handled.message());
            // The handler stops writing, closes the worker and ends the call with the error.
            if (end->main) end->main.Cancel(end->reason);
          });
        });
    message = v1::WorkRequest();
    if (++posted == kInFlight) {
      posted = 0;
      (void)co_await runtime::RunOn(*impl->engine_loop, Nothing());
    }
  }
  if (end->status.ok() && !got) {
    end->reason = "its stream ended (the worker closed it, disconnected, or its keepalive expired)";
  }
  end->seen = true;
  if (end->main) end->main.Cancel(end->reason);
  while (got) {
    if ((got = co_await Op([&](void* tag) { stream->Read(&message, tag); }))) call->Received();
  }
  co_return absl::OkStatus();
}

runtime::Task<void> ServeWork(Impl* impl, runtime::EventLoop* loop,
                              grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  grpc::ServerContext context;
  WorkStream stream(&context);
  DoneSignal done;
  done.Arm(context);
  const bool started = co_await Op(
      [&](void* tag) { impl->async.RequestWork(&context, &stream, queue, queue, tag); });
  if (!started) co_return absl::OkStatus();  // the server is shutting down
  loop->CreateTask(ServeWork(impl, loop, queue, counted));
  GrpcCall call(counted);
  auto finish = [&](const absl::Status& status) {
    call.Handled(status.code());
    return Op([&](void* tag) { stream.Finish(ToGrpcStatus(status), tag); });
  };
  // `more`: another message follows at once, so gRPC may hold this one to send them together.
  auto write = [&](const v1::WorkResponse& message, bool more = false) {
    grpc::WriteOptions options;
    if (more) options.set_buffer_hint();
    call.Sent();
    return Op([&, options](void* tag) { stream.Write(message, options, tag); });
  };

  v1::WorkRequest first;
  absl::StatusOr<v1::WorkResponse> registered = engine::InvalidField(
      "hello", "the stream ended before its first message, which must be the worker's hello");
  if (co_await Op([&](void* tag) { stream.Read(&first, tag); })) {
    call.Received();
    if (first.has_hello()) {
      registered = co_await runtime::RunOn(
          *impl->engine_loop,
          OpenWorker(impl->engine, std::move(*first.mutable_hello()), context.peer()));
    } else {
      registered = engine::InvalidField("hello", "required: the first message is the hello");
    }
  }
  if (!registered.ok()) {
    co_await finish(registered.status());
    co_await done.Wait();
    co_return absl::OkStatus();
  }
  const std::string id = registered->registered().worker();
  Log(LogLevel::kInfo, "worker connected",
      {{"worker", id},
       {"name", first.hello().name()},
       {"queues", absl::StrJoin(first.hello().queues(), ",")},
       {"capacity", absl::StrCat(first.hello().capacity())},
       {"peer", context.peer()}});
  auto shared_end = std::make_shared<WorkerEnd>();
  WorkerEnd& end = *shared_end;
  end.main = runtime::TaskRef(&runtime::internal::CurrentTaskOrDie("Work"));
  runtime::TaskHandle<void> reader =
      loop->CreateTask(ReadWorkerMessages(impl, &stream, &call, id, shared_end));
  absl::Status status;
  bool writable = co_await write(*registered);
  while (writable) {
    absl::StatusOr<std::vector<v1::WorkResponse>> commands =
        co_await runtime::RunOn(*impl->engine_loop, impl->engine->NextWorkerCommands(id));
    if (!commands.ok()) {
      if (!absl::IsCancelled(commands.status())) status = commands.status();  // it went silent
      break;
    }
    if (commands->empty()) break;
    for (size_t i = 0; i < commands->size() && writable; ++i) {
      writable = co_await write((*commands)[i], i + 1 < commands->size());
    }
  }
  // A cancellation still on its way (the client went away meanwhile) is taken here, so that
  // the worker is closed below in any case; none is sent after (end.main is dropped).
  end.main = runtime::TaskRef();
  (void)co_await runtime::Sleep(std::chrono::nanoseconds(0));
  const std::string reason = !status.ok() ? std::string(status.message())
                             : !end.reason.empty()
                                 ? end.reason
                                 : "its client went away (disconnected, cancelled, or its "
                                   "keepalive expired)";
  (void)co_await runtime::RunOn(*impl->engine_loop, CloseWorker(impl->engine, id, reason));
  Log(status.ok() && end.status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "worker gone",
      {{"worker", id}, {"name", first.hello().name()}, {"reason", reason}});
  co_await finish(!end.status.ok() ? end.status : status);
  // A silent worker's reader may still wait for a message that never comes.
  if (!end.seen) context.TryCancel();
  (void)co_await reader;
  co_await done.Wait();
  co_return absl::OkStatus();
}

}  // namespace

WorkersService::WorkersService(engine::Engine& engine, runtime::EventLoop& engine_loop,
                               const Metrics& metrics)
    : impl_(std::make_unique<Impl>()) {
  impl_->engine = &engine;
  impl_->engine_loop = &engine_loop;
  impl_->metrics = &metrics;
}

WorkersService::~WorkersService() = default;

grpc::Service* WorkersService::service() { return &impl_->async; }

void WorkersService::Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue) {
  using E = engine::Engine;
  Impl* impl = impl_.get();
  auto counted = [impl](std::string_view method) {
    return &impl->metrics->GrpcMethod(v1::Workers::service_full_name(), method);
  };
  loop.CreateTask(ServeWork(impl, &loop, &queue, counted("Work")));
  loop.CreateTask(internal::ServeEngineUnary<&Async::RequestListWorkers, &E::ListWorkers,
                                             v1::ListWorkersRequest, v1::ListWorkersResponse>(
      impl, &loop, &queue, counted("ListWorkers")));
}

}  // namespace cotask::service
