// A worker in a few lines (README.md shows it): serves the queue "greetings", 4 tasks at a time,
// until SIGTERM or Ctrl-C, which drain it (it finishes what it holds, then exits). The server
// is $COTASK_SERVER or 127.0.0.1:50051. Try it with
//   cotask submit --queue greetings --payload world
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "clients/cpp/worker.h"

int main() {
  sigset_t signals;  // taken by the thread below, not by a handler
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cotask::Client client;
  cotask::WorkerOptions options;
  options.queues = {"greetings"};
  options.capacity = 4;
  cotask::Worker worker(client, options,
                        [](cotask::TaskContext& task) -> absl::StatusOr<std::string> {
                          task.Progress(0.5, "thinking");
                          if (task.WaitForCancel(absl::Milliseconds(100)))
                            return absl::CancelledError(task.cancel_message());
                          return "hello, " + task.payload();
                        });

  std::thread([&worker, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    worker.Drain();
  }).detach();
  absl::Status status = worker.Run();
  if (!status.ok()) std::fprintf(stderr, "%s\n", status.ToString().c_str());
  return status.ok() ? 0 : 1;
}
