#include "clients/cpp/worker.h"

#include <grpcpp/client_context.h>
#include <grpcpp/impl/call_op_set.h>
#include <grpcpp/support/sync_stream.h>
#include <unistd.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "google/rpc/status.pb.h"
#include "scheduler/engine/errors.h"

namespace cotask {
namespace {

using google::protobuf::util::TimeUtil;

std::string DefaultName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "worker", "-", getpid());
}

v1::WorkRequest Hello(const WorkerOptions& options) {
  v1::WorkRequest message;
  v1::WorkerHello& hello = *message.mutable_hello();
  hello.set_name(options.name.empty() ? DefaultName() : options.name);
  for (const std::string& queue : options.queues) hello.add_queues(queue);
  hello.set_capacity(options.capacity);
  hello.mutable_labels()->insert(options.labels.begin(), options.labels.end());
  if (options.heartbeat_timeout > absl::ZeroDuration()) {
    *hello.mutable_heartbeat_timeout() =
        TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(options.heartbeat_timeout));
  }
  return message;
}

absl::Duration ToAbsl(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

// ----- TaskContext

bool TaskContext::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

std::string TaskContext::cancel_message() const {
  std::lock_guard lock(mu_);
  return cancel_message_;
}

bool TaskContext::WaitForCancel(absl::Duration timeout) const {
  std::unique_lock lock(mu_);
  if (timeout == absl::InfiniteDuration()) {
    cancelled_cv_.wait(lock, [&] { return cancelled_; });
    return true;
  }
  return cancelled_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                                [&] { return cancelled_; });
}

void TaskContext::Cancel(const std::string& message) {
  std::lock_guard lock(mu_);
  if (cancelled_) return;
  cancelled_ = true;
  cancel_message_ = message;
  cancelled_cv_.notify_all();
}

void TaskContext::Progress(double value, const std::string& message) {
  v1::WorkRequest request;
  v1::TaskProgress& progress = *request.mutable_progress();
  progress.set_task(task_.id());
  progress.set_attempt(task_.attempt());
  progress.mutable_progress()->set_value(value);
  progress.mutable_progress()->set_message(message);
  worker_->Send(std::move(request));
}

void TaskContext::Output(absl::string_view data, v1::Output::Stream stream) {
  v1::WorkRequest request;
  v1::TaskOutput& output = *request.mutable_output();
  output.set_task(task_.id());
  output.set_attempt(task_.attempt());
  output.set_stream(stream);
  output.set_data(std::string(data));
  worker_->Send(std::move(request));
}

// ----- Worker

Worker::Worker(Client& client, WorkerOptions options, WorkerHandler handler)
    : client_(client), options_(std::move(options)), handler_(std::move(handler)) {}

Worker::~Worker() {
  Stop();
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return !running_; });
}

std::string Worker::id() const {
  std::lock_guard lock(mu_);
  return id_;
}

bool Worker::Send(v1::WorkRequest message) {
  // A handler that writes output faster than the stream takes it waits here, as it would on
  // the stream itself.
  constexpr size_t kMaxQueued = 1024;
  std::unique_lock lock(mu_);
  outbox_room_.wait(lock, [&] { return outbox_.size() < kMaxQueued || ending_ || writes_done_; });
  if (stream_ == nullptr || writes_done_ || ending_) return false;
  outbox_.push_back(std::move(message));
  if (outbox_.size() == 1) outbox_changed_.notify_one();
  return true;
}

void Worker::WriteMessages(Stream* stream) {
  std::deque<v1::WorkRequest> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      outbox_changed_.wait(lock, [&] { return !outbox_.empty() || ending_; });
      if (outbox_.empty()) return;
      batch.swap(outbox_);
      outbox_room_.notify_all();
    }
    std::lock_guard write(write_mu_);
    {
      std::lock_guard lock(mu_);
      if (writes_done_) return;
    }
    // Handlers that finish together share a flush: every message but the last may wait in
    // gRPC's buffer for the next.
    for (size_t i = 0; i < batch.size(); ++i) {
      grpc::WriteOptions options;
      if (i + 1 < batch.size()) options.set_buffer_hint();
      if (!stream->Write(batch[i], options)) return;  // the stream has ended
    }
    batch.clear();
  }
}

void Worker::Drain() {
  std::lock_guard lock(mu_);
  drain_ = true;
  changed_.notify_all();  // Run sends the drain message
}

void Worker::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  if (context_ != nullptr) context_->TryCancel();
  changed_.notify_all();
}

void Worker::CancelAll(const std::string& message) {
  std::lock_guard lock(mu_);
  for (auto& [id, task] : holding_) task->Cancel(message);
}

void Worker::RunOne(const std::shared_ptr<TaskContext>& task) {
  absl::StatusOr<std::string> outcome = absl::UnknownError("the handler did not return");
  try {
    outcome = handler_(*task);
  } catch (const std::exception& e) {
    outcome = absl::InternalError(absl::StrCat("the handler threw: ", e.what()));
  } catch (...) {
    outcome = absl::InternalError("the handler threw");
  }
  v1::WorkRequest message;
  v1::TaskResultReport& result = *message.mutable_result();
  result.set_task(task->id());
  result.set_attempt(task->attempt());
  if (outcome.ok()) {
    result.set_output(*std::move(outcome));
  } else {
    *result.mutable_error() = engine::ToRpcStatus(outcome.status());
  }
  Send(std::move(message));
  std::lock_guard lock(mu_);
  holding_.erase(task->id());
}

