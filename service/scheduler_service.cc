#include "service/scheduler_service.h"

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/async_unary_call.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cotask/v1/scheduler.grpc.pb.h"
#include "google/rpc/status.pb.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/errors.h"
#include "scheduler/engine/validation.h"
#include "scheduler/runtime/run_on.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "service/internal/call_ops.h"
#include "service/internal/engine_calls.h"
#include "service/internal/serve.h"
#include "service/metrics.h"

namespace cotask::service {

using internal::DoneSignal;
using internal::Op;
using Async = v1::Scheduler::AsyncService;

struct SchedulerService::Impl {
  engine::Engine* engine;
  const Metrics* metrics;
  runtime::EventLoop* engine_loop;
  SchedulerServiceOptions options;
  Async async;
  std::atomic<size_t> watchers{0};
};

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      engine::ToRpcStatus(status).SerializeAsString());
}

namespace {

using Impl = SchedulerService::Impl;

using internal::CallEngine;

template <auto kRequest, auto kEngine, class Request, class Reply, bool kWaits = false>
runtime::Task<void> ServeUnary(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  return internal::ServeEngineUnary<kRequest, kEngine, Request, Reply, kWaits>(impl, loop, queue,
                                                                               counted);
}

// CreateTask and CreateTasks: at once, or (wait_for_room) waiting for room in a full queue, at
// most until the call's deadline. `handle(impl, request or messages, context)` hops to the
// engine.
template <auto kRequest, class Request, class Reply, auto kHandle>
runtime::Task<void> ServeCreate(Impl* impl, runtime::EventLoop* loop,
                                grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  return internal::ServeUnary<Request, Reply>(
      counted,
      [impl, queue](grpc::ServerContext* context, Request* request,
                    grpc::ServerAsyncResponseWriter<Reply>* responder, void* tag) {
        (impl->async.*kRequest)(context, request, responder, queue, queue, tag);
      },
      [impl, loop, queue, counted] {
        loop->CreateTask(
            ServeCreate<kRequest, Request, Reply, kHandle>(impl, loop, queue, counted));
      },
      [impl](auto request, const grpc::ServerContext& context)
          -> decltype(kHandle(impl, std::move(request), context)) {
        return kHandle(impl, std::move(request), context);
      });
}

auto CreateTaskOnEngine(Impl* impl, v1::CreateTaskRequest request,
                        const grpc::ServerContext& context) {
  if (request.has_wait_for_room()) {
    return runtime::RunOn(
        *impl->engine_loop,
        impl->engine->CreateTaskWaiting(std::move(request), internal::CallDeadline(context)));
  }
  return runtime::RunOn(*impl->engine_loop,
                        CallEngine<&engine::Engine::CreateTask, v1::CreateTaskRequest, v1::Task>(
                            impl->engine, std::move(request)));
}

// (Its request and reply are on the call's arena, which this coroutine holds while the engine
// reads and fills them.)
using CreateTasksMessages =
    internal::ArenaMessages<v1::CreateTasksRequest, v1::CreateTasksResponse>;

runtime::Task<void> CreateTasks(engine::Engine* engine,
                                std::shared_ptr<CreateTasksMessages> messages,
                                std::optional<absl::Time> wait_deadline) {
  if (wait_deadline.has_value()) {
    co_return co_await engine->CreateTasksWaiting(*messages->request, messages->reply,
                                                  *wait_deadline);
  }
  co_return engine->CreateTasks(*messages->request, messages->reply);
}

auto CreateTasksOnEngine(Impl* impl, std::shared_ptr<CreateTasksMessages> messages,
                         const grpc::ServerContext& context) {
  std::optional<absl::Time> wait_deadline;
  if (messages->request->has_wait_for_room()) wait_deadline = internal::CallDeadline(context);
  return runtime::RunOn(*impl->engine_loop,
                        CreateTasks(impl->engine, std::move(messages), wait_deadline));
}

// A place among the --max_watchers streams (Watch and StreamStats), given back when it goes.
class WatcherSlot {
 public:
  explicit WatcherSlot(Impl* impl) : impl_(impl) {
    taken_ = impl->watchers.fetch_add(1) < impl->options.max_watchers;
  }
  ~WatcherSlot() { impl_->watchers.fetch_sub(1); }
  WatcherSlot(const WatcherSlot&) = delete;
  WatcherSlot& operator=(const WatcherSlot&) = delete;

