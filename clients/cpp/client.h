// cotask::Client: the C++ client of cotaskd, on the generated stubs.
//
//   cotask::Client client;                                  // $COTASK_SERVER or 127.0.0.1:50051
//   absl::StatusOr<v1::Task> task = client.Run(request);    // create and await (asyncio.run)
//
// Every RPC has a blocking call (any thread) and a coroutine call (`...Async`, awaited in a
// cotask::runtime task: it runs on that task's EventLoop's completion queue, and cancelling
// the awaiting task cancels the call, so cancelling an awaited RunAsync cancels the remote
// task). Defaults a demanding user expects:
// - every call has a deadline: ClientOptions::timeout, or wait_timeout for the calls that wait
//   for tasks (Run, WaitTasks, Watch); CallOptions overrides it per call;
// - every create (CreateTask, CreateTasks, Run, CreateGroup) gets a generated `request_id`
//   unless it has one, so a retried create never makes two tasks;
// - so every unary call is idempotent, and gRPC retries it on UNAVAILABLE (the channel's
//   service config: 5 attempts, 0.1s to 2s backoff); OpenRunner is never retried;
// - Watch resumes where it was when the stream breaks (UNAVAILABLE: the server restarted or
//   closed the connection), from the last sequence it saw + 1.
// Errors are absl::Status values carrying the server's google.rpc.ErrorInfo (see
// scheduler/engine/errors.h: ErrorReason(status), the payload).
//
// Thread-safety: the blocking calls may be made from several threads at once.
#ifndef COTASK_CLIENTS_CPP_CLIENT_H_
#define COTASK_CLIENTS_CPP_CLIENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cotask/v1/scheduler.grpc.pb.h"
#include "cotask/v1/workers.grpc.pb.h"
#include "scheduler/runtime/task.h"

namespace grpc {
class Channel;
class ChannelCredentials;
class Status;
}  // namespace grpc

namespace cotask {

struct ClientOptions {
  // host:port of cotaskd; empty: $COTASK_SERVER, else 127.0.0.1:50051.
  std::string server;
  // Default: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // The deadline of a call that does not wait for tasks.
  absl::Duration timeout = absl::Seconds(30);
  // The deadline of Run, WaitTasks and Watch (all of a Watch's reconnections together).
  absl::Duration wait_timeout = absl::Hours(1);
};

struct CallOptions {
  // This call's deadline, instead of the client's default.
  std::optional<absl::Duration> timeout;
};

// grpc::Status to absl::Status, keeping the google.rpc.ErrorInfo of its details.
absl::Status FromGrpcStatus(const grpc::Status& status);

class Client {
 public:
  explicit Client(ClientOptions options = {});
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  const std::string& server() const { return server_; }
  v1::Scheduler::Stub& stub() { return *stub_; }
  v1::Workers::Stub& workers_stub() { return *workers_stub_; }
  // The channel to the server (with the clients' service config), shared by the stubs.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }

