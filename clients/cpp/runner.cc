#include "clients/cpp/runner.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/sync_stream.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/runtime/grpc_ops.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask {
namespace {

v1::RunnerRequest OpenRequest(const RunnerOptions& options) {
  v1::RunnerRequest request;
  v1::OpenRunnerRequest& open = *request.mutable_open();
  open.mutable_labels()->insert(options.labels.begin(), options.labels.end());
  open.mutable_env()->insert(options.env.begin(), options.env.end());
  open.set_debug(options.debug);
  *open.mutable_slow_task_duration() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(options.slow_task_duration));
  return request;
}

v1::RunnerRequest CloseRequest(const std::string& reason) {
  v1::RunnerRequest close;
  close.mutable_close()->set_reason(reason);
  return close;
}

// Files one message of the stream into the report; true for the last one (closed).
bool AddToReport(const v1::RunnerResponse& response, RunnerReport& report) {
  switch (response.kind_case()) {
    case v1::RunnerResponse::kSlowTask:
      report.slow_tasks.push_back(response.slow_task());
      return false;
    case v1::RunnerResponse::kUnreadFailure:
      report.unread_failures.push_back(response.unread_failure());
      return false;
    case v1::RunnerResponse::kClosed:
      report.closed = response.closed();
      return true;
    default:
      return false;
  }
}

}  // namespace

Runner::Runner(Client& client, std::unique_ptr<grpc::ClientContext> context,
               std::unique_ptr<Stream> stream, std::string id)
    : client_(client),
      context_(std::move(context)),
      stream_(std::move(stream)),
      id_(std::move(id)) {}

absl::StatusOr<std::unique_ptr<Runner>> Runner::Open(Client& client, const RunnerOptions& options) {
  // A session: no deadline (keepalive notices a lost server, and the server a lost client).
  auto context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<Stream> stream = client.stub().OpenRunner(context.get());
  const v1::RunnerRequest request = OpenRequest(options);
  v1::RunnerResponse response;
  if (!stream->Write(request) || !stream->Read(&response)) {
    stream->WritesDone();
    return FromGrpcStatus(stream->Finish());
  }
  if (!response.has_opened()) {
    context->TryCancel();
    stream->Finish().ok();
    return absl::InternalError(absl::StrCat("the server's first runner message is not `opened`: ",
                                            response.DebugString()));
  }
  return std::unique_ptr<Runner>(
      new Runner(client, std::move(context), std::move(stream), response.opened().runner()));
}

Runner::~Runner() {
  if (!closed_) Close().IgnoreError();
}

absl::StatusOr<v1::Task> Runner::CreateTask(v1::CreateTaskRequest request, CallOptions call) {
  request.set_runner(id_);
  return client_.CreateTask(std::move(request), call);
}

absl::StatusOr<v1::Task> Runner::Run(v1::CreateTaskRequest request, CallOptions call) {
  request.set_runner(id_);
  return client_.Run(std::move(request), call);
}

absl::StatusOr<v1::Group> Runner::CreateGroup(v1::CreateGroupRequest request, CallOptions call) {
  request.set_runner(id_);
  return client_.CreateGroup(std::move(request), call);
}

absl::StatusOr<RunnerReport> Runner::Close(const std::string& reason) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("runner ", id_, " is closed"));
  closed_ = true;
  stream_->Write(CloseRequest(reason));
  stream_->WritesDone();
  RunnerReport report;
  bool ended = false;
  v1::RunnerResponse response;
  while (stream_->Read(&response)) ended = AddToReport(response, report) || ended;
  COTASK_RETURN_IF_ERROR(FromGrpcStatus(stream_->Finish()));
  if (!ended)
    return absl::UnavailableError(absl::StrCat("runner ", id_, " ended without a report"));
  return report;
}

runtime::Task<v1::Task> AsyncRunner::CreateTask(v1::CreateTaskRequest request, CallOptions call) {
  request.set_runner(id_);
  return client_.CreateTaskAsync(std::move(request), call);
}

runtime::Task<v1::Task> AsyncRunner::Run(v1::CreateTaskRequest request, CallOptions call) {
  request.set_runner(id_);
  return client_.RunAsync(std::move(request), call);
}

runtime::Task<v1::Group> AsyncRunner::CreateGroup(v1::CreateGroupRequest request,
                                                  CallOptions call) {
  request.set_runner(id_);
  return client_.CreateGroupAsync(std::move(request), call);
}

runtime::Task<RunnerReport> WithRunner(Client& client, RunnerOptions options,
                                       absl::AnyInvocable<runtime::Task<void>(AsyncRunner&)> body) {
  grpc::ClientContext context;  // a session: no deadline
  grpc::CompletionQueue& queue =
      runtime::internal::CurrentTaskOrDie("WithRunner").loop().completion_queue();
  auto stream = client.stub().PrepareAsyncOpenRunner(&context, &queue);
  auto op = [&](auto start) { return runtime::ClientCallOp(&context, std::move(start)); };
  const v1::RunnerRequest open = OpenRequest(options);
  v1::RunnerResponse response;
  bool ok = co_await op([&](void* tag) { stream->StartCall(tag); });
  ok = ok && co_await op([&](void* tag) { stream->Write(open, tag); });
  ok = ok && co_await op([&](void* tag) { stream->Read(&response, tag); });
  if (!ok || !response.has_opened()) {
    context.TryCancel();
    grpc::Status status;
    co_await op([&](void* tag) { stream->Finish(&status, tag); });
    if (status.ok()) status = grpc::Status(grpc::StatusCode::INTERNAL, "no runner was opened");
    co_return FromGrpcStatus(status);
  }
  AsyncRunner runner(client, response.opened().runner());
  // Whatever becomes of the body (an error, a cancellation delivered at one of its awaits), the
  // runner is closed below: the server cancels what it owns.
  const absl::Status outcome = co_await body(runner);
  const v1::RunnerRequest close = CloseRequest(outcome.ok() ? "" : std::string(outcome.message()));
  RunnerReport report;
  if (co_await op([&](void* tag) { stream->Write(close, tag); })) {
    co_await op([&](void* tag) { stream->WritesDone(tag); });
    while (co_await op([&](void* tag) { stream->Read(&response, tag); })) {
      AddToReport(response, report);
    }
  }
  grpc::Status status;
  co_await op([&](void* tag) { stream->Finish(&status, tag); });
  COTASK_CO_RETURN_IF_ERROR(outcome);
  COTASK_CO_RETURN_IF_ERROR(FromGrpcStatus(status));
  co_return report;
}

}  // namespace cotask
