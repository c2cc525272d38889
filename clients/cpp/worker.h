// cotask::Worker: runs the dispatch tasks of named queues, taken from cotaskd over one
// Workers.Work stream (see protos/cotask/v1/workers.proto).
//
//   cotask::Client client;
//   cotask::Worker worker(client, {.queues = {"emails"}, .capacity = 4},
//                         [](cotask::TaskContext& task) -> absl::StatusOr<std::string> {
//                           return Send(task.payload(), task);   // checks task.cancelled()
//                         });
//   absl::Status status = worker.Run();   // until Drain() or Stop() (e.g. on SIGTERM)
//
// Each task runs its handler on one of `capacity` threads. The handler's value is the task's
// result (SUCCEEDED); an error fails it (FAILED, with the error's code and message, retried
// under the task's retry policy). A cancellation (CancelTask, the task's group, its timeout,
// the server's drain) reaches the running handler at once through its TaskContext, which it
// checks (cancelled()) or waits on (WaitForCancel): the server gives it a grace period
// (--worker_cancel_grace), after which the task ends CANCELLED whatever the handler does.
// Heartbeats are sent for the worker; if the process dies or the stream breaks, the server
// gives its tasks back to their queues.
//
// Thread-safety: Drain() and Stop() may be called from any thread while Run() runs; the
// TaskContext's calls from the handler's thread (or any other).
#ifndef COTASK_CLIENTS_CPP_WORKER_H_
#define COTASK_CLIENTS_CPP_WORKER_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients/cpp/client.h"
#include "cotask/v1/workers.grpc.pb.h"

namespace grpc {
class ClientContext;
template <class W, class R>
class ClientReaderWriter;
}  // namespace grpc

namespace cotask {

struct WorkerOptions {
  // The queues it serves (1 to 64); each is made on first use if the server has not declared it.
  std::vector<std::string> queues;
  // Tasks it runs at once (1 to 10,000): the handler threads.
  int capacity = 1;
  // For people (ListWorkers, the server's log); empty: "<hostname>-<pid>".
  std::string name;
  std::map<std::string, std::string> labels;
  // How long the server waits for a sign of life; zero: the server's default.
  absl::Duration heartbeat_timeout = absl::ZeroDuration();
};

class Worker;

// A task as its handler sees it.
class TaskContext {
 public:
  TaskContext(const TaskContext&) = delete;
  TaskContext& operator=(const TaskContext&) = delete;

  const v1::Task& task() const { return task_; }
  const std::string& id() const { return task_.id(); }
  int attempt() const { return task_.attempt(); }
  const std::string& payload() const { return task_.spec().dispatch().payload(); }
  const std::string& content_type() const { return task_.spec().dispatch().content_type(); }

  // The cancellation token: set when the server cancels the task, or the worker stops.
  bool cancelled() const;
  std::string cancel_message() const;
  // Waits up to `timeout` (forever if infinite) for the cancellation: true if cancelled.
  bool WaitForCancel(absl::Duration timeout = absl::InfiniteDuration()) const;

  // Reports progress (kept as the task's progress and in its event log).
  void Progress(double value, const std::string& message = {});
  // Output for the task's event log (watchers see it live).
  void Output(absl::string_view data, v1::Output::Stream stream = v1::Output::STDOUT);

 private:
  friend class Worker;
  TaskContext(Worker* worker, v1::Task task) : worker_(worker), task_(std::move(task)) {}
  void Cancel(const std::string& message);

  Worker* worker_;
  v1::Task task_;
  mutable std::mutex mu_;
  mutable std::condition_variable cancelled_cv_;
  bool cancelled_ = false;
  std::string cancel_message_;
};

// The handler: the task's result, or an error that fails it.
using WorkerHandler = std::function<absl::StatusOr<std::string>(TaskContext&)>;

class Worker {
 public:
  Worker(Client& client, WorkerOptions options, WorkerHandler handler);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Stops it if it runs, and waits for Run() to return.
  ~Worker();

  // Connects and runs tasks until the worker has drained (Drain()), was stopped (Stop()), or
  // its stream ended; its handlers have all returned when it does. OK after Drain() or Stop();
  // the stream's error otherwise (e.g. UNAVAILABLE when the server went away: call Run()
  // again to reconnect).
  absl::Status Run();
  // Takes no new task and finishes those it holds; Run() then returns. Any thread.
  void Drain();
  // Ends the stream now: the handlers are cancelled, and the server gives the tasks they held
  // back to their queues. Any thread.
  void Stop();
  // The server's id for it, once connected (else empty).
  std::string id() const;

 private:
  friend class TaskContext;
  using Stream = grpc::ClientReaderWriter<v1::WorkRequest, v1::WorkResponse>;

  // Queues one message for the writer thread; false once the stream no longer takes any.
  bool Send(v1::WorkRequest message);
  // The writer thread: writes what Send queued, in order, all that is queued at once in one
  // flush (gRPC's buffer hint), until the stream ends.
  void WriteMessages(Stream* stream);
  void RunHandlers();
  void RunOne(const std::shared_ptr<TaskContext>& task);
  void Heartbeats(absl::Duration interval);
  void CancelAll(const std::string& message);

  Client& client_;
  const WorkerOptions options_;
  const WorkerHandler handler_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::condition_variable ready_changed_;         // for the handler threads: one wakes per task
  std::condition_variable outbox_changed_;        // for the writer thread
  std::condition_variable outbox_room_;           // for Send, when the outbox is full
  std::unique_ptr<grpc::ClientContext> context_;  // of the stream while Run() runs
  std::unique_ptr<Stream> stream_;
  bool running_ = false;
  bool writes_done_ = false;
  bool drain_ = false;
  bool drain_sent_ = false;
  bool stop_ = false;
  bool ending_ = false;  // the stream has ended: heartbeats and handler threads stop
  std::string id_;
  std::deque<std::shared_ptr<TaskContext>> ready_;               // for the handler threads
  std::deque<v1::WorkRequest> outbox_;                           // for the writer thread
  std::map<std::string, std::shared_ptr<TaskContext>> holding_;  // by task id
  std::mutex write_mu_;  // held while writing to the stream (and for WritesDone)
};

}  // namespace cotask

#endif  // COTASK_CLIENTS_CPP_WORKER_H_
