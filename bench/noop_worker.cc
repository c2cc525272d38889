// A worker process of the dispatch benchmark, on the C++ worker library: serves one queue with
// a handler that returns at once.
//   noop_worker --server=HOST:PORT --queue=Q --capacity=N
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "clients/cpp/worker.h"

int main(int argc, char** argv) {
  // As cotaskd does (see service/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  cotask::ClientOptions client_options;
  cotask::WorkerOptions options;
  options.queues = {"bench"};
  options.capacity = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--server=")) client_options.server = arg.substr(9);
    if (absl::StartsWith(arg, "--queue=")) options.queues = {arg.substr(8)};
    if (absl::StartsWith(arg, "--capacity=") &&
        !absl::SimpleAtoi(arg.substr(11), &options.capacity)) {
      return 2;
    }
  }
  cotask::Client client(client_options);
  cotask::Worker worker(client, options,
                        [](cotask::TaskContext&) -> absl::StatusOr<std::string> { return ""; });
  absl::Status status = worker.Run();
  if (!status.ok()) std::fprintf(stderr, "noop_worker: %s\n", status.ToString().c_str());
  return status.ok() ? 0 : 1;
}
