// Awaitables for gRPC completion-queue operations on an EventLoop's queue, for coroutines of
// the server (handlers) and of clients. Each passes itself as the operation's tag.
//
//   bool ok = co_await GrpcOp([&](void* tag) { responder.Finish(reply, Status::OK, tag); });
//   bool ok = co_await ClientCallOp(&context, [&](void* tag) { reader->Finish(&status, tag); });
//
// A GrpcOp is not a cancellable await (server operations cannot be withdrawn one by one; a
// handler's cancellation is delivered at its next cancellable await). A ClientCallOp is: a
// cancellation of the awaiting task cancels the whole call (ClientContext::TryCancel) and the
// await goes on until the operation completes, as it then soon does (the call's status says
// CANCELLED): the cancellation reaches the caller through the call's outcome, as a cancelled
// awaited task's does.
#ifndef COTASK_SCHEDULER_RUNTIME_GRPC_OPS_H_
#define COTASK_SCHEDULER_RUNTIME_GRPC_OPS_H_

#include <grpcpp/client_context.h>

#include <coroutine>
#include <utility>

#include "scheduler/runtime/operation_base.h"
#include "scheduler/runtime/task.h"

namespace cotask::runtime {

// One operation, started by start(tag) in await_suspend; resumes with the operation's ok.
template <class Start>
class [[nodiscard]] GrpcOp final : public OperationBase {
 public:
  explicit GrpcOp(Start start) : start_(std::move(start)) {}
  GrpcOp(const GrpcOp&) = delete;
  GrpcOp& operator=(const GrpcOp&) = delete;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> at) {
    task_ = &internal::CurrentTaskOrDie("a gRPC operation");
    task_->Suspend(at, nullptr);
    start_(static_cast<void*>(static_cast<OperationBase*>(this)));
  }
  bool await_resume() const noexcept { return ok_; }
  void Complete(bool ok) override {
    ok_ = ok;
    task_->Wake();
  }

 private:
  Start start_;
  internal::TaskState* task_ = nullptr;
  bool ok_ = false;
};

// The state of one operation at a time, for an object whose operations run one after another
// (a server stream's start, writes and finish, each awaited before the next): the operation is
// started with the slot's tag, then awaited at once through a pointer-sized awaiter, so a
// coroutine's frame holds one operation's state instead of an awaiter with its arguments per
// await (a frame per open stream: bench/README.md). Starting before the await is safe because
// the operation completes through this loop's queue, which is polled only once the coroutine
// has suspended. Not cancellable, as GrpcOp.
//
//   writer.Write(message, slot.tag());
//   bool ok = co_await slot.Wait();
class OperationSlot final : public OperationBase {
 public:
  class [[nodiscard]] Awaiter {
   public:
    explicit Awaiter(OperationSlot* slot) : slot_(slot) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> at) {
      slot_->task_ = &internal::CurrentTaskOrDie("a gRPC operation");
      slot_->task_->Suspend(at, nullptr);
    }
    bool await_resume() const noexcept { return slot_->ok_; }

   private:
    OperationSlot* slot_;
  };

  void* tag() { return static_cast<void*>(static_cast<OperationBase*>(this)); }
  // The started operation's outcome; await it at once.
  Awaiter Wait() { return Awaiter(this); }
  void Complete(bool ok) override {
    ok_ = ok;
    task_->Wake();
  }

 private:
  internal::TaskState* task_ = nullptr;
  bool ok_ = false;
};

// One operation of a client call; cancelling the awaiting task cancels the call.
template <class Start>
class [[nodiscard]] ClientCallOp final : public OperationBase, public internal::CancelHook {
 public:
  ClientCallOp(grpc::ClientContext* context, Start start)
      : context_(context), start_(std::move(start)) {}
  ClientCallOp(const ClientCallOp&) = delete;
  ClientCallOp& operator=(const ClientCallOp&) = delete;

  bool await_ready() {
    task_ = &internal::CurrentTaskOrDie("a gRPC client call");
    // Cancelled before: the operation still runs (the call exists), on a cancelled call.
    if (task_->TakePendingCancel()) context_->TryCancel();
    return false;
  }
  void await_suspend(std::coroutine_handle<> at) {
    task_->Suspend(at, this);
    start_(static_cast<void*>(static_cast<OperationBase*>(this)));
  }
  bool await_resume() {
    if (forwarded_) task_->EndCancelDelivery();
    return ok_;
  }
  void OnCancel() override {
    forwarded_ = true;
    context_->TryCancel();
  }
  void Complete(bool ok) override {
    ok_ = ok;
    if (forwarded_) {
      task_->WakeAfterCancel();
    } else {
      task_->Wake();
    }
  }

 private:
  grpc::ClientContext* context_;
  Start start_;
  internal::TaskState* task_ = nullptr;
  bool ok_ = false;
  bool forwarded_ = false;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_GRPC_OPS_H_