void Worker::RunHandlers() {
  while (true) {
    std::shared_ptr<TaskContext> task;
    {
      std::unique_lock lock(mu_);
      ready_changed_.wait(lock, [&] { return !ready_.empty() || ending_; });
      if (ready_.empty()) return;
      task = std::move(ready_.front());
      ready_.pop_front();
    }
    RunOne(task);
  }
}

void Worker::Heartbeats(absl::Duration interval) {
  v1::WorkRequest heartbeat;
  heartbeat.mutable_heartbeat();
  std::unique_lock lock(mu_);
  while (!ending_) {
    if (changed_.wait_for(lock, absl::ToChronoNanoseconds(interval), [&] { return ending_; })) {
      return;
    }
    lock.unlock();
    Send(heartbeat);
    lock.lock();
  }
}

absl::Status Worker::Run() {
  {
    std::lock_guard lock(mu_);
    if (running_) return absl::FailedPreconditionError("the worker is running already");
    if (stop_) return absl::OkStatus();
    running_ = true;
    writes_done_ = false;
    drain_sent_ = false;
    ending_ = false;
    id_.clear();
    context_ = std::make_unique<grpc::ClientContext>();
    stream_ = client_.workers_stub().Work(context_.get());
  }
  // (The stream's pointer only changes under both locks, in Run.)
  Stream* stream = stream_.get();
  std::vector<std::thread> threads;
  absl::Status status;
  v1::WorkResponse response;
  if (!stream->Write(Hello(options_)) || !stream->Read(&response) || !response.has_registered()) {
    status = FromGrpcStatus(stream->Finish());
    if (status.ok()) status = absl::UnavailableError("the server ended the stream at once");
  } else {
    const v1::WorkerRegistered registered = response.registered();
    {
      std::lock_guard lock(mu_);
      id_ = registered.worker();
    }
    for (int i = 0; i < options_.capacity; ++i) threads.emplace_back([this] { RunHandlers(); });
    threads.emplace_back([this, stream] { WriteMessages(stream); });
    threads.emplace_back(
        [this, registered] { Heartbeats(ToAbsl(registered.heartbeat_interval())); });
    // A drain asked for at any time is sent from here (the reader waits in Read meanwhile).
    std::thread drainer([this] {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [&] { return drain_ || ending_; });
      if (ending_ || drain_sent_) return;
      drain_sent_ = true;
      lock.unlock();
      v1::WorkRequest drain;
      drain.mutable_drain();
      Send(std::move(drain));
    });
    while (stream->Read(&response)) {
      if (response.has_assignment()) {
        auto task =
            std::shared_ptr<TaskContext>(new TaskContext(this, response.assignment().task()));
        std::lock_guard lock(mu_);
        holding_[task->id()] = task;
        ready_.push_back(std::move(task));
        ready_changed_.notify_one();
      } else if (response.has_cancel()) {
        const v1::CancelAssignment& cancel = response.cancel();
        std::shared_ptr<TaskContext> task;
        {
          std::lock_guard lock(mu_);
          auto it = holding_.find(cancel.task());
          if (it != holding_.end() && it->second->attempt() == cancel.attempt()) task = it->second;
        }
        if (task != nullptr) {
          task->Cancel(cancel.message());
          v1::WorkRequest ack;
          ack.mutable_cancel_ack()->set_task(cancel.task());
          ack.mutable_cancel_ack()->set_attempt(cancel.attempt());
          Send(std::move(ack));
        }
      } else if (response.has_drained()) {
        std::lock_guard write(write_mu_);
        std::lock_guard lock(mu_);
        if (!writes_done_) {
          writes_done_ = true;
          outbox_room_.notify_all();
          stream->WritesDone();
        }
      }
    }
    // The stream has ended: what is still held is lost to the server, so stop its handlers.
    CancelAll("the worker's stream ended");
    {
      std::lock_guard lock(mu_);
      ending_ = true;
      ready_.clear();  // not started: the server has them back
      changed_.notify_all();
      ready_changed_.notify_all();
      outbox_changed_.notify_all();
      outbox_room_.notify_all();
    }
    drainer.join();
    for (std::thread& thread : threads) thread.join();
    {
      std::lock_guard write(write_mu_);
      std::lock_guard lock(mu_);
      writes_done_ = true;
    }
    status = FromGrpcStatus(stream->Finish());
  }
  std::lock_guard write(write_mu_);
  std::lock_guard lock(mu_);
  if (stop_ && absl::IsCancelled(status)) status = absl::OkStatus();
  ready_.clear();
  holding_.clear();
  stream_.reset();
  context_.reset();
  outbox_.clear();
  running_ = false;
  changed_.notify_all();
  return status;
}

}  // namespace cotask
