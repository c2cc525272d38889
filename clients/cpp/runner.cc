#include "clients/cpp/runner.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask {

Runner::Runner(Client& client, std::unique_ptr<grpc::ClientContext> context,
               std::unique_ptr<Stream> stream, std::string id)
    : client_(client),
      context_(std::move(context)),
      stream_(std::move(stream)),
      id_(std::move(id)) {}

absl::StatusOr<std::unique_ptr<Runner>> Runner::Open(Client& client, RunnerOptions options) {
  // A session: no deadline (keepalive notices a lost server, and the server a lost client).
  auto context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<Stream> stream = client.stub().OpenRunner(context.get());
  v1::RunnerRequest request;
  v1::OpenRunnerRequest& open = *request.mutable_open();
  open.mutable_labels()->insert(options.labels.begin(), options.labels.end());
  open.mutable_env()->insert(options.env.begin(), options.env.end());
  open.set_debug(options.debug);
  *open.mutable_slow_task_duration() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(options.slow_task_duration));
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
  v1::RunnerRequest close;
  close.mutable_close()->set_reason(reason);
  stream_->Write(close);
  stream_->WritesDone();
  RunnerReport report;
  bool ended = false;
  v1::RunnerResponse response;
  while (stream_->Read(&response)) {
    switch (response.kind_case()) {
      case v1::RunnerResponse::kSlowTask:
        report.slow_tasks.push_back(response.slow_task());
        break;
      case v1::RunnerResponse::kUnreadFailure:
        report.unread_failures.push_back(response.unread_failure());
        break;
      case v1::RunnerResponse::kClosed:
        report.closed = response.closed();
        ended = true;
        break;
      default:
        break;
    }
  }
  COTASK_RETURN_IF_ERROR(FromGrpcStatus(stream_->Finish()));
  if (!ended)
    return absl::UnavailableError(absl::StrCat("runner ", id_, " ended without a report"));
  return report;
}

}  // namespace cotask
