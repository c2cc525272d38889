// runner_client ADDRESS: a client process for the runner tests. It opens a runner on cotaskd,
// creates two 60s sleep tasks in it (one detached), prints "tasks <owned> <detached>" on
// stderr, and then holds the stream open until it is killed.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cotask/v1/scheduler.grpc.pb.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "runner_client: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return Fail("usage: runner_client ADDRESS");
  auto stub = cotask::v1::Scheduler::NewStub(
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  grpc::ClientContext runner_context;
  auto stream = stub->OpenRunner(&runner_context);
  cotask::v1::RunnerRequest open;
  (*open.mutable_open()->mutable_labels())["client"] = "runner_client";
  cotask::v1::RunnerResponse opened;
  if (!stream->Write(open) || !stream->Read(&opened) || !opened.has_opened()) {
    return Fail("could not open a runner");
  }
  std::string ids[2];
  for (int i = 0; i < 2; ++i) {
    cotask::v1::CreateTaskRequest request;
    request.mutable_spec()->mutable_sleep()->mutable_duration()->set_seconds(60);
    request.set_runner(opened.opened().runner());
    request.set_detached(i == 1);
    cotask::v1::Task task;
    grpc::ClientContext context;
    grpc::Status status = stub->CreateTask(&context, request, &task);
    if (!status.ok()) return Fail("CreateTask: " + status.error_message());
    ids[i] = task.id();
  }
  std::fprintf(stderr, "tasks %s %s\n", ids[0].c_str(), ids[1].c_str());
  std::fflush(stderr);
  while (true) pause();
}
