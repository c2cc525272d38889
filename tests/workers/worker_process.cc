// A worker process for the workers' end-to-end tests, on the C++ worker library:
//   worker_process --server=HOST:PORT --queues=a,b --capacity=N --record=FILE [--name=NAME]
// What a task does depends on its payload:
//   "sleep:MS"   waits MS milliseconds (or until cancelled), then succeeds;
//   "block"      waits until cancelled;
//   "fail:TEXT"  fails with INTERNAL TEXT;
//   "stubborn:MS" sleeps MS milliseconds whatever happens (ignores a cancel);
//   anything else succeeds at once with "echo:" + the payload.
// Every handler's start and end is appended to FILE as a line:
//   start ID ATTEMPT NAME | done ID ATTEMPT NAME | cancelled ID ATTEMPT NAME MESSAGE
// SIGTERM drains the worker (exit 0 once drained).
#include <signal.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/worker.h"

namespace {

std::string Flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], prefix)) return std::string(argv[i]).substr(prefix.size());
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cotask::ClientOptions client_options;
  client_options.server = Flag(argc, argv, "server", "");
  cotask::Client client(client_options);
  cotask::WorkerOptions options;
  options.queues = absl::StrSplit(Flag(argc, argv, "queues", "q"), ',');
  options.name = Flag(argc, argv, "name", "cpp-worker");
  if (!absl::SimpleAtoi(Flag(argc, argv, "capacity", "1"), &options.capacity)) return 2;
  std::FILE* record = std::fopen(Flag(argc, argv, "record", "/dev/null").c_str(), "a");
  if (record == nullptr) return 2;
  std::mutex record_mu;
  auto note = [&](const std::string& line) {
    std::lock_guard lock(record_mu);
    std::fputs((line + "\n").c_str(), record);
    std::fflush(record);
  };
  const std::string name = options.name;

  cotask::Worker worker(
      client, options, [&](cotask::TaskContext& task) -> absl::StatusOr<std::string> {
        const std::string who = absl::StrCat(task.id(), " ", task.attempt(), " ", name);
        note("start " + who);
        const std::string& payload = task.payload();
        int64_t ms = 0;
        if (absl::StartsWith(payload, "stubborn:") && absl::SimpleAtoi(payload.substr(9), &ms)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          note("done " + who);
          return "stubborn";
        }
        bool cancelled = false;
        if (payload == "block") {
          cancelled = task.WaitForCancel();
        } else if (absl::StartsWith(payload, "sleep:") &&
                   absl::SimpleAtoi(payload.substr(6), &ms)) {
          cancelled = task.WaitForCancel(absl::Milliseconds(ms));
        }
        if (cancelled) {
          note("cancelled " + who + " " + task.cancel_message());
          return absl::CancelledError(task.cancel_message());
        }
        if (absl::StartsWith(payload, "fail:")) {
          note("done " + who);
          return absl::InternalError(payload.substr(5));
        }
        task.Progress(1, "done");
        note("done " + who);
        return "echo:" + payload;
      });
  std::thread([&worker, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    worker.Drain();
  }).detach();
  absl::Status status = worker.Run();
  if (!status.ok()) std::fprintf(stderr, "worker_process: %s\n", status.ToString().c_str());
  return status.ok() ? 0 : 1;
}
