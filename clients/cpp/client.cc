#include "clients/cpp/client.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/async_unary_call.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/rpc/status.pb.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/grpc_ops.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask {
namespace {

using Stub = v1::Scheduler::Stub;

constexpr char kDefaultServer[] = "127.0.0.1:50051";

// Every unary call is idempotent (creates carry request ids): gRPC retries them on
// UNAVAILABLE. The runner's stream is a session and is never retried. (The clients' one service
// config, clients/service_config.json, built in as kServiceConfig.)
constexpr char kServiceConfig[] = {
#include "clients/service_config.inc"
};

// How long a broken Watch waits before it reconnects: 50ms, doubling, at most 2s.
absl::Duration ReconnectDelay(int failures) {
  return std::min(absl::Milliseconds(50) * (1 << std::min(failures, 6)), absl::Seconds(2));
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  // (Far enough for "no deadline" without overflowing the clock.)
  timeout = std::min(timeout, absl::Hours(24 * 365));
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoNanoseconds(timeout));
}

void EnsureRequestId(v1::CreateTaskRequest& request) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
}

template <class Request, class Reply, class AnyStub = Stub>
using SyncMethod = grpc::Status (AnyStub::*)(grpc::ClientContext*, const Request&, Reply*);
template <class Request, class Reply>
using AsyncMethod = std::unique_ptr<grpc::ClientAsyncResponseReader<Reply>> (Stub::*)(
    grpc::ClientContext*, const Request&, grpc::CompletionQueue*);

template <class AnyStub, class Request, class Reply>
absl::StatusOr<Reply> Call(AnyStub& stub, SyncMethod<Request, Reply, AnyStub> method,
                           const Request& request, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  Reply reply;
  grpc::Status status = (stub.*method)(&context, request, &reply);
  if (!status.ok()) return FromGrpcStatus(status);
  return reply;
}

template <class Request, class Reply>
runtime::Task<Reply> CallAsync(Stub* stub, AsyncMethod<Request, Reply> method, Request request,
                               absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  grpc::CompletionQueue& queue =
      runtime::internal::CurrentTaskOrDie("a cotask client call").loop().completion_queue();
  std::unique_ptr<grpc::ClientAsyncResponseReader<Reply>> reader =
      (stub->*method)(&context, request, &queue);
  reader->StartCall();
  Reply reply;
  grpc::Status status;
  co_await runtime::ClientCallOp(&context,
                                 [&](void* tag) { reader->Finish(&reply, &status, tag); });
  if (!status.ok()) co_return FromGrpcStatus(status);
  co_return reply;
}

template <class Request>
Request Named(std::string name) {
  Request request;
  request.set_name(std::move(name));
  return request;
}

v1::CancelTaskRequest CancelTaskRequestOf(std::string id, std::string message) {
  v1::CancelTaskRequest request;
  request.set_id(std::move(id));
  request.set_message(std::move(message));
  return request;
}

v1::CancelGroupRequest CancelGroupRequestOf(std::string name, std::string message) {
  v1::CancelGroupRequest request;
  request.set_name(std::move(name));
  request.set_message(std::move(message));
  return request;
}

v1::CreateSemaphoreRequest CreateSemaphoreRequestOf(std::string name, int64_t limit) {
  v1::CreateSemaphoreRequest request;
  request.set_name(std::move(name));
  request.set_limit(limit);
  return request;
}