  absl::Status status() const {
    if (taken_) return absl::OkStatus();
    return engine::Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_WATCHERS",
                         absl::StrCat("the server has ", impl_->options.max_watchers,
                                      " Watch and StreamStats streams open (--max_watchers)"),
                         {{"bound", absl::StrCat(impl_->options.max_watchers)}});
  }

 private:
  Impl* impl_;
  bool taken_ = false;
};

// On an I/O thread: streams the watched log until its last event; OK then, an error otherwise
// (on the engine's own thread, ServeWatchOnEngine below does the same). The next batch is
// asked of the engine while this one is written, so that an event that comes meanwhile is
// written as soon as the stream is free, not after one more round trip to the engine's thread
// (measured: a watcher saw a task's end 2x later without it). The ask is a StartOn, not a task
// of this loop's: an idle watcher holds only its frames and the call.
runtime::Task<void> StreamEvents(Impl* impl, const v1::WatchRequest* request,
                                 internal::CountedWriter<v1::Event>* writer) {
  WatcherSlot slot(impl);
  COTASK_CO_RETURN_IF_ERROR(slot.status());
  auto fetch = [impl, request](int64_t from) {
    return runtime::StartOn(
        *impl->engine_loop,
        impl->engine->NextEvents(*request, from, impl->options.watch_batch_bytes));
  };
  runtime::RemoteCall<engine::Engine::WatchBatch> next = fetch(request->from_sequence());
  while (true) {
    COTASK_CO_ASSIGN_OR_RETURN(engine::Engine::WatchBatch batch, co_await next);
    if (!batch.ended) next = fetch(batch.next_sequence);
    for (size_t i = 0; i < batch.events.size(); ++i) {
      if (!co_await writer->Write(batch.events[i], i + 1 < batch.events.size())) {
        co_return absl::CancelledError("the client has gone");  // (next: cancelled as it goes)
      }
    }
    if (batch.ended) co_return absl::OkStatus();
  }
}

auto RequestWatchCall(Impl* impl, grpc::ServerCompletionQueue* queue) {
  return [impl, queue](grpc::ServerContext* context, v1::WatchRequest* request,
                       grpc::ServerAsyncWriter<v1::Event>* writer, void* tag) {
    impl->async.RequestWatch(context, request, writer, queue, queue, tag);
  };
}

runtime::Task<void> ServeWatch(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted);

// Watch served on the engine's own loop (--io_threads=0, the default on up to 2 CPUs): one
// coroutine serves the call and reads the engine directly, with no hop; an idle watcher waits
// on its log's change event, holding only this frame, its task and gRPC's own call
// (measured with 10k streams: 17,526 -> 16,321 bytes a stream, bench/README.md).
runtime::Task<void> ServeWatchOnEngine(Impl* impl, grpc::ServerCompletionQueue* queue,
                                       GrpcMethodMetrics* counted) {
  internal::ServerStream<v1::WatchRequest, v1::Event> call;
  if (!co_await call.Start(RequestWatchCall(impl, queue))) co_return absl::OkStatus();
  impl->engine_loop->CreateTask(ServeWatch(impl, impl->engine_loop, queue, counted));
  call.Received(counted);
  absl::Status status;
  {
    WatcherSlot slot(impl);
    status = slot.status();
    engine::Engine::WatchBatch batch;  // (its next_sequence: where the next read starts)
    batch.next_sequence = call.request().from_sequence();
    std::shared_ptr<runtime::Event> changed;
    while (status.ok()) {
      status = impl->engine->ReadEvents(call.request(), batch.next_sequence,
                                        impl->options.watch_batch_bytes, &batch, &changed);
      if (!status.ok()) break;
      if (changed != nullptr) {
        // Caught up: an idle watcher holds no buffer while it waits (64 bytes a stream).
        std::vector<v1::Event>().swap(batch.events);
        status = co_await changed->Wait();
        continue;
      }
      for (size_t i = 0; status.ok() && i < batch.events.size(); ++i) {
        if (!co_await call.writer().Write(batch.events[i], i + 1 < batch.events.size())) {
          status = absl::CancelledError("the client has gone");
        }
      }
      if (batch.ended) break;
    }
  }
  co_await call.Finish(status);
  co_await call.Done();
  co_return absl::OkStatus();
}

