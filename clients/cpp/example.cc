// The C++ client in a few lines (README.md shows it): run a program on cotaskd and print what it
// wrote. Usage: client_example [PROGRAM ARGS...]; the server is $COTASK_SERVER or
// 127.0.0.1:50051 (started with --exec_allow naming the program).
#include <cstdio>

#include "clients/cpp/client.h"

int main(int argc, char** argv) {
  cotask::Client client;
  cotask::v1::CreateTaskRequest request;
  auto& exec = *request.mutable_spec()->mutable_exec();
  for (int i = 1; i < argc; ++i) exec.add_argv(argv[i]);
  if (argc < 2) {
    exec.add_argv("/bin/echo");
    exec.add_argv("hello from cotask");
  }
  absl::StatusOr<cotask::v1::Task> task = client.Run(request);  // create and await
  if (!task.ok()) {
    std::fprintf(stderr, "%s\n", task.status().ToString().c_str());
    return 1;
  }
  std::printf("%s %s", cotask::v1::Task::State_Name(task->state()).c_str(),
              task->result().output().c_str());
  return task->state() == cotask::v1::Task::SUCCEEDED ? 0 : 1;
}
