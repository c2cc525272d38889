// The engine's dispatch tasks: named queues, the workers that serve them, and the leases of the
// tasks they hold (see Workers.Work in protos/cotask/v1/workers.proto).
//
// A dispatch task's life (life.cc) puts it in its queue once it is QUEUED (AwaitWorker) and
// waits; Pump hands ready tasks to the workers with room, fairly (the least loaded first, then
// the one that got a task longest ago), and makes them RUNNING: the task is leased. The lease
// ends with the worker's result, or is lost with the worker (its stream ended, or it went
// silent past its heartbeat timeout): the attempt then ends FAILED (WORKER_LOST), and the retry
// policy decides whether it goes back to the queue. A cancelled task's worker is told at once
// and given the grace period; the task then ends whatever the worker does.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/errors.h"
#include "scheduler/engine/records.h"
#include "scheduler/engine/validation.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/timeout.h"

namespace cotask::engine {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kMaxQueueSize = 10'000'000;
constexpr size_t kMaxContentTypeBytes = 255;
constexpr size_t kMaxWorkerNameBytes = 128;
constexpr int kMaxWorkerQueues = 64;
constexpr int kMaxWorkerCapacity = 10'000;
constexpr size_t kMaxProgressMessageBytes = 1024;
constexpr absl::Duration kMinHeartbeatTimeout = absl::Seconds(1);
constexpr absl::Duration kMaxHeartbeatTimeout = absl::Hours(1);
constexpr absl::Duration kMaxWaitForRoom = absl::Minutes(1);

bool IsWaiting(v1::Task::State state) {
  return state == v1::Task::PENDING || state == v1::Task::QUEUED;
}

absl::Status QueueNotFound(const std::string& name) {
  return Error(absl::StatusCode::kNotFound, "QUEUE_NOT_FOUND",
               absl::StrCat("no queue named ", absl::CHexEscape(name),
                            " (a queue exists once declared, or used by a task or a worker)"),
               {{"queue", name}});
}

absl::Status TooManyQueues(size_t have, size_t bound) {
  return Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_QUEUES",
               absl::StrCat("the server has ", have, " queues (--max_queues)"),
               {{"bound", absl::StrCat(bound)}});
}

absl::StatusOr<v1::Queue::Order> ParseOrder(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "fifo") return v1::Queue::FIFO;
  if (lower == "lifo") return v1::Queue::LIFO;
  if (lower == "priority") return v1::Queue::PRIORITY;
  return absl::InvalidArgumentError("");
}

}  // namespace