v1::GetTaskRequest GetTaskRequestOf(std::string id) {
  v1::GetTaskRequest request;
  request.set_id(std::move(id));
  return request;
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  google::rpc::Status details;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details()) &&
      details.code() == static_cast<int>(status.error_code())) {
    return engine::FromRpcStatus(details);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string NewRequestId() {
  thread_local absl::BitGen bits;
  return absl::StrFormat("c%016x%016x", absl::Uniform<uint64_t>(bits),
                         absl::Uniform<uint64_t>(bits));
}

Client::Client(ClientOptions options) : options_(std::move(options)) {
  server_ = options_.server;
  if (server_.empty()) {
    const char* from_env = std::getenv("COTASK_SERVER");
    server_ = from_env != nullptr && *from_env != '\0' ? from_env : kDefaultServer;
  }
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  // A runner's stream notices a lost server (the server pings idle clients the same way).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options_.credentials != nullptr ? options_.credentials : grpc::InsecureChannelCredentials();
  channel_ = grpc::CreateCustomChannel(server_, credentials, args);
  stub_ = v1::Scheduler::NewStub(channel_);
  workers_stub_ = v1::Workers::NewStub(channel_);
}

Client::~Client() = default;

absl::Duration Client::TimeoutOf(const CallOptions& call, bool waits) const {
  if (call.timeout.has_value()) return *call.timeout;
  return waits ? options_.wait_timeout : options_.timeout;
}

// ----- Blocking calls.

absl::StatusOr<v1::Task> Client::CreateTask(v1::CreateTaskRequest request, CallOptions call) {
  EnsureRequestId(request);
  return Call(*stub_, &Stub::CreateTask, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::CreateTasksResponse> Client::CreateTasks(v1::CreateTasksRequest request,
                                                            CallOptions call) {
  for (v1::CreateTaskRequest& one : *request.mutable_requests()) EnsureRequestId(one);
  return Call(*stub_, &Stub::CreateTasks, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::Task> Client::Run(v1::CreateTaskRequest request, CallOptions call) {
  EnsureRequestId(request);
  return Call(*stub_, &Stub::Run, request, TimeoutOf(call, true));
}

absl::StatusOr<v1::Task> Client::GetTask(const std::string& id, CallOptions call) {
  return Call(*stub_, &Stub::GetTask, GetTaskRequestOf(id), TimeoutOf(call, false));
}

absl::StatusOr<v1::ListTasksResponse> Client::ListTasks(const v1::ListTasksRequest& request,
                                                        CallOptions call) {
  return Call(*stub_, &Stub::ListTasks, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::WaitTasksResponse> Client::WaitTasks(const v1::WaitTasksRequest& request,
                                                        CallOptions call) {
  return Call(*stub_, &Stub::WaitTasks, request, TimeoutOf(call, true));
}

absl::StatusOr<v1::CancelTaskResponse> Client::CancelTask(const std::string& id,
                                                          const std::string& message,
                                                          CallOptions call) {
  return Call(*stub_, &Stub::CancelTask, CancelTaskRequestOf(id, message), TimeoutOf(call, false));
}

absl::StatusOr<v1::Group> Client::CreateGroup(v1::CreateGroupRequest request, CallOptions call) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Call(*stub_, &Stub::CreateGroup, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::Group> Client::GetGroup(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::GetGroup, Named<v1::GetGroupRequest>(name), TimeoutOf(call, false));
}

absl::StatusOr<v1::ListGroupsResponse> Client::ListGroups(const v1::ListGroupsRequest& request,
                                                          CallOptions call) {
  return Call(*stub_, &Stub::ListGroups, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::Group> Client::CloseGroup(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::CloseGroup, Named<v1::CloseGroupRequest>(name),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::CancelGroupResponse> Client::CancelGroup(const std::string& name,
                                                            const std::string& message,
                                                            CallOptions call) {
  return Call(*stub_, &Stub::CancelGroup, CancelGroupRequestOf(name, message),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::NamedEvent> Client::SetEvent(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::SetEvent, Named<v1::SetEventRequest>(name), TimeoutOf(call, false));
}

absl::StatusOr<v1::NamedEvent> Client::ClearEvent(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::ClearEvent, Named<v1::ClearEventRequest>(name),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::NamedEvent> Client::GetEvent(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::GetEvent, Named<v1::GetEventRequest>(name), TimeoutOf(call, false));
}

absl::StatusOr<v1::Semaphore> Client::CreateSemaphore(const std::string& name, int64_t limit,
                                                      CallOptions call) {
  return Call(*stub_, &Stub::CreateSemaphore, CreateSemaphoreRequestOf(name, limit),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::Semaphore> Client::GetSemaphore(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::GetSemaphore, Named<v1::GetSemaphoreRequest>(name),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::Queue> Client::CreateQueue(const v1::CreateQueueRequest& request,
                                              CallOptions call) {
  return Call(*stub_, &Stub::CreateQueue, request, TimeoutOf(call, false));
}

absl::StatusOr<v1::Queue> Client::GetQueue(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::GetQueue, Named<v1::GetQueueRequest>(name), TimeoutOf(call, false));
}

absl::StatusOr<v1::ListQueuesResponse> Client::ListQueues(CallOptions call) {
  return Call(*stub_, &Stub::ListQueues, v1::ListQueuesRequest(), TimeoutOf(call, false));
}

absl::StatusOr<v1::Queue> Client::PauseQueue(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::PauseQueue, Named<v1::PauseQueueRequest>(name),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::Queue> Client::ResumeQueue(const std::string& name, CallOptions call) {
  return Call(*stub_, &Stub::ResumeQueue, Named<v1::ResumeQueueRequest>(name),
              TimeoutOf(call, false));
}

absl::StatusOr<v1::ListWorkersResponse> Client::ListWorkers(const std::string& queue,
                                                            CallOptions call) {
  v1::ListWorkersRequest request;
  request.set_queue(queue);
  return Call(*workers_stub_, &v1::Workers::Stub::ListWorkers, request, TimeoutOf(call, false));
}

namespace {

bool Ended(const v1::Group& group) {
  return group.state() != v1::Group::OPEN && group.state() != v1::Group::CLOSED;
}

// A Watch of the group's log from just after what `seen` saw.
v1::WatchRequest AfterSeen(const v1::Group& seen) {
  v1::WatchRequest request;
  request.set_group(seen.name());
  request.set_from_sequence(seen.last_sequence() + 1);
  return request;
}

}  // namespace

absl::StatusOr<v1::Group> Client::AwaitGroup(const v1::Group& seen, CallOptions call) {
  if (Ended(seen)) return seen;
  COTASK_RETURN_IF_ERROR(Watch(
      AfterSeen(seen), [](const v1::Event&) { return true; }, call));
  return GetGroup(seen.name(), call);
}

runtime::Task<v1::Group> Client::AwaitGroupAsync(v1::Group seen, CallOptions call) {
  if (Ended(seen)) co_return seen;
  COTASK_CO_RETURN_IF_ERROR(co_await WatchAsync(
      AfterSeen(seen), [](const v1::Event&) { return true; }, call));
  co_return co_await GetGroupAsync(seen.name(), call);
}

absl::Status Client::Watch(v1::WatchRequest request,
                           absl::FunctionRef<bool(const v1::Event&)> on_event, CallOptions call) {
  const absl::Time deadline = absl::Now() + TimeoutOf(call, true);
  int failures = 0;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(deadline - absl::Now()));
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader = stub_->Watch(&context, request);
    v1::Event event;
    while (reader->Read(&event)) {
      failures = 0;
      request.set_from_sequence(event.sequence() + 1);
      if (!on_event(event)) {
        context.TryCancel();
        reader->Finish().ok();
        return absl::OkStatus();
      }
    }
    const grpc::Status status = reader->Finish();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() >= deadline) {
      return FromGrpcStatus(status);
    }
    // The stream broke: resume after the last event seen.
    absl::SleepFor(std::min(ReconnectDelay(failures++), deadline - absl::Now()));
  }
}

// ----- Coroutine calls.

runtime::Task<v1::Task> Client::CreateTaskAsync(v1::CreateTaskRequest request, CallOptions call) {
  EnsureRequestId(request);
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCreateTask, std::move(request),
                   TimeoutOf(call, false));
}

runtime::Task<v1::CreateTasksResponse> Client::CreateTasksAsync(v1::CreateTasksRequest request,
                                                                CallOptions call) {
  for (v1::CreateTaskRequest& one : *request.mutable_requests()) EnsureRequestId(one);
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCreateTasks, std::move(request),
                   TimeoutOf(call, false));
}

runtime::Task<v1::Task> Client::RunAsync(v1::CreateTaskRequest request, CallOptions call) {
  EnsureRequestId(request);
  return CallAsync(stub_.get(), &Stub::PrepareAsyncRun, std::move(request), TimeoutOf(call, true));
}

runtime::Task<v1::Task> Client::GetTaskAsync(std::string id, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncGetTask, GetTaskRequestOf(std::move(id)),
                   TimeoutOf(call, false));
}

runtime::Task<v1::ListTasksResponse> Client::ListTasksAsync(v1::ListTasksRequest request,
                                                            CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncListTasks, std::move(request),
                   TimeoutOf(call, false));
}

runtime::Task<v1::WaitTasksResponse> Client::WaitTasksAsync(v1::WaitTasksRequest request,
                                                            CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncWaitTasks, std::move(request),
                   TimeoutOf(call, true));
}

runtime::Task<v1::CancelTaskResponse> Client::CancelTaskAsync(std::string id, std::string message,
                                                              CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCancelTask,
                   CancelTaskRequestOf(std::move(id), std::move(message)), TimeoutOf(call, false));
}

runtime::Task<v1::Group> Client::CreateGroupAsync(v1::CreateGroupRequest request,
                                                  CallOptions call) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCreateGroup, std::move(request),
                   TimeoutOf(call, false));
}

runtime::Task<v1::Group> Client::GetGroupAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncGetGroup,
                   Named<v1::GetGroupRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<v1::ListGroupsResponse> Client::ListGroupsAsync(v1::ListGroupsRequest request,
                                                              CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncListGroups, std::move(request),
                   TimeoutOf(call, false));
}

runtime::Task<v1::Group> Client::CloseGroupAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCloseGroup,
                   Named<v1::CloseGroupRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<v1::CancelGroupResponse> Client::CancelGroupAsync(std::string name,
                                                                std::string message,
                                                                CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCancelGroup,
                   CancelGroupRequestOf(std::move(name), std::move(message)),
                   TimeoutOf(call, false));
}

runtime::Task<v1::NamedEvent> Client::SetEventAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncSetEvent,
                   Named<v1::SetEventRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<v1::NamedEvent> Client::ClearEventAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncClearEvent,
                   Named<v1::ClearEventRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<v1::NamedEvent> Client::GetEventAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncGetEvent,
                   Named<v1::GetEventRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<v1::Semaphore> Client::CreateSemaphoreAsync(std::string name, int64_t limit,
                                                          CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncCreateSemaphore,
                   CreateSemaphoreRequestOf(std::move(name), limit), TimeoutOf(call, false));
}

