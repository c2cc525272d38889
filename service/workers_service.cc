#include "service/workers_service.h"

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>

#include <chrono>
#include <string>
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
#include "service/scheduler_service.h"

namespace cotask::service {

using internal::DoneSignal;
using internal::Op;
using Async = v1::Workers::AsyncService;

struct WorkersService::Impl {
  engine::Engine* engine;
  runtime::EventLoop* engine_loop;
  Async async;
};

namespace {

using Impl = WorkersService::Impl;
using WorkStream = grpc::ServerAsyncReaderWriter<v1::WorkResponse, v1::WorkRequest>;

runtime::Task<v1::WorkResponse> OpenWorker(engine::Engine* engine, v1::WorkerHello hello,
                                           std::string peer) {
  co_return engine->OpenWorker(hello, std::move(peer));
}

runtime::Task<void> WorkerMessage(engine::Engine* engine, const std::string* worker,
                                  const v1::WorkRequest* message) {
  co_return engine->WorkerMessage(*worker, *message);
}

runtime::Task<void> CloseWorker(engine::Engine* engine, std::string worker, std::string reason) {
  engine->CloseWorker(worker, reason);
  co_return absl::OkStatus();
}

// How the worker's side of the stream ended, as the reader saw it.
struct WorkerEnd {
  bool seen = false;
  std::string reason;   // for the lost tasks' errors and the log
  absl::Status status;  // the call's status: OK, or the error of a malformed message
};

// Hands the worker's messages to the engine until its side ends (or a message is malformed),
// then stops the writer (`main`) so that the worker is closed.
runtime::Task<void> ReadWorkerMessages(Impl* impl, WorkStream* stream, const std::string* id,
                                       WorkerEnd* end, runtime::TaskRef main) {
  v1::WorkRequest message;
  bool got = true;
  while ((got = co_await Op([&](void* tag) { stream->Read(&message, tag); }))) {
    absl::Status handled =
        co_await runtime::RunOn(*impl->engine_loop, WorkerMessage(impl->engine, id, &message));
    if (!handled.ok() && !absl::IsCancelled(handled)) {
      end->status = handled;
      end->reason = absl::StrCat("it broke the stream's protocol: ", handled.message());
      break;
    }
  }
  if (!got) {
    end->reason = "its stream ended (the worker closed it, disconnected, or its keepalive expired)";
  }
  end->seen = true;
  main.Cancel(end->reason);
  while (got) got = co_await Op([&](void* tag) { stream->Read(&message, tag); });
  co_return absl::OkStatus();
}

runtime::Task<void> ServeWork(Impl* impl, runtime::EventLoop* loop,
                              grpc::ServerCompletionQueue* queue) {
  grpc::ServerContext context;
  WorkStream stream(&context);
  DoneSignal done;
  done.Arm(context);
  const bool started = co_await Op(
      [&](void* tag) { impl->async.RequestWork(&context, &stream, queue, queue, tag); });
  if (!started) co_return absl::OkStatus();  // the server is shutting down
  loop->CreateTask(ServeWork(impl, loop, queue));
  auto finish = [&](const absl::Status& status) {
    return Op([&](void* tag) { stream.Finish(ToGrpcStatus(status), tag); });
  };
  auto write = [&](const v1::WorkResponse& message) {
    return Op([&](void* tag) { stream.Write(message, tag); });
  };

  v1::WorkRequest first;
  absl::StatusOr<v1::WorkResponse> registered = engine::InvalidField(
      "hello", "the stream ended before its first message, which must be the worker's hello");
  if (co_await Op([&](void* tag) { stream.Read(&first, tag); })) {
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
  WorkerEnd end;
  runtime::TaskHandle<void> reader = loop->CreateTask(ReadWorkerMessages(
      impl, &stream, &id, &end, runtime::TaskRef(&runtime::internal::CurrentTaskOrDie("Work"))));
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
    for (const v1::WorkResponse& command : *commands) {
      if (!(writable = co_await write(command))) break;
    }
  }
  // A cancellation still on its way (the client went away meanwhile) is taken here, so that
  // the worker is closed below in any case.
  (void)co_await runtime::Sleep(std::chrono::nanoseconds(0));
  const std::string reason = !status.ok() ? std::string(status.message())
                             : end.seen   ? end.reason
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

WorkersService::WorkersService(engine::Engine& engine, runtime::EventLoop& engine_loop)
    : impl_(std::make_unique<Impl>()) {
  impl_->engine = &engine;
  impl_->engine_loop = &engine_loop;
}

WorkersService::~WorkersService() = default;

grpc::Service* WorkersService::service() { return &impl_->async; }

void WorkersService::Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue) {
  using E = engine::Engine;
  Impl* impl = impl_.get();
  loop.CreateTask(ServeWork(impl, &loop, &queue));
  loop.CreateTask(internal::ServeEngineUnary<&Async::RequestListWorkers, &E::ListWorkers,
                                             v1::ListWorkersRequest, v1::ListWorkersResponse>(
      impl, &loop, &queue));
}

}  // namespace cotask::service
