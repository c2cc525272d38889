// cotask::Runner: a remote asyncio.Runner, over one OpenRunner stream.
//
//   RunnerOptions options;
//   options.labels["job"] = "nightly";
//   absl::StatusOr<std::unique_ptr<Runner>> runner = Runner::Open(client, options);
//   (*runner)->CreateTask(request);       // owned by the runner, with its labels and env
//   absl::StatusOr<RunnerReport> report = (*runner)->Close();
//
// Whatever the runner owns and has not ended when it closes (Close(), its destruction, or the
// process dying: the server sees the stream end) is cancelled on the server, except tasks and
// groups created `detached`. Close() waits for that and returns what the server reported.
#ifndef COTASK_CLIENTS_CPP_RUNNER_H_
#define COTASK_CLIENTS_CPP_RUNNER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/client.h"
#include "cotask/v1/scheduler.grpc.pb.h"

namespace grpc {
class ClientContext;
template <class W, class R>
class ClientReaderWriter;
}  // namespace grpc

namespace cotask {

struct RunnerOptions {
  // The context every task and group of the runner inherits.
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;  // exec tasks
  // asyncio's debug mode: slow tasks and unread failures are reported (see RunnerReport).
  bool debug = false;
  absl::Duration slow_task_duration = absl::Milliseconds(100);
};

// What a runner's stream reported, its end last.
struct RunnerReport {
  std::vector<v1::SlowTask> slow_tasks;
  std::vector<v1::UnreadFailure> unread_failures;
  v1::RunnerClosed closed;
};

class Runner {
 public:
  static absl::StatusOr<std::unique_ptr<Runner>> Open(Client& client,
                                                      const RunnerOptions& options = {});
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  // Close() if it was not called.
  ~Runner();

  const std::string& id() const { return id_; }

  // A task or group owned by the runner (request.runner is set).
  absl::StatusOr<v1::Task> CreateTask(v1::CreateTaskRequest request, CallOptions call = {});
  absl::StatusOr<v1::Task> Run(v1::CreateTaskRequest request, CallOptions call = {});
  absl::StatusOr<v1::Group> CreateGroup(v1::CreateGroupRequest request, CallOptions call = {});

  // Ends the runner: the server cancels what it owns (but the detached), waits for it to end,
  // and says so. `reason` goes into the cancellations' message.
  absl::StatusOr<RunnerReport> Close(const std::string& reason = {});

 private:
  using Stream = grpc::ClientReaderWriter<v1::RunnerRequest, v1::RunnerResponse>;
  Runner(Client& client, std::unique_ptr<grpc::ClientContext> context,
         std::unique_ptr<Stream> stream, std::string id);

  Client& client_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<Stream> stream_;
  std::string id_;
  bool closed_ = false;
};

// The coroutine flavour, scoped as `async with asyncio.Runner()`: opens a runner, runs `body`
// with it, and closes it whatever the body's outcome (also when the awaiting task is
// cancelled), so nothing it owns outlives it unless detached. Returns the runner's report if the
// body succeeded, else the body's error.
//
//   co_await WithRunner(client, {}, [&](AsyncRunner& runner) -> runtime::Task<void> {
//     COTASK_CO_RETURN_IF_ERROR((co_await runner.CreateTask(request)).status());
//     co_return absl::OkStatus();
//   });
class AsyncRunner {
 public:
  const std::string& id() const { return id_; }
  runtime::Task<v1::Task> CreateTask(v1::CreateTaskRequest request, CallOptions call = {});
  runtime::Task<v1::Task> Run(v1::CreateTaskRequest request, CallOptions call = {});
  runtime::Task<v1::Group> CreateGroup(v1::CreateGroupRequest request, CallOptions call = {});

 private:
  friend runtime::Task<RunnerReport> WithRunner(
      Client& client, RunnerOptions options,
      absl::AnyInvocable<runtime::Task<void>(AsyncRunner&)> body);
  AsyncRunner(Client& client, std::string id) : client_(client), id_(std::move(id)) {}
  Client& client_;
  std::string id_;
};

runtime::Task<RunnerReport> WithRunner(Client& client, RunnerOptions options,
                                       absl::AnyInvocable<runtime::Task<void>(AsyncRunner&)> body);

}  // namespace cotask

#endif  // COTASK_CLIENTS_CPP_RUNNER_H_