runtime::Task<void> ServeWatch(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  if (loop == impl->engine_loop) return ServeWatchOnEngine(impl, queue, counted);
  return internal::ServeServerStream<v1::WatchRequest, v1::Event>(
      counted, RequestWatchCall(impl, queue),
      [impl, loop, queue, counted] { loop->CreateTask(ServeWatch(impl, loop, queue, counted)); },
      [impl](const v1::WatchRequest& request, internal::CountedWriter<v1::Event>* writer) {
        return StreamEvents(impl, &request, writer);
      });
}

// StreamStats: a snapshot of the metrics at once, then one every interval, until the client
// goes (its cancellation ends the sleep).
runtime::Task<void> StreamStatsTo(Impl* impl, const v1::StreamStatsRequest* request,
                                  internal::CountedWriter<v1::Stats>* writer) {
  constexpr absl::Duration kMinInterval = absl::Milliseconds(100);
  absl::Duration interval = absl::Seconds(1);
  if (request->has_interval()) {
    COTASK_CO_ASSIGN_OR_RETURN(
        interval, engine::ValidateDuration(request->interval(), "interval", absl::Hours(24)));
    if (interval == absl::ZeroDuration()) interval = absl::Seconds(1);
    if (interval < kMinInterval) {
      co_return engine::InvalidField("interval", "less than 100ms", "100ms");
    }
  }
  WatcherSlot slot(impl);
  COTASK_CO_RETURN_IF_ERROR(slot.status());
  while (true) {
    const v1::Stats stats = impl->metrics->Snapshot();
    if (!co_await writer->Write(stats)) {
      co_return absl::CancelledError("the client has gone");
    }
    COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(engine::ToChrono(interval)));
  }
}

runtime::Task<void> ServeStats(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  return internal::ServeServerStream<v1::StreamStatsRequest, v1::Stats>(
      counted,
      [impl, queue](grpc::ServerContext* context, v1::StreamStatsRequest* request,
                    grpc::ServerAsyncWriter<v1::Stats>* writer, void* tag) {
        impl->async.RequestStreamStats(context, request, writer, queue, queue, tag);
      },
      [impl, loop, queue, counted] { loop->CreateTask(ServeStats(impl, loop, queue, counted)); },
      [impl](const v1::StreamStatsRequest& request, internal::CountedWriter<v1::Stats>* writer) {
        return StreamStatsTo(impl, &request, writer);
      });
}

// OpenRunner: one runner per stream, closed whatever way the stream ends.
using RunnerStream = grpc::ServerAsyncReaderWriter<v1::RunnerResponse, v1::RunnerRequest>;

// How the client ended the runner, as its stream's reader saw it.
struct ClientEnd {
  bool seen = false;    // the reader saw the end (a close, a half-close, or a bad message)
  std::string reason;   // for the cancellations' message
  absl::Status status;  // the call's status: OK, or INVALID_ARGUMENT for a bad message
};

// Reads the client's messages after `open` until its end, then stops the writer (`main`, at
// its current wait) so that the runner is closed.
runtime::Task<void> ReadRunnerRequests(RunnerStream* stream, GrpcCall* call, ClientEnd* end,
                                       runtime::TaskRef main) {
  constexpr size_t kMaxReasonBytes = 1024;
  v1::RunnerRequest request;
  bool got = co_await Op([&](void* tag) { stream->Read(&request, tag); });
  if (got) call->Received();
  end->seen = true;
  if (!got) {
    end->reason =
        "its stream ended without a close (the client half-closed it, disconnected, or its "
        "deadline or keepalive expired)";
  } else if (request.has_close()) {
    end->reason = request.close().reason().empty()
                      ? "the client closed it"
                      : absl::StrCat("the client closed it: ",
                                     request.close().reason().substr(0, kMaxReasonBytes));
  } else {
    end->status = engine::InvalidField(
        "kind", "after `open`, a runner's stream takes only `close` (or a half-close)");
    end->reason = "its client broke the stream's protocol";
  }
  main.Cancel(end->reason);
  // Drain what else comes until the client half-closes or the call ends.
  while (got) {
    if ((got = co_await Op([&](void* tag) { stream->Read(&request, tag); }))) call->Received();
  }
  co_return absl::OkStatus();
}

