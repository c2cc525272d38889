// The ceiling server of the benchmarks: cotask.bench.Ceiling (an empty unary call and a
// streaming echo) served the way cotaskd serves its calls (service/internal/serve.h: a handler
// coroutine per call on an I/O loop of the server's completion queue), minus the engine.
//   ceiling_server [--address=127.0.0.1:0]     prints "listening on HOST:PORT" on stderr
// Runs until SIGTERM or SIGINT.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ceiling.grpc.pb.h"
#include "scheduler/runtime/loop_thread.h"
#include "service/internal/call_ops.h"
#include "service/internal/serve.h"

namespace {

using cotask::bench::Ceiling;
using cotask::bench::Chunk;
using cotask::bench::Empty;
using cotask::service::internal::Op;

cotask::runtime::Task<Empty> Answer() { co_return Empty(); }

cotask::runtime::Task<void> ServeNothing(Ceiling::AsyncService* service,
                                         cotask::runtime::EventLoop* loop,
                                         grpc::ServerCompletionQueue* queue) {
  return cotask::service::internal::ServeUnary<Empty, Empty>(
      /*counted=*/nullptr,  // the bare gRPC stack: cotaskd's metrics are its own cost
      [service, queue](grpc::ServerContext* context, Empty* request,
                       grpc::ServerAsyncResponseWriter<Empty>* responder, void* tag) {
        service->RequestNothing(context, request, responder, queue, queue, tag);
      },
      [service, loop, queue] { loop->CreateTask(ServeNothing(service, loop, queue)); },
      [](const Empty&) { return Answer(); });
}

cotask::runtime::Task<void> ServeEcho(Ceiling::AsyncService* service,
                                      cotask::runtime::EventLoop* loop,
                                      grpc::ServerCompletionQueue* queue) {
  grpc::ServerContext context;
  grpc::ServerAsyncReaderWriter<Chunk, Chunk> stream(&context);
  if (!co_await Op(
          [&](void* tag) { service->RequestEcho(&context, &stream, queue, queue, tag); })) {
    co_return absl::OkStatus();
  }
  loop->CreateTask(ServeEcho(service, loop, queue));
  Chunk chunk;
  while (co_await Op([&](void* tag) { stream.Read(&chunk, tag); })) {
    if (!co_await Op([&](void* tag) { stream.Write(chunk, tag); })) break;
  }
  co_await Op([&](void* tag) { stream.Finish(grpc::Status::OK, tag); });
  co_return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  // As cotaskd does (the ceiling runs on the same settings).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::string address = "127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], "--address=")) address = argv[i] + 10;
  }
  Ceiling::AsyncService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::ServerCompletionQueue> queue = builder.AddCompletionQueue();
  grpc::ServerCompletionQueue* raw_queue = queue.get();
  cotask::runtime::LoopThread io(std::move(queue));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "ceiling_server: cannot listen on %s\n", address.c_str());
    return 1;
  }
  io.loop().CreateTask(ServeNothing(&service, &io.loop(), raw_queue));
  io.loop().CreateTask(ServeEcho(&service, &io.loop(), raw_queue));
  io.Start();
  std::fprintf(stderr, "listening on %s\n",
               absl::StrCat(address.substr(0, address.rfind(':')), ":", port).c_str());
  int signal = 0;
  sigwait(&signals, &signal);
  std::_Exit(0);  // a benchmark's server: nothing to drain or flush
}
