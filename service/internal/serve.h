// ServeUnary and ServeServerStream: one call of an async gRPC service, from its arrival to its
// end, as a coroutine on an I/O loop.
//
//   request_call(context, request, responder, tag)   asks the service for the next call;
//   next()                                           puts up the listener for the call after it
//                                                    (so one call of each method is always
//                                                    awaited);
//   handle(request[, context])                       an awaitable of absl::StatusOr<Reply>, the
//                                                    answer (errors go out with their
//                                                    google.rpc.Status, see ToGrpcStatus);
//   or handle(messages, context)                     an awaitable of absl::Status, having
//                                                    filled messages->reply: the request and
//                                                    reply on an arena (ArenaMessages).
//
// With kCancellable, a unary call whose client goes away (or whose deadline passes) cancels
// handle's await, as a server stream's does: for calls that wait (Run, WaitTasks).
//
// For a server stream, stream(request, writer) writes the messages (co_await writer->Write(m))
// and returns the status the call ends with; a client that goes away cancels it at its current
// await (DoneSignal).
//
// Each call is counted in its method's grpc_server_* figures (`counted`, Metrics::GrpcMethod;
// null: not counted).
//
// The callables are taken by value, into the coroutine's frame.
#ifndef COTASK_SERVICE_INTERNAL_SERVE_H_
#define COTASK_SERVICE_INTERNAL_SERVE_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/async_unary_call.h>

#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "google/protobuf/arena.h"
#include "scheduler/runtime/task.h"
#include "service/internal/call_ops.h"
#include "service/metrics.h"
#include "service/scheduler_service.h"

namespace cotask::service::internal {

// The request and the reply of a call whose messages are big (CreateTasks: 1000 tasks each
// way) on a protobuf Arena of the call's own: parsed and built in a few blocks instead of an
// allocation per message (thousands a call, made on the engine's thread and freed on the I/O
// thread's), and freed at once by the last holder: the call on its I/O thread, as the handler
// has ended before the call answers (or the engine's loop, if the server went away first).
template <class Request, class Reply>
struct ArenaMessages {
  ArenaMessages() : arena(Options()) {}
  static google::protobuf::ArenaOptions Options() {
    google::protobuf::ArenaOptions options;
    options.start_block_size = 4 << 10;
    options.max_block_size = 64 << 10;
    return options;
  }
  google::protobuf::Arena arena;
  Request* request = google::protobuf::Arena::CreateMessage<Request>(&arena);
  Reply* reply = google::protobuf::Arena::CreateMessage<Reply>(&arena);
};

template <class Request, class Reply, bool kCancellable = false, class RequestCall, class Next,
          class Handle>
runtime::Task<void> ServeUnary(GrpcMethodMetrics* counted, RequestCall request_call, Next next,
                               Handle handle) {
  // handle(messages, context), filling messages->reply, or handle(request[, context]),
  // returning the reply.
  using Messages = ArenaMessages<Request, Reply>;
  constexpr bool kOnArena =
      std::is_invocable_v<Handle, std::shared_ptr<Messages>, const grpc::ServerContext&>;
  grpc::ServerContext context;
  std::shared_ptr<Messages> messages;
  Request own_request;  // (unused on an arena)
  Request* request = &own_request;
  if constexpr (kOnArena) {
    messages = std::make_shared<Messages>();
    request = messages->request;
  }
  grpc::ServerAsyncResponseWriter<Reply> responder(&context);
  DoneSignal done;
  if constexpr (kCancellable) done.Arm(context);
  const bool started =
      co_await Op([&](void* tag) { request_call(&context, request, &responder, tag); });
  if (!started) co_return absl::OkStatus();  // the server is shutting down
  next();
  GrpcCall call(counted);
  call.Received();
  absl::Status status;
  absl::StatusOr<Reply> own_reply;  // (unused on an arena)
  const Reply* reply = nullptr;
  if constexpr (kOnArena) {
    status = co_await handle(messages, std::as_const(context));
    reply = messages->reply;
  } else {
    if constexpr (std::is_invocable_v<Handle, Request, const grpc::ServerContext&>) {
      own_reply = co_await handle(std::move(own_request), std::as_const(context));
    } else {
      own_reply = co_await handle(std::move(own_request));
    }
    status = own_reply.status();
    if (own_reply.ok()) reply = &*own_reply;
  }
  if (status.ok()) {
    call.Sent();
    call.Handled(absl::StatusCode::kOk);
    co_await Op([&](void* tag) { responder.Finish(*reply, grpc::Status::OK, tag); });
  } else {
    call.Handled(status.code());
    co_await Op([&](void* tag) { responder.FinishWithError(ToGrpcStatus(status), tag); });
  }
  if constexpr (kCancellable) co_await done.Wait();
  co_return absl::OkStatus();
}

// A server stream's writer, counting what it writes: the call's context, gRPC's writer and the
// slot of its one operation in flight (the start, a write or the finish: each is awaited
// before the next). Made as part of a ServerStream.
template <class Message>
class CountedWriter {
 public:
  CountedWriter(const CountedWriter&) = delete;
  CountedWriter& operator=(const CountedWriter&) = delete;