runtime::Task<void> ServeRunner(Impl* impl, runtime::EventLoop* loop,
                                grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  using E = engine::Engine;
  grpc::ServerContext context;
  RunnerStream stream(&context);
  DoneSignal done;
  done.Arm(context);
  const bool started = co_await Op(
      [&](void* tag) { impl->async.RequestOpenRunner(&context, &stream, queue, queue, tag); });
  if (!started) co_return absl::OkStatus();  // the server is shutting down
  loop->CreateTask(ServeRunner(impl, loop, queue, counted));
  GrpcCall call(counted);
  auto finish = [&](const absl::Status& status) {
    call.Handled(status.code());
    return Op([&](void* tag) { stream.Finish(ToGrpcStatus(status), tag); });
  };
  auto write = [&](const v1::RunnerResponse& message) {
    call.Sent();
    return Op([&](void* tag) { stream.Write(message, tag); });
  };

  v1::RunnerRequest first;
  absl::StatusOr<v1::RunnerResponse> opened = engine::InvalidField(
      "open", "the stream ended before its first message, which must open the runner");
  if (co_await Op([&](void* tag) { stream.Read(&first, tag); })) {
    call.Received();
    if (first.has_open()) {
      opened = co_await runtime::RunOn(
          *impl->engine_loop, CallEngine<&E::OpenRunner, v1::OpenRunnerRequest, v1::RunnerResponse>(
                                  impl->engine, std::move(*first.mutable_open())));
    } else {
      opened = engine::InvalidField("open", "required: the first message opens the runner");
    }
  }
  if (!opened.ok()) {
    co_await finish(opened.status());
    co_await done.Wait();
    co_return absl::OkStatus();
  }
  const std::string id = opened->opened().runner();
  ClientEnd end;
  runtime::TaskHandle<void> reader = loop->CreateTask(ReadRunnerRequests(
      &stream, &call, &end, runtime::TaskRef(&runtime::internal::CurrentTaskOrDie("OpenRunner"))));
  bool writable = co_await write(*opened);
  while (writable) {
    absl::StatusOr<std::vector<v1::RunnerResponse>> reports =
        co_await runtime::RunOn(*impl->engine_loop, impl->engine->NextRunnerReports(id));
    if (!reports.ok() || reports->empty()) break;  // the runner's end (cancelled by the reader)
    for (const v1::RunnerResponse& report : *reports) {
      if (!(writable = co_await write(report))) break;
    }
  }
  // A cancellation still on its way (the client went away meanwhile) is taken here, so that
  // the runner is closed below in any case.
  (void)co_await runtime::Sleep(std::chrono::nanoseconds(0));
  const std::string reason =
      end.seen ? end.reason
               : "its client went away (disconnected, cancelled, or its deadline or keepalive "
                 "expired)";
  absl::StatusOr<std::vector<v1::RunnerResponse>> last =
      co_await runtime::RunOn(*impl->engine_loop, impl->engine->CloseRunner(id, reason));
  if (end.seen && writable && last.ok()) {
    for (const v1::RunnerResponse& message : *last) {
      if (!co_await write(message)) break;
    }
  }
  co_await finish(end.status);
  (void)co_await reader;
  co_await done.Wait();
  co_return absl::OkStatus();
}

}  // namespace

SchedulerService::SchedulerService(engine::Engine& engine, runtime::EventLoop& engine_loop,
                                   const Metrics& metrics, SchedulerServiceOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->engine = &engine;
  impl_->metrics = &metrics;
  impl_->engine_loop = &engine_loop;
  impl_->options = options;
}

SchedulerService::~SchedulerService() = default;

grpc::Service* SchedulerService::service() { return &impl_->async; }

