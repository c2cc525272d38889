#include "service/health_service.h"

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/async_unary_call.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/run_on.h"
#include "scheduler/runtime/status_macros.h"
#include "service/internal/call_ops.h"
#include "service/internal/serve.h"
#include "service/metrics.h"
#include "service/scheduler_service.h"

namespace cotask::service {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using internal::Op;
using ServingStatus = HealthCheckResponse::ServingStatus;

struct HealthService::Impl {
  runtime::EventLoop* state_loop;
  const Metrics* metrics;
  Health::AsyncService async;

  // On the state loop only.
  bool serving = false;
  bool closed = false;
  std::shared_ptr<runtime::Event> changed;  // set by the next change

  ServingStatus StatusOf(const std::string& service) const {
    if (!service.empty() && service != "cotask.v1.Scheduler") {
      return HealthCheckResponse::SERVICE_UNKNOWN;
    }
    return serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  }
  void Change() {
    if (changed != nullptr) std::exchange(changed, nullptr)->Set();
  }
};

namespace {

using Impl = HealthService::Impl;

// On the state loop.
runtime::Task<HealthCheckResponse> CheckOn(Impl* impl, std::string service) {
  const ServingStatus status = impl->StatusOf(service);
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    co_return engine::Error(absl::StatusCode::kNotFound, "SERVICE_UNKNOWN",
                            absl::StrCat("no service named \"", absl::CHexEscape(service),
                                         "\" here (try \"\" or cotask.v1.Scheduler)"));
  }
  HealthCheckResponse response;
  response.set_status(status);
  co_return response;
}

struct Update {
  std::optional<ServingStatus> send;
  bool end = false;
};

// On the state loop: the status to send next (once it differs from `last`), and whether the
// stream ends after it.
runtime::Task<Update> NextOn(Impl* impl, std::string service, std::optional<ServingStatus> last) {
  while (true) {
    const ServingStatus status = impl->StatusOf(service);
    if (status != last) co_return Update{status, impl->closed};
    if (impl->closed) co_return Update{std::nullopt, true};
    if (impl->changed == nullptr) impl->changed = std::make_shared<runtime::Event>();
    std::shared_ptr<runtime::Event> changed = impl->changed;
    COTASK_CO_RETURN_IF_ERROR(co_await changed->Wait());
  }
}

runtime::Task<void> ServeCheck(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  return internal::ServeUnary<HealthCheckRequest, HealthCheckResponse>(
      counted,
      [impl, queue](grpc::ServerContext* context, HealthCheckRequest* request,
                    grpc::ServerAsyncResponseWriter<HealthCheckResponse>* responder, void* tag) {
        impl->async.RequestCheck(context, request, responder, queue, queue, tag);
      },
      [impl, loop, queue, counted] { loop->CreateTask(ServeCheck(impl, loop, queue, counted)); },
      [impl](const HealthCheckRequest& request) {
        return runtime::RunOn(*impl->state_loop, CheckOn(impl, request.service()));
      });
}

runtime::Task<void> StreamStatuses(Impl* impl, const std::string& service,
                                   internal::CountedWriter<HealthCheckResponse>* writer) {
  std::optional<ServingStatus> last;
  while (true) {
    COTASK_CO_ASSIGN_OR_RETURN(
        Update update, co_await runtime::RunOn(*impl->state_loop, NextOn(impl, service, last)));
    if (update.send.has_value()) {
      HealthCheckResponse response;
      response.set_status(*update.send);
      if (!co_await writer->Write(response)) co_return absl::CancelledError("the client has gone");
      last = update.send;
    }
    if (update.end) co_return absl::UnavailableError("the server is shutting down");
  }
}

runtime::Task<void> ServeWatch(Impl* impl, runtime::EventLoop* loop,
                               grpc::ServerCompletionQueue* queue, GrpcMethodMetrics* counted) {
  return internal::ServeServerStream<HealthCheckRequest, HealthCheckResponse>(
      counted,
      [impl, queue](grpc::ServerContext* context, HealthCheckRequest* request,
                    grpc::ServerAsyncWriter<HealthCheckResponse>* writer, void* tag) {
        impl->async.RequestWatch(context, request, writer, queue, queue, tag);
      },
      [impl, loop, queue, counted] { loop->CreateTask(ServeWatch(impl, loop, queue, counted)); },
      [impl](const HealthCheckRequest& request,
             internal::CountedWriter<HealthCheckResponse>* writer) {
        return StreamStatuses(impl, request.service(), writer);
      });
}

}  // namespace

HealthService::HealthService(runtime::EventLoop& state_loop, const Metrics& metrics)
    : impl_(std::make_unique<Impl>()) {
  impl_->state_loop = &state_loop;
  impl_->metrics = &metrics;
}

HealthService::~HealthService() = default;

grpc::Service* HealthService::service() { return &impl_->async; }

void HealthService::Listen(runtime::EventLoop& loop, grpc::ServerCompletionQueue& queue) {
  const Metrics* metrics = impl_->metrics;
  loop.CreateTask(ServeCheck(impl_.get(), &loop, &queue,
                             &metrics->GrpcMethod(Health::service_full_name(), "Check")));
  loop.CreateTask(ServeWatch(impl_.get(), &loop, &queue,
                             &metrics->GrpcMethod(Health::service_full_name(), "Watch")));
}

void HealthService::SetServing(bool serving) {
  impl_->state_loop->Post([impl = impl_.get(), serving] {
    if (impl->closed) return;
    impl->serving = serving;
    impl->Change();
  });
}

void HealthService::Close() {
  impl_->state_loop->Post([impl = impl_.get()] {
    impl->serving = false;
    impl->closed = true;
    impl->Change();
  });
}

}  // namespace cotask::service