  // ----- Blocking calls.
  absl::StatusOr<v1::Task> CreateTask(v1::CreateTaskRequest request, CallOptions call = {});
  absl::StatusOr<v1::CreateTasksResponse> CreateTasks(v1::CreateTasksRequest request,
                                                      CallOptions call = {});
  absl::StatusOr<v1::Task> Run(v1::CreateTaskRequest request, CallOptions call = {});
  absl::StatusOr<v1::Task> GetTask(const std::string& id, CallOptions call = {});
  absl::StatusOr<v1::ListTasksResponse> ListTasks(const v1::ListTasksRequest& request,
                                                  CallOptions call = {});
  absl::StatusOr<v1::WaitTasksResponse> WaitTasks(const v1::WaitTasksRequest& request,
                                                  CallOptions call = {});
  absl::StatusOr<v1::CancelTaskResponse> CancelTask(const std::string& id,
                                                    const std::string& message = {},
                                                    CallOptions call = {});
  absl::StatusOr<v1::Group> CreateGroup(v1::CreateGroupRequest request, CallOptions call = {});
  absl::StatusOr<v1::Group> GetGroup(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::ListGroupsResponse> ListGroups(const v1::ListGroupsRequest& request,
                                                    CallOptions call = {});
  absl::StatusOr<v1::Group> CloseGroup(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::CancelGroupResponse> CancelGroup(const std::string& name,
                                                      const std::string& message = {},
                                                      CallOptions call = {});
  // Waits until a closed (or cancelled) group has ended and returns it as it ended. `seen` is
  // the group as a call returned it (CloseGroup, CancelGroup, GetGroup): the wait follows its
  // log from seen.last_sequence() + 1, so it reads one event however many children the group
  // had, not its whole log. An OPEN group does not end until it is closed.
  absl::StatusOr<v1::Group> AwaitGroup(const v1::Group& seen, CallOptions call = {});
  absl::StatusOr<v1::NamedEvent> SetEvent(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::NamedEvent> ClearEvent(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::NamedEvent> GetEvent(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::Semaphore> CreateSemaphore(const std::string& name, int64_t limit,
                                                CallOptions call = {});
  absl::StatusOr<v1::Semaphore> GetSemaphore(const std::string& name, CallOptions call = {});
  // Named queues of dispatch tasks, and the workers connected (Workers.ListWorkers; an empty
  // queue: all).
  absl::StatusOr<v1::Queue> CreateQueue(const v1::CreateQueueRequest& request,
                                        CallOptions call = {});
  absl::StatusOr<v1::Queue> GetQueue(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::ListQueuesResponse> ListQueues(CallOptions call = {});
  absl::StatusOr<v1::Queue> PauseQueue(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::Queue> ResumeQueue(const std::string& name, CallOptions call = {});
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers(const std::string& queue = {},
                                                      CallOptions call = {});

  // The log of a task or group from request.from_sequence (0: the start), then live, through
  // its last event: on_event sees each event once, in order, across reconnections (it may
  // return false to stop early; Watch then returns OK). An event that was dropped from the
  // server's bounded log comes as one `truncated` event.
  absl::Status Watch(v1::WatchRequest request, absl::FunctionRef<bool(const v1::Event&)> on_event,
                     CallOptions call = {});

  // ----- Coroutine calls, for tasks on a cotask::runtime::EventLoop.
  runtime::Task<v1::Task> CreateTaskAsync(v1::CreateTaskRequest request, CallOptions call = {});
  runtime::Task<v1::CreateTasksResponse> CreateTasksAsync(v1::CreateTasksRequest request,
                                                          CallOptions call = {});
  runtime::Task<v1::Task> RunAsync(v1::CreateTaskRequest request, CallOptions call = {});
  runtime::Task<v1::Task> GetTaskAsync(std::string id, CallOptions call = {});
  runtime::Task<v1::ListTasksResponse> ListTasksAsync(v1::ListTasksRequest request,
                                                      CallOptions call = {});
  runtime::Task<v1::WaitTasksResponse> WaitTasksAsync(v1::WaitTasksRequest request,
                                                      CallOptions call = {});
  runtime::Task<v1::CancelTaskResponse> CancelTaskAsync(std::string id, std::string message = {},
                                                        CallOptions call = {});
  runtime::Task<v1::Group> CreateGroupAsync(v1::CreateGroupRequest request, CallOptions call = {});
  runtime::Task<v1::Group> GetGroupAsync(std::string name, CallOptions call = {});
  runtime::Task<v1::ListGroupsResponse> ListGroupsAsync(v1::ListGroupsRequest request,
                                                        CallOptions call = {});
  runtime::Task<v1::Group> CloseGroupAsync(std::string name, CallOptions call = {});
  runtime::Task<v1::CancelGroupResponse> CancelGroupAsync(std::string name,
                                                          std::string message = {},
                                                          CallOptions call = {});
  runtime::Task<v1::Group> AwaitGroupAsync(v1::Group seen, CallOptions call = {});
  runtime::Task<v1::NamedEvent> SetEventAsync(std::string name, CallOptions call = {});
  runtime::Task<v1::NamedEvent> ClearEventAsync(std::string name, CallOptions call = {});
  runtime::Task<v1::NamedEvent> GetEventAsync(std::string name, CallOptions call = {});
  runtime::Task<v1::Semaphore> CreateSemaphoreAsync(std::string name, int64_t limit,
                                                    CallOptions call = {});
  runtime::Task<v1::Semaphore> GetSemaphoreAsync(std::string name, CallOptions call = {});
  // Watch as a coroutine: the same resumption; cancelling the task ends it (CANCELLED).
  runtime::Task<void> WatchAsync(v1::WatchRequest request,
                                 absl::AnyInvocable<bool(const v1::Event&)> on_event,
                                 CallOptions call = {});

  // The deadline a call gets: call.timeout, or the default for calls that wait or not.
  absl::Duration TimeoutOf(const CallOptions& call, bool waits) const;

 private:
  ClientOptions options_;
  std::string server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
  std::unique_ptr<v1::Workers::Stub> workers_stub_;
};

// A request id for a create: random, 128 bits.
std::string NewRequestId();

}  // namespace cotask

#endif  // COTASK_CLIENTS_CPP_CLIENT_H_