void SchedulerService::Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue) {
  using E = engine::Engine;
  Impl* impl = impl_.get();
  auto counted = [impl](std::string_view method) {
    return &impl->metrics->GrpcMethod(v1::Scheduler::service_full_name(), method);
  };
  loop.CreateTask(
      ServeCreate<&Async::RequestCreateTask, v1::CreateTaskRequest, v1::Task, &CreateTaskOnEngine>(
          impl, &loop, &queue, counted("CreateTask")));
  loop.CreateTask(
      ServeCreate<&Async::RequestCreateTasks, v1::CreateTasksRequest, v1::CreateTasksResponse,
                  &CreateTasksOnEngine>(impl, &loop, &queue, counted("CreateTasks")));
  loop.CreateTask(ServeUnary<&Async::RequestGetTask, &E::GetTask, v1::GetTaskRequest, v1::Task>(
      impl, &loop, &queue, counted("GetTask")));
  loop.CreateTask(ServeUnary<&Async::RequestListTasks, &E::ListTasks, v1::ListTasksRequest,
                             v1::ListTasksResponse>(impl, &loop, &queue, counted("ListTasks")));
  loop.CreateTask(ServeUnary<&Async::RequestCancelTask, &E::CancelTask, v1::CancelTaskRequest,
                             v1::CancelTaskResponse>(impl, &loop, &queue, counted("CancelTask")));
  loop.CreateTask(
      ServeUnary<&Async::RequestCreateGroup, &E::CreateGroup, v1::CreateGroupRequest, v1::Group>(
          impl, &loop, &queue, counted("CreateGroup")));
  loop.CreateTask(ServeUnary<&Async::RequestGetGroup, &E::GetGroup, v1::GetGroupRequest, v1::Group>(
      impl, &loop, &queue, counted("GetGroup")));
  loop.CreateTask(ServeUnary<&Async::RequestListGroups, &E::ListGroups, v1::ListGroupsRequest,
                             v1::ListGroupsResponse>(impl, &loop, &queue, counted("ListGroups")));
  loop.CreateTask(
      ServeUnary<&Async::RequestCloseGroup, &E::CloseGroup, v1::CloseGroupRequest, v1::Group>(
          impl, &loop, &queue, counted("CloseGroup")));
  loop.CreateTask(ServeUnary<&Async::RequestCancelGroup, &E::CancelGroup, v1::CancelGroupRequest,
                             v1::CancelGroupResponse>(impl, &loop, &queue, counted("CancelGroup")));
  loop.CreateTask(ServeUnary<&Async::RequestRun, &E::Run, v1::CreateTaskRequest, v1::Task,
                             /*kWaits=*/true>(impl, &loop, &queue, counted("Run")));
  loop.CreateTask(ServeUnary<&Async::RequestWaitTasks, &E::WaitTasks, v1::WaitTasksRequest,
                             v1::WaitTasksResponse, /*kWaits=*/true>(impl, &loop, &queue,
                                                                     counted("WaitTasks")));
  loop.CreateTask(
      ServeUnary<&Async::RequestSetEvent, &E::SetEvent, v1::SetEventRequest, v1::NamedEvent>(
          impl, &loop, &queue, counted("SetEvent")));
  loop.CreateTask(
      ServeUnary<&Async::RequestClearEvent, &E::ClearEvent, v1::ClearEventRequest, v1::NamedEvent>(
          impl, &loop, &queue, counted("ClearEvent")));
  loop.CreateTask(
      ServeUnary<&Async::RequestGetEvent, &E::GetEvent, v1::GetEventRequest, v1::NamedEvent>(
          impl, &loop, &queue, counted("GetEvent")));
  loop.CreateTask(
      ServeUnary<&Async::RequestCreateSemaphore, &E::CreateSemaphore, v1::CreateSemaphoreRequest,
                 v1::Semaphore>(impl, &loop, &queue, counted("CreateSemaphore")));
  loop.CreateTask(ServeUnary<&Async::RequestGetSemaphore, &E::GetSemaphore, v1::GetSemaphoreRequest,
                             v1::Semaphore>(impl, &loop, &queue, counted("GetSemaphore")));
  loop.CreateTask(
      ServeUnary<&Async::RequestCreateQueue, &E::CreateQueue, v1::CreateQueueRequest, v1::Queue>(
          impl, &loop, &queue, counted("CreateQueue")));
  loop.CreateTask(ServeUnary<&Async::RequestGetQueue, &E::GetQueue, v1::GetQueueRequest, v1::Queue>(
      impl, &loop, &queue, counted("GetQueue")));
  loop.CreateTask(ServeUnary<&Async::RequestListQueues, &E::ListQueues, v1::ListQueuesRequest,
                             v1::ListQueuesResponse>(impl, &loop, &queue, counted("ListQueues")));
  loop.CreateTask(
      ServeUnary<&Async::RequestPauseQueue, &E::PauseQueue, v1::PauseQueueRequest, v1::Queue>(
          impl, &loop, &queue, counted("PauseQueue")));
  loop.CreateTask(
      ServeUnary<&Async::RequestResumeQueue, &E::ResumeQueue, v1::ResumeQueueRequest, v1::Queue>(
          impl, &loop, &queue, counted("ResumeQueue")));
  loop.CreateTask(ServeWatch(impl, &loop, &queue, counted("Watch")));
  loop.CreateTask(ServeStats(impl, &loop, &queue, counted("StreamStats")));
  loop.CreateTask(ServeRunner(impl, &loop, &queue, counted("OpenRunner")));
}

}  // namespace cotask::service