absl::StatusOr<std::vector<QueueSpec>> ParseQueues(absl::string_view flag) {
  std::vector<QueueSpec> out;
  if (flag.empty()) return out;
  for (absl::string_view entry : absl::StrSplit(flag, ',')) {
    const std::string field = absl::StrCat("--queues entry \"", entry, "\"");
    std::vector<absl::string_view> parts = absl::StrSplit(entry, ':');
    QueueSpec spec;
    spec.name = std::string(parts[0]);
    COTASK_RETURN_IF_ERROR(ValidateName(spec.name, field));
    bool bad = parts.size() > 3;
    for (size_t i = 1; i < parts.size() && !bad; ++i) {
      if (absl::StatusOr<v1::Queue::Order> order = ParseOrder(parts[i]); order.ok()) {
        spec.order = *order;
      } else if (!absl::SimpleAtoi(parts[i], &spec.maxsize) || spec.maxsize < 1 ||
                 spec.maxsize > kMaxQueueSize) {
        bad = true;
      }
    }
    if (bad) {
      return InvalidField(field,
                          "must be name[:fifo|lifo|priority][:maxsize], maxsize 1 to 10000000",
                          absl::StrCat(kMaxQueueSize));
    }
    for (const QueueSpec& other : out) {
      if (other.name == spec.name) return InvalidField(field, "declares a queue a second time");
    }
    out.push_back(std::move(spec));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Queues

Engine::QueueRecord& Engine::DeclareQueue(const QueueSpec& spec, bool declared) {
  auto record = std::make_unique<QueueRecord>();
  v1::Queue& queue = record->queue;
  queue.set_name(spec.name);
  queue.set_order(spec.order);
  queue.set_maxsize(spec.maxsize > 0 ? spec.maxsize : options_.queue_maxsize);
  queue.set_declared(declared);
  *queue.mutable_create_time() = NowProto();
  QueueRecord& out = *record;
  queues_.emplace(spec.name, std::move(record));
  ReportQueue(out);
  return out;
}

Engine::QueueRecord* Engine::EnsureQueue(const std::string& name) {
  if (auto it = queues_.find(name); it != queues_.end()) return it->second.get();
  if (queues_.size() >= options_.max_queues) return nullptr;
  return &DeclareQueue(QueueSpec{name, v1::Queue::FIFO, 0}, /*declared=*/false);
}

absl::StatusOr<Engine::QueueRecord*> Engine::FindQueue(const std::string& name,
                                                       const char* field) const {
  COTASK_RETURN_IF_ERROR(ValidateName(name, field));
  auto it = queues_.find(name);
  if (it == queues_.end()) return QueueNotFound(name);
  return it->second.get();
}

v1::Queue Engine::DescribeQueue(const QueueRecord& record) const {
  v1::Queue queue = record.queue;
  queue.set_size(record.size);
  queue.set_depth(static_cast<int64_t>(record.ready.size()));
  queue.set_leased(record.leased);
  queue.set_workers(static_cast<int32_t>(record.workers.size()));
  return queue;
}

void Engine::ReportQueue(const QueueRecord& record) {
  if (options_.observer == nullptr) return;
  options_.observer->OnQueue(QueueFigures{
      record.queue.name(), record.size, static_cast<int64_t>(record.ready.size()), record.leased,
      static_cast<int64_t>(record.workers.size()), record.queue.paused()});
}

absl::StatusOr<v1::Queue> Engine::CreateQueue(const v1::CreateQueueRequest& request) {
  COTASK_RETURN_IF_ERROR(ValidateName(request.name(), "name"));
  if (!v1::Queue::Order_IsValid(request.order())) {
    return InvalidField("order", absl::StrCat("unknown value ", request.order()));
  }
  if (request.maxsize() < 0 || request.maxsize() > kMaxQueueSize) {
    return InvalidField("maxsize", absl::StrCat(request.maxsize(), " is not 0 to 10000000"),
                        absl::StrCat(kMaxQueueSize));
  }
  const int64_t maxsize = request.maxsize() > 0 ? request.maxsize() : options_.queue_maxsize;
  if (auto it = queues_.find(request.name()); it != queues_.end()) {
    const v1::Queue& have = it->second->queue;
    if (have.order() != request.order() || have.maxsize() != maxsize) {
      return Error(
          absl::StatusCode::kAlreadyExists, "QUEUE_EXISTS",
          absl::StrCat("queue ", request.name(), " exists with order ",
                       v1::Queue::Order_Name(have.order()), " and maxsize ", have.maxsize()),
          {{"queue", request.name()}});
    }
    return DescribeQueue(*it->second);
  }
  if (queues_.size() >= options_.max_queues) {
    return TooManyQueues(queues_.size(), options_.max_queues);
  }
  return DescribeQueue(
      DeclareQueue(QueueSpec{request.name(), request.order(), maxsize}, /*declared=*/true));
}

absl::StatusOr<v1::Queue> Engine::GetQueue(const v1::GetQueueRequest& request) const {
  COTASK_ASSIGN_OR_RETURN(QueueRecord * queue, FindQueue(request.name(), "name"));
  return DescribeQueue(*queue);
}

absl::StatusOr<v1::ListQueuesResponse> Engine::ListQueues(const v1::ListQueuesRequest&) const {
  v1::ListQueuesResponse response;
  for (const auto& [name, queue] : queues_) *response.add_queues() = DescribeQueue(*queue);
  return response;
}

absl::StatusOr<v1::Queue> Engine::PauseQueue(const v1::PauseQueueRequest& request) {
  COTASK_ASSIGN_OR_RETURN(QueueRecord * queue, FindQueue(request.name(), "name"));
  queue->queue.set_paused(true);
  ReportQueue(*queue);
  return DescribeQueue(*queue);
}

absl::StatusOr<v1::Queue> Engine::ResumeQueue(const v1::ResumeQueueRequest& request) {
  COTASK_ASSIGN_OR_RETURN(QueueRecord * queue, FindQueue(request.name(), "name"));
  queue->queue.set_paused(false);
  Pump(*queue);
  ReportQueue(*queue);
  return DescribeQueue(*queue);
}

// ---------------------------------------------------------------------------------------------
// Creating dispatch tasks

absl::Status Engine::ValidateDispatch(const v1::CreateTaskRequest& request) const {
  const v1::DispatchTask& dispatch = request.spec().dispatch();
  COTASK_RETURN_IF_ERROR(ValidateName(dispatch.queue(), "spec.dispatch.queue"));
  COTASK_RETURN_IF_ERROR(ValidateBytes(dispatch.payload().size(), "spec.dispatch.payload",
                                       options_.max_payload_bytes));
  COTASK_RETURN_IF_ERROR(ValidateBytes(dispatch.content_type().size(), "spec.dispatch.content_type",
                                       kMaxContentTypeBytes));
  for (char c : dispatch.content_type()) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return InvalidField("spec.dispatch.content_type", "must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::CheckQueuesHaveRoom(const absl::flat_hash_map<std::string, int64_t>& new_tasks,
                                         std::string* full_queue) const {
  size_t new_queues = 0;
  for (const auto& [name, count] : new_tasks) {
    auto it = queues_.find(name);
    const int64_t size = it == queues_.end() ? 0 : it->second->size;
    const int64_t maxsize =
        it == queues_.end() ? options_.queue_maxsize : it->second->queue.maxsize();
    if (it == queues_.end()) ++new_queues;
    if (size + count > maxsize) {
      if (full_queue != nullptr) *full_queue = name;
      return Error(absl::StatusCode::kResourceExhausted, "QUEUE_FULL",
                   absl::StrCat("queue ", name, " is full: ", size, " tasks not started, ", count,
                                " more would pass its maxsize of ", maxsize),
                   {{"queue", name}, {"bound", absl::StrCat(maxsize)}});
    }
  }
  if (queues_.size() + new_queues > options_.max_queues) {
    return TooManyQueues(queues_.size(), options_.max_queues);
  }
  return absl::OkStatus();
}

runtime::Task<bool> Engine::AwaitRoom(std::string name, absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  auto it = queues_.find(name);
  if (left <= absl::ZeroDuration() || it == queues_.end()) co_return false;
  QueueRecord& queue = *it->second;  // queues are never removed
  std::shared_ptr<runtime::Event> room = queue.room;
  ++queue.room_waiters;
  absl::Status waited = co_await runtime::Timeout(ToChrono(left), room->Wait());
  --queue.room_waiters;
  if (absl::IsDeadlineExceeded(waited)) co_return false;
  COTASK_CO_RETURN_IF_ERROR(waited);
  co_return true;
}

namespace {

absl::StatusOr<absl::Time> WaitDeadline(const google::protobuf::Duration& wait,
                                        absl::Time call_deadline) {
  COTASK_ASSIGN_OR_RETURN(absl::Duration duration,
                          ValidateDuration(wait, "wait_for_room", kMaxWaitForRoom));
  return std::min(absl::Now() + duration, call_deadline);
}

}  // namespace

runtime::Task<v1::Task> Engine::CreateTaskWaiting(v1::CreateTaskRequest request,
                                                  absl::Time call_deadline) {
  COTASK_CO_ASSIGN_OR_RETURN(absl::Time deadline,
                             WaitDeadline(request.wait_for_room(), call_deadline));
  const v1::CreateTaskRequest* one[] = {&request};
  while (true) {
    std::string full;
    google::protobuf::RepeatedPtrField<v1::Task> created;
    const absl::Status status = CreateBatch(one, false, &created, &full);
    if (status.ok()) co_return std::move(*created.Mutable(0));
    if (full.empty()) co_return status;
    COTASK_CO_ASSIGN_OR_RETURN(bool room, co_await AwaitRoom(full, deadline));
    if (!room) {
      if (options_.observer != nullptr) options_.observer->OnQueueFull(full);
      co_return status;
    }
  }
}

runtime::Task<void> Engine::CreateTasksWaiting(const v1::CreateTasksRequest& request,
                                               v1::CreateTasksResponse* reply,
                                               absl::Time call_deadline) {
  COTASK_CO_ASSIGN_OR_RETURN(absl::Time deadline,
                             WaitDeadline(request.wait_for_room(), call_deadline));
  const absl::Span<const v1::CreateTaskRequest* const> requests = ItemsOf(request);
  while (true) {
    std::string full;
    const absl::Status status = CreateBatch(requests, true, reply->mutable_tasks(), &full);
    if (status.ok() || full.empty()) co_return status;
    // A batch larger than the queue's maxsize never fits: no use waiting.
    int64_t count = 0;
    for (const v1::CreateTaskRequest* one : requests) {
      count += one->spec().has_dispatch() && one->spec().dispatch().queue() == full;
    }
    bool room = false;
    if (auto it = queues_.find(full); it != queues_.end() && count <= it->second->queue.maxsize()) {
      COTASK_CO_ASSIGN_OR_RETURN(room, co_await AwaitRoom(full, deadline));
    }
    if (!room) {
      if (options_.observer != nullptr) options_.observer->OnQueueFull(full);
      co_return status;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A dispatch task's attempts

runtime::Task<void> Engine::AwaitWorker(TaskRecord* record) {
  DispatchState& dispatch = *record->dispatch;
  QueueRecord& queue = *dispatch.queue;
  dispatch.assigned.Clear();
  dispatch.lease.reset();
  const int64_t priority =
      queue.queue.order() == v1::Queue::PRIORITY ? record->task.options().priority() : 0;
  const int64_t order =
      queue.queue.order() == v1::Queue::LIFO ? -dispatch.ordinal : dispatch.ordinal;
  dispatch.ready = ReadyKey{-priority, order, record};
  queue.ready.insert(*dispatch.ready);
  ReportQueue(queue);
  Pump(queue);
  absl::Status assigned = co_await dispatch.assigned.Wait();
  if (assigned.ok()) co_return absl::OkStatus();
  if (dispatch.lease != nullptr) {
    // A worker took it after the cancellation woke this wait: it runs, and is cancelled at
    // the next await, where its worker is told.
    record->life.Cancel(std::string(assigned.message()));
    co_return absl::OkStatus();
  }
  queue.ready.erase(*dispatch.ready);
  dispatch.ready.reset();
  ReportQueue(queue);
  co_return assigned;
}

runtime::Task<Engine::Outcome> Engine::RunDispatch(TaskRecord* record) {
  v1::Task& task = record->task;
  Lease& lease = *record->dispatch->lease;
  absl::Status waited = co_await lease.done.Wait();
  if (!waited.ok() && lease.worker != nullptr) {
    // Cancelled (CancelTask, its group, its runner, the drain, or its timeout): the worker is
    // told at once and has the grace period to end the handler; the task ends either way.
    const absl::Duration grace = options_.worker_cancel_grace;
    v1::WorkResponse command;
    v1::CancelAssignment& cancel = *command.mutable_cancel();
    cancel.set_task(IdOf(*record));
    cancel.set_attempt(task.attempt());
    cancel.set_message(
        task.cancel_message().empty()
            ? absl::StrCat("the task ran longer than its timeout of ",
                           absl::FormatDuration(ToDuration(task.options().timeout())))
            : task.cancel_message());
    *cancel.mutable_grace() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(grace));
    lease.cancel_sent = true;
    PushWorkerCommand(*lease.worker, std::move(command));
    runtime::TimerHandle timer =
        loop_.CallLater(ToChrono(grace), [done = &lease.done] { done->Set(); });
    while (!lease.done.is_set()) (void)co_await lease.done.Wait();  // further cancels wait too
    timer.Cancel();
  }
  if (lease.worker != nullptr) EndLease(*record);  // a result after this is ignored
  if (!waited.ok()) co_return waited;
  if (!lease.lost.empty()) {
    co_return Outcome{Error(absl::StatusCode::kUnavailable, "WORKER_LOST", lease.lost,
                            {{"worker", task.worker()}})};
  }
  const v1::TaskResultReport& result = *lease.result;
  task.mutable_result()->set_output(result.output());
  if (result.has_error() && result.error().code() != 0) {
    co_return Outcome{FromRpcStatus(result.error())};
  }
  co_return Outcome{absl::OkStatus()};
}

void Engine::Pump(QueueRecord& queue) {
  while (!queue.queue.paused() && !queue.ready.empty()) {
    // The worker with room that is least loaded, then the one that got a task longest ago.
    WorkerRecord* best = nullptr;
    for (WorkerRecord* worker : queue.workers) {
      const int64_t held = static_cast<int64_t>(worker->leases.size());
      const int64_t capacity = worker->worker.capacity();
      if (worker->worker.draining() || held >= capacity) continue;
      if (best == nullptr) {
        best = worker;
        continue;
      }
      const int64_t load = held * best->worker.capacity();
      const int64_t best_load = static_cast<int64_t>(best->leases.size()) * capacity;
      if (load < best_load ||
          (load == best_load && worker->last_assignment < best->last_assignment)) {
        best = worker;
      }
    }
    if (best == nullptr) return;
    Assign(*static_cast<TaskRecord*>(queue.ready.begin()->task), *best);
  }
}

void Engine::PumpWorker(WorkerRecord& worker) {
  const size_t n = worker.queues.size();
  const size_t first = worker.next_queue++ % n;
  for (size_t i = 0; i < n; ++i) {
    if (worker.closing || worker.worker.draining() ||
        static_cast<int64_t>(worker.leases.size()) >= worker.worker.capacity()) {
      return;
    }
    Pump(*worker.queues[(first + i) % n]);
  }
}

void Engine::Assign(TaskRecord& record, WorkerRecord& worker) {
  DispatchState& dispatch = *record.dispatch;
  dispatch.queue->ready.erase(*dispatch.ready);
  dispatch.ready.reset();
  dispatch.lease = std::make_unique<Lease>();
  dispatch.lease->worker = &worker;
  dispatch.lease->since = NowProto();
  worker.leases.emplace(IdOf(record), &record);
  worker.last_assignment = ++assignments_;
  v1::Task& task = record.task;
  task.set_worker(worker.worker.id());
  task.clear_progress();
  Transition(record, v1::Task::RUNNING);
  v1::WorkResponse command;
  v1::Assignment& assignment = *command.mutable_assignment();
  ViewInto(record, assignment.mutable_task());
  if (task.options().has_timeout() && ToDuration(task.options().timeout()) > absl::ZeroDuration()) {
    *assignment.mutable_deadline() = ToProto(absl::Now() + ToDuration(task.options().timeout()));
  }
  PushWorkerCommand(worker, std::move(command));
  dispatch.assigned.Set();
}

void Engine::EndLease(TaskRecord& record) {
  Lease& lease = *record.dispatch->lease;
  WorkerRecord& worker = *lease.worker;
  lease.worker = nullptr;
  worker.leases.erase(IdOf(record));
  SayDrainedIfSo(worker);
  PumpWorker(worker);
}

void Engine::LoseLeases(WorkerRecord& worker, const std::string& why) {
  const std::string message =
      absl::StrCat("worker ", worker.worker.name(), " (", worker.worker.id(), ") was lost: ", why);
  for (auto& [id, record] : worker.leases) {
    Lease& lease = *record->dispatch->lease;
    lease.worker = nullptr;
    lease.lost = message;
    lease.done.Set();
    if (options_.observer != nullptr) {
      options_.observer->OnLeaseLost(record->dispatch->queue->queue.name());
    }
  }
  worker.leases.clear();
}

void Engine::QueueStateChanged(TaskRecord& record, v1::Task::State from, v1::Task::State to) {
  QueueRecord& queue = *record.dispatch->queue;
  const bool was_waiting = IsWaiting(from);  // (a new task comes from STATE_UNSPECIFIED)
  queue.size += static_cast<int>(IsWaiting(to)) - static_cast<int>(was_waiting);
  queue.leased +=
      static_cast<int>(to == v1::Task::RUNNING) - static_cast<int>(from == v1::Task::RUNNING);
  if (was_waiting && !IsWaiting(to) && queue.room_waiters > 0) {
    std::shared_ptr<runtime::Event> room = std::move(queue.room);
    queue.room = std::make_shared<runtime::Event>();
    room->Set();
  }
  ReportQueue(queue);
}

// ---------------------------------------------------------------------------------------------
// Workers

absl::StatusOr<v1::WorkResponse> Engine::OpenWorker(const v1::WorkerHello& hello,
                                                    std::string peer) {
  if (draining_) {
    return Error(absl::StatusCode::kUnavailable, "DRAINING",
                 "the server is shutting down and takes no new workers");
  }
  if (hello.name().empty()) return InvalidField("hello.name", "required");
  COTASK_RETURN_IF_ERROR(ValidateBytes(hello.name().size(), "hello.name", kMaxWorkerNameBytes));
  if (hello.queues().empty()) return InvalidField("hello.queues", "required: at least one queue");
  if (hello.queues_size() > kMaxWorkerQueues) {
    return InvalidField("hello.queues",
                        absl::StrCat(hello.queues_size(), " queues, more than the limit"),
                        absl::StrCat(kMaxWorkerQueues));
  }
  size_t new_queues = 0;
  for (int i = 0; i < hello.queues_size(); ++i) {
    const std::string field = absl::StrCat("hello.queues[", i, "]");
    COTASK_RETURN_IF_ERROR(ValidateName(hello.queues(i), field));
    for (int j = 0; j < i; ++j) {
      if (hello.queues(j) == hello.queues(i)) return InvalidField(field, "listed twice");
    }
    new_queues += !queues_.contains(hello.queues(i));
  }
  if (hello.capacity() < 1 || hello.capacity() > kMaxWorkerCapacity) {
    return InvalidField("hello.capacity", absl::StrCat(hello.capacity(), " is not 1 to 10000"),
                        absl::StrCat(kMaxWorkerCapacity));
  }
  COTASK_RETURN_IF_ERROR(ValidateLabels(hello.labels(), "hello.labels", LabelBoundsOf(options_)));
  absl::Duration timeout = options_.worker_heartbeat_timeout;
  if (hello.has_heartbeat_timeout()) {
    COTASK_ASSIGN_OR_RETURN(absl::Duration asked,
                            ValidateDuration(hello.heartbeat_timeout(), "hello.heartbeat_timeout",
                                             kMaxHeartbeatTimeout));
    if (asked != absl::ZeroDuration()) {
      if (asked < kMinHeartbeatTimeout) {
        return InvalidField("hello.heartbeat_timeout", "less than 1s", "1s");
      }
      timeout = asked;
    }
  }
  if (connected_workers_ >= options_.max_workers) {
    return Error(
        absl::StatusCode::kResourceExhausted, "TOO_MANY_WORKERS",
        absl::StrCat("the server has ", connected_workers_, " workers connected (--max_workers)"),
        {{"bound", absl::StrCat(options_.max_workers)}});
  }
  if (queues_.size() + new_queues > options_.max_queues) {
    return TooManyQueues(queues_.size(), options_.max_queues);
  }

  last_worker_micros_ = std::max(absl::ToUnixMicros(absl::Now()), last_worker_micros_ + 1);
  auto owned = std::make_unique<WorkerRecord>();
  WorkerRecord& worker = *owned;
  v1::Worker& info = worker.worker;
  info.set_id(absl::StrFormat("w%014x", last_worker_micros_));
  info.set_name(hello.name());
  *info.mutable_queues() = hello.queues();
  info.set_capacity(hello.capacity());
  *info.mutable_labels() = hello.labels();
  *info.mutable_connect_time() = NowProto();
  *info.mutable_last_seen_time() = info.connect_time();
  *info.mutable_heartbeat_timeout() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(timeout));
  info.set_peer(std::move(peer));
  worker.last_seen = absl::Now();
  worker.heartbeat_timeout = timeout;
  const std::string id = info.id();
  workers_.emplace(id, std::move(owned));
  ++connected_workers_;
  if (options_.observer != nullptr)
    options_.observer->OnWorkers(static_cast<int64_t>(connected_workers_));
  worker.heartbeat_timer = loop_.CallLater(ToChrono(timeout), [this, id] { CheckHeartbeat(id); });
  for (const std::string& name : hello.queues()) {
    QueueRecord& queue = *EnsureQueue(name);
    queue.workers.push_back(&worker);
    worker.queues.push_back(&queue);
    ReportQueue(queue);
  }

  v1::WorkResponse registered;
  registered.mutable_registered()->set_worker(id);
  *registered.mutable_registered()->mutable_heartbeat_interval() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(timeout / 3));
  *registered.mutable_registered()->mutable_heartbeat_timeout() = info.heartbeat_timeout();
  PumpWorker(worker);
  return registered;
}

void Engine::CheckHeartbeat(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second->closing) return;
  WorkerRecord& worker = *it->second;
  const absl::Duration silent = absl::Now() - worker.last_seen;
  if (silent < worker.heartbeat_timeout) {
    worker.heartbeat_timer = loop_.CallLater(ToChrono(worker.heartbeat_timeout - silent),
                                             [this, id] { CheckHeartbeat(id); });
    return;
  }
  const std::string why = absl::StrCat("nothing came from it for ", absl::FormatDuration(silent),
                                       " (its heartbeat timeout is ",
                                       absl::FormatDuration(worker.heartbeat_timeout), ")");
  worker.expired = Error(absl::StatusCode::kUnavailable, "WORKER_EXPIRED",
                         absl::StrCat("worker ", id, ": ", why), {{"worker", id}});
  StopWorker(worker, why);
}

void Engine::StopWorker(WorkerRecord& worker, const std::string& reason) {
  if (worker.closing) return;
  worker.closing = true;
  worker.heartbeat_timer.Cancel();
  --connected_workers_;
  if (options_.observer != nullptr)
    options_.observer->OnWorkers(static_cast<int64_t>(connected_workers_));
  LoseLeases(worker, reason);
  for (QueueRecord* queue : worker.queues) {
    std::erase(queue->workers, &worker);
    ReportQueue(*queue);
  }
  worker.outbox_changed->Set();  // its stream's writer sees the end
}

void Engine::CloseWorker(const std::string& id, const std::string& reason) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  StopWorker(*it->second, reason);
  workers_.erase(it);
}

void Engine::SayDrainedIfSo(WorkerRecord& worker) {
  if (!worker.worker.draining() || !worker.leases.empty() || worker.drained_sent) return;
  worker.drained_sent = true;
  v1::WorkResponse drained;
  drained.mutable_drained();
  PushWorkerCommand(worker, std::move(drained));
}

void Engine::PushWorkerCommand(WorkerRecord& worker, v1::WorkResponse command) {
  worker.outbox.push_back(std::move(command));
  worker.outbox_changed->Set();
}

runtime::Task<std::vector<v1::WorkResponse>> Engine::NextWorkerCommands(std::string id) {
  while (true) {
    auto it = workers_.find(id);
    if (it == workers_.end()) co_return std::vector<v1::WorkResponse>{};
    WorkerRecord& worker = *it->second;
    if (!worker.expired.ok()) co_return worker.expired;
    if (worker.closing) co_return std::vector<v1::WorkResponse>{};
    if (!worker.outbox.empty()) {
      std::vector<v1::WorkResponse> out(std::make_move_iterator(worker.outbox.begin()),
                                        std::make_move_iterator(worker.outbox.end()));
      worker.outbox.clear();
      co_return out;
    }
    std::shared_ptr<runtime::Event> changed = worker.outbox_changed;
    changed->Clear();
    COTASK_CO_RETURN_IF_ERROR(co_await changed->Wait());
  }
}

absl::Status Engine::WorkerMessage(const std::string& id, const v1::WorkRequest& message) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second->closing) return absl::OkStatus();
  WorkerRecord& worker = *it->second;
  worker.last_seen = absl::Now();
  // The task the message is about, if the worker holds that attempt (else it is late: ignored).
  auto held = [&](const std::string& task, int32_t attempt) -> TaskRecord* {
    auto lease = worker.leases.find(task);
    if (lease == worker.leases.end() || lease->second->task.attempt() != attempt) return nullptr;
    return lease->second;
  };
  switch (message.kind_case()) {
    case v1::WorkRequest::kHeartbeat:
      break;
    case v1::WorkRequest::kProgress: {
      const v1::TaskProgress& progress = message.progress();
      COTASK_RETURN_IF_ERROR(ValidateBytes(progress.progress().message().size(),
                                           "progress.progress.message", kMaxProgressMessageBytes));
      if (!std::isfinite(progress.progress().value())) {
        return InvalidField("progress.progress.value", "must be a finite number");
      }
      if (TaskRecord* record = held(progress.task(), progress.attempt())) {
        *record->task.mutable_progress() = progress.progress();
        v1::Event event;  // (its task is stamped as it is read: StampEvents)
        *event.mutable_time() = NowProto();
        *event.mutable_progress() = progress.progress();
        AppendToLog(TaskLog(*record), std::move(event));
      }
      break;
    }
    case v1::WorkRequest::kOutput: {
      const v1::TaskOutput& output = message.output();
      COTASK_RETURN_IF_ERROR(
          ValidateBytes(output.data().size(), "output.data", options_.max_payload_bytes));
      if (!v1::Output::Stream_IsValid(output.stream())) {
        return InvalidField("output.stream", absl::StrCat("unknown value ", output.stream()));
      }
      if (TaskRecord* record = held(output.task(), output.attempt())) {
        AppendOutput(
            *record,
            output.stream() == v1::Output::STDERR ? v1::Output::STDERR : v1::Output::STDOUT,
            output.data());
      }
      break;
    }
    case v1::WorkRequest::kResult: {
      const v1::TaskResultReport& result = message.result();
      COTASK_RETURN_IF_ERROR(
          ValidateBytes(result.output().size(), "result.output", options_.max_payload_bytes));
      if (result.has_error()) {
        if (result.error().code() < 0 || result.error().code() > 16) {
          return InvalidField("result.error.code", "must be a google.rpc.Code from 0 to 16", "16");
        }
        COTASK_RETURN_IF_ERROR(ValidateBytes(result.error().ByteSizeLong(), "result.error",
                                             options_.max_payload_bytes));
      }
      if (TaskRecord* record = held(result.task(), result.attempt())) {
        Lease& lease = *record->dispatch->lease;
        lease.result = result;
        worker.worker.set_tasks_done(worker.worker.tasks_done() + 1);
        EndLease(*record);
        lease.done.Set();
      }
      break;
    }
    case v1::WorkRequest::kCancelAck: {
      const v1::CancelAck& ack = message.cancel_ack();
      if (TaskRecord* record = held(ack.task(), ack.attempt())) {
        record->dispatch->lease->cancel_acknowledged = true;
      }
      break;
    }
    case v1::WorkRequest::kDrain:
      worker.worker.set_draining(true);
      SayDrainedIfSo(worker);
      break;
    case v1::WorkRequest::kHello:
      return InvalidField("hello", "only the stream's first message may be a hello");
    case v1::WorkRequest::KIND_NOT_SET:
      return InvalidField("kind",
                          "required: one of heartbeat, progress, output, result, "
                          "cancel_ack, drain");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ListWorkersResponse> Engine::ListWorkers(
    const v1::ListWorkersRequest& request) const {
  if (!request.queue().empty()) COTASK_RETURN_IF_ERROR(ValidateName(request.queue(), "queue"));
  v1::ListWorkersResponse response;
  for (const auto& [id, record] : workers_) {
    if (record->closing) continue;
    const WorkerRecord& worker = *record;
    if (!request.queue().empty() &&
        std::none_of(worker.queues.begin(), worker.queues.end(), [&](const QueueRecord* queue) {
          return queue->queue.name() == request.queue();
        })) {
      continue;
    }
    v1::Worker& out = *response.add_workers();
    out = worker.worker;
    *out.mutable_last_seen_time() = ToProto(worker.last_seen);
    for (const auto& [task_id, task] : worker.leases) {
      const Lease& lease = *task->dispatch->lease;
      v1::Lease& entry = *out.add_leases();
      entry.set_task(task_id);
      entry.set_attempt(task->task.attempt());
      entry.set_queue(task->dispatch->queue->queue.name());
      *entry.mutable_lease_time() = lease.since;
      entry.set_cancel_sent(lease.cancel_sent);
      entry.set_cancel_acknowledged(lease.cancel_acknowledged);
    }
  }
  return response;
}

}  // namespace cotask::engine
