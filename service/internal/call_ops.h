// Awaitables for the gRPC server's completion-queue operations, for handler coroutines on an
// EventLoop whose queue is the server's: one per operation kind, each passing itself as the tag.
//
//   bool ok = co_await Op([&](void* tag) { responder.Finish(reply, grpc::Status::OK, tag); });
//
// Server operations cannot be withdrawn one by one: they are not cancellable awaits (a
// cancellation of the handler is delivered at its next cancellable await). The call as a whole
// is cancelled with ServerContext::TryCancel, or by the server's shutdown; DoneSignal reports
// when the client has gone.
#ifndef COTASK_SERVICE_INTERNAL_CALL_OPS_H_
#define COTASK_SERVICE_INTERNAL_CALL_OPS_H_

#include <grpcpp/server_context.h>

#include <coroutine>
#include <utility>

#include "scheduler/runtime/grpc_ops.h"
#include "scheduler/runtime/operation_base.h"
#include "scheduler/runtime/task.h"

namespace cotask::service::internal {

// The server's operations (see runtime/grpc_ops.h).
template <class Start>
runtime::GrpcOp<Start> Op(Start start) {
  return runtime::GrpcOp<Start>(std::move(start));
}

// ServerContext::AsyncNotifyWhenDone: armed before the call is requested; when the call ends
// with the client gone (cancelled, deadline, disconnect), it cancels the handler task at its
// current await, so a handler waiting for events stops at once. Once the call has started, its
// tag always comes back: the handler must await Wait() before its frame (and this) goes away.
class DoneSignal final : public runtime::OperationBase {
 public:
  void Arm(grpc::ServerContext& context) {
    context_ = &context;
    task_ = &runtime::internal::CurrentTaskOrDie("DoneSignal");
    context.AsyncNotifyWhenDone(static_cast<runtime::OperationBase*>(this));
  }
  void Complete(bool) override {
    done_ = true;
    if (waiting_) {
      task_->Wake();
    } else if (context_->IsCancelled()) {
      task_->Cancel("the client cancelled the call");
    }
  }

  class Awaiter {
   public:
    explicit Awaiter(DoneSignal* signal) : signal_(signal) {}
    bool await_ready() const noexcept { return signal_->done_; }
    void await_suspend(std::coroutine_handle<> at) {
      signal_->waiting_ = true;
      signal_->task_->Suspend(at, nullptr);
    }
    void await_resume() const noexcept {}

   private:
    DoneSignal* signal_;
  };
  // Waits for the tag to come back (call only once the call has started).
  Awaiter Wait() { return Awaiter(this); }

 private:
  grpc::ServerContext* context_ = nullptr;
  runtime::internal::TaskState* task_ = nullptr;
  bool done_ = false;
  bool waiting_ = false;
};

}  // namespace cotask::service::internal

#endif  // COTASK_SERVICE_INTERNAL_CALL_OPS_H_