runtime::Task<v1::Semaphore> Client::GetSemaphoreAsync(std::string name, CallOptions call) {
  return CallAsync(stub_.get(), &Stub::PrepareAsyncGetSemaphore,
                   Named<v1::GetSemaphoreRequest>(std::move(name)), TimeoutOf(call, false));
}

runtime::Task<void> Client::WatchAsync(v1::WatchRequest request,
                                       absl::AnyInvocable<bool(const v1::Event&)> on_event,
                                       CallOptions call) {
  const absl::Time deadline = absl::Now() + TimeoutOf(call, true);
  grpc::CompletionQueue& queue =
      runtime::internal::CurrentTaskOrDie("a cotask client call").loop().completion_queue();
  int failures = 0;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(deadline - absl::Now()));
    std::unique_ptr<grpc::ClientAsyncReader<v1::Event>> reader =
        stub_->PrepareAsyncWatch(&context, request, &queue);
    bool ok = co_await runtime::ClientCallOp(&context, [&](void* tag) { reader->StartCall(tag); });
    v1::Event event;
    bool stopped = false;
    while (ok) {
      ok = co_await runtime::ClientCallOp(&context, [&](void* tag) { reader->Read(&event, tag); });
      if (!ok) break;
      failures = 0;
      request.set_from_sequence(event.sequence() + 1);
      if (!on_event(event)) {
        stopped = true;
        context.TryCancel();
        break;
      }
    }
    grpc::Status status;
    co_await runtime::ClientCallOp(&context, [&](void* tag) { reader->Finish(&status, tag); });
    if (stopped) co_return absl::OkStatus();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() >= deadline) {
      co_return FromGrpcStatus(status);
    }
    COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(
        absl::ToChronoNanoseconds(std::min(ReconnectDelay(failures++), deadline - absl::Now()))));
  }
}

}  // namespace cotask
