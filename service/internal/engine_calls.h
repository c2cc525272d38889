// ServeEngineUnary: a unary RPC of one of cotask's services whose answer is an engine method's,
// run on the engine's loop (the handler hops there with RunOn and back). The method is either a
// plain one returning absl::StatusOr<Reply>, or a coroutine of the engine (Run, WaitTasks)
// returning runtime::Task<Reply>; with kWaits, a client that goes away cancels it.
//
// Impl is the service's state: `async` (its AsyncService), `engine`, `engine_loop`. `counted`:
// the method's grpc_server_* figures (Metrics::GrpcMethod).
#ifndef COTASK_SERVICE_INTERNAL_ENGINE_CALLS_H_
#define COTASK_SERVICE_INTERNAL_ENGINE_CALLS_H_

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_unary_call.h>

#include <functional>
#include <type_traits>
#include <utility>

#include "absl/time/time.h"
#include "scheduler/engine/engine.h"
#include "scheduler/runtime/run_on.h"
#include "service/internal/serve.h"

namespace cotask::service::internal {

template <auto kMethod, class Request, class Reply>
runtime::Task<Reply> CallEngine(engine::Engine* engine, Request request) {
  using Result = std::invoke_result_t<decltype(kMethod), engine::Engine&, Request>;
  if constexpr (std::is_same_v<Result, runtime::Task<Reply>>) {
    co_return co_await std::invoke(kMethod, *engine, std::move(request));
  } else {
    co_return std::invoke(kMethod, *engine, request);
  }
}

template <auto kRequest, auto kEngine, class Request, class Reply, bool kWaits = false, class Impl>
runtime::Task<void> ServeEngineUnary(Impl* impl, runtime::EventLoop* loop,
                                     grpc::ServerCompletionQueue* queue,
                                     GrpcMethodMetrics* counted) {
  return ServeUnary<Request, Reply, kWaits>(
      counted,
      [impl, queue](grpc::ServerContext* context, Request* request,
                    grpc::ServerAsyncResponseWriter<Reply>* responder, void* tag) {
        (impl->async.*kRequest)(context, request, responder, queue, queue, tag);
      },
      [impl, loop, queue, counted] {
        loop->CreateTask(ServeEngineUnary<kRequest, kEngine, Request, Reply, kWaits>(
            impl, loop, queue, counted));
      },
      [impl](Request request) {
        return runtime::RunOn(*impl->engine_loop, CallEngine<kEngine, Request, Reply>(
                                                      impl->engine, std::move(request)));
      });
}

// The call's deadline, as the engine's waits take it.
inline absl::Time CallDeadline(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace cotask::service::internal

#endif  // COTASK_SERVICE_INTERNAL_ENGINE_CALLS_H_