  // co_await: true if written, false if the stream has gone. `more`: another message follows at
  // once, so gRPC may hold this one to send them together (not the stream's first message: one
  // held with the initial metadata does not complete until a later write flushes it).
  auto Write(const Message& message, bool more = false) {
    call_.Sent();
    grpc::WriteOptions options;
    if (more && written_) options.set_buffer_hint();
    written_ = true;
    writer_.Write(message, options, op_.tag());
    return op_.Wait();
  }

 protected:
  CountedWriter() = default;
  ~CountedWriter() = default;

  grpc::ServerContext context_;
  grpc::ServerAsyncWriter<Message> writer_{&context_};
  GrpcCall call_{nullptr};  // counted once the call has come
  runtime::OperationSlot op_;
  bool written_ = false;
};

// A server-streaming call's gRPC side, made in the frame of the coroutine that serves it (one
// frame a stream, with one operation's state: an open stream's memory is mostly gRPC's own,
// bench/README.md):
//
//   ServerStream<Request, Message> call;
//   if (!co_await call.Start(request_call)) co_return absl::OkStatus();  // shutting down
//   call.Received(counted);                // counted; now call.request(), call.writer()
//   ...                                    // co_await call.writer().Write(message)
//   co_await call.Finish(status);
//   co_await call.Done();                  // the done signal's tag is back
template <class Request, class Message>
class ServerStream final : public CountedWriter<Message> {
 public:
  ServerStream() = default;

  // Arms the done signal (a client that goes away cancels the serving task at its current
  // await) and asks for the call (request_call(context, request, writer, tag)); true once it
  // has come, false if the server is shutting down (the done signal then never fires: do not
  // await Done()).
  template <class RequestCall>
  auto Start(RequestCall request_call) {
    done_.Arm(this->context_);
    request_call(&this->context_, &request_, &this->writer_, this->op_.tag());
    return this->op_.Wait();
  }
  // Counts the call in `counted`'s figures (null: not counted).
  void Received(GrpcMethodMetrics* counted) {
    this->call_ = GrpcCall(counted);
    this->call_.Received();
  }
  const Request& request() const { return request_; }
  CountedWriter<Message>& writer() { return *this; }
  auto Finish(const absl::Status& status) {
    this->call_.Handled(status.code());
    this->writer_.Finish(ToGrpcStatus(status), this->op_.tag());
    return this->op_.Wait();
  }
  auto Done() { return done_.Wait(); }

 private:
  Request request_;
  DoneSignal done_;
};

template <class Request, class Message, class RequestCall, class Next, class Stream>
runtime::Task<void> ServeServerStream(GrpcMethodMetrics* counted, RequestCall request_call,
                                      Next next, Stream stream) {
  ServerStream<Request, Message> call;
  if (!co_await call.Start(std::move(request_call))) co_return absl::OkStatus();
  next();
  call.Received(counted);
  const absl::Status status = co_await stream(call.request(), &call.writer());
  co_await call.Finish(status);
  co_await call.Done();
  co_return absl::OkStatus();
}

}  // namespace cotask::service::internal

#endif  // COTASK_SERVICE_INTERNAL_SERVE_H_
