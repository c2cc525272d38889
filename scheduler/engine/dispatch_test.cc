// The engine's dispatch tasks: queues (order, maxsize, pause), workers (assignment, fairness,
// results, drain), leases (lost with the worker, expired heartbeats) and cancellation on a
// worker (acknowledged, or past the grace period).
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "scheduler/engine/engine_fixture.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/timeout.h"
#include "tests/status_matchers.h"
#include "tests/task_requests.h"

namespace cotask::engine {
namespace {

using ::cotask::testing::DispatchRequest;
using ::cotask::testing::SleepRequest;
using ::cotask::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

v1::WorkerHello Hello(std::vector<std::string> queues, int capacity, std::string name = "w") {
  v1::WorkerHello hello;
  hello.set_name(std::move(name));
  for (std::string& queue : queues) hello.add_queues(std::move(queue));
  hello.set_capacity(capacity);
  return hello;
}

v1::WorkRequest Result(const v1::Task& task, std::string output) {
  v1::WorkRequest message;
  message.mutable_result()->set_task(task.id());
  message.mutable_result()->set_attempt(task.attempt());
  message.mutable_result()->set_output(std::move(output));
  return message;
}

v1::WorkRequest Failure(const v1::Task& task, int code, std::string text) {
  v1::WorkRequest message;
  message.mutable_result()->set_task(task.id());
  message.mutable_result()->set_attempt(task.attempt());
  message.mutable_result()->mutable_error()->set_code(code);
  message.mutable_result()->mutable_error()->set_message(std::move(text));
  return message;
}

class DispatchTest : public EngineTest {
 protected:
  // (The fixture's drain at the end cancels what workers hold: a short grace keeps it quick.)
  Engine& Start() { return Start(Options()); }
  Engine& Start(EngineOptions options) { return engine(std::move(options)); }
  static EngineOptions Options() {
    EngineOptions options;
    options.worker_cancel_grace = absl::Milliseconds(50);
    return options;
  }

  v1::Queue Queue(const std::string& name) {
    v1::GetQueueRequest get;
    get.set_name(name);
    return *engine_->GetQueue(get);
  }
  std::string Open(const v1::WorkerHello& hello) {
    absl::StatusOr<v1::WorkResponse> registered = engine_->OpenWorker(hello, "test");
    EXPECT_TRUE(registered.ok()) << registered.status();
    return registered.ok() ? registered->registered().worker() : "";
  }
  // The worker's next messages, waiting up to `wait` for some (none: empty).
  std::vector<v1::WorkResponse> Commands(const std::string& worker,
                                         std::chrono::milliseconds wait = 1000ms) {
    absl::StatusOr<std::vector<v1::WorkResponse>> commands =
        loop_.RunUntilComplete(runtime::Timeout(wait, engine_->NextWorkerCommands(worker)));
    if (absl::IsDeadlineExceeded(commands.status())) return {};
    EXPECT_TRUE(commands.ok()) << commands.status();
    return commands.ok() ? *commands : std::vector<v1::WorkResponse>{};
  }
  // The tasks assigned to the worker in its next messages.
  std::vector<v1::Task> Assigned(const std::string& worker) {
    std::vector<v1::Task> tasks;
    for (const v1::WorkResponse& command : Commands(worker)) {
      EXPECT_TRUE(command.has_assignment()) << command.DebugString();
      tasks.push_back(command.assignment().task());
    }
    return tasks;
  }
  void Send(const std::string& worker, const v1::WorkRequest& message) {
    ASSERT_TRUE(engine_->WorkerMessage(worker, message).ok());
  }
};

TEST_F(DispatchTest, WorkerRunsTaskAndItsResultIsTheTasks) {
  Start();
  const std::string id = Create(DispatchRequest("emails", "{\"to\":\"a@b\"}"));
  EXPECT_EQ(Get(id).state(), v1::Task::PENDING);
  RunFor(1ms);
  EXPECT_EQ(Get(id).state(), v1::Task::QUEUED);
  EXPECT_EQ(Queue("emails").depth(), 1);
  EXPECT_FALSE(Queue("emails").declared());

  const std::string worker = Open(Hello({"emails"}, 4));
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].id(), id);
  EXPECT_EQ(assigned[0].spec().dispatch().payload(), "{\"to\":\"a@b\"}");
  EXPECT_EQ(assigned[0].state(), v1::Task::RUNNING);
  EXPECT_EQ(assigned[0].worker(), worker);
  EXPECT_EQ(Get(id).state(), v1::Task::RUNNING);
  // The worker sees the task's times as a reader does.
  EXPECT_EQ(assigned[0].create_time(), Get(id).create_time());
  EXPECT_EQ(assigned[0].start_time(), Get(id).start_time());
  EXPECT_GT(assigned[0].start_time().seconds(), 0);
  EXPECT_FALSE(assigned[0].has_end_time());
  EXPECT_EQ(Queue("emails").leased(), 1);
  EXPECT_EQ(Queue("emails").depth(), 0);

  v1::WorkRequest progress;
  progress.mutable_progress()->set_task(id);
  progress.mutable_progress()->set_attempt(1);
  progress.mutable_progress()->mutable_progress()->set_value(0.5);
  progress.mutable_progress()->mutable_progress()->set_message("half");
  Send(worker, progress);
  EXPECT_EQ(Get(id).progress().message(), "half");
  v1::WorkRequest output;
  output.mutable_output()->set_task(id);
  output.mutable_output()->set_attempt(1);
  output.mutable_output()->set_stream(v1::Output::STDERR);
  output.mutable_output()->set_data("sending\n");
  Send(worker, output);
  Send(worker, Result(assigned[0], "sent"));

  const v1::Task done = AwaitTask(id);
  EXPECT_EQ(done.state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(done.result().output(), "sent");
  EXPECT_EQ(done.attempt(), 1);
  v1::WatchRequest target;
  target.set_task(id);
  std::vector<std::string> kinds;
  for (const v1::Event& event : WatchAll(target)) {
    if (event.has_progress())
      kinds.push_back(absl::StrCat("progress ", event.progress().message()));
    if (event.has_output()) kinds.push_back(absl::StrCat("output ", event.output().data()));
    if (event.has_task_state()) kinds.push_back(v1::Task::State_Name(event.task_state().state()));
  }
  EXPECT_THAT(kinds, ElementsAre("PENDING", "QUEUED", "RUNNING", "progress half",
                                 "output sending\n", "SUCCEEDED"));
  EXPECT_EQ(Queue("emails").leased(), 0);
  v1::ListWorkersRequest list;
  absl::StatusOr<v1::ListWorkersResponse> workers = engine_->ListWorkers(list);
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->workers_size(), 1);
  EXPECT_EQ(workers->workers(0).tasks_done(), 1);
  EXPECT_THAT(workers->workers(0).leases(), IsEmpty());
}

TEST_F(DispatchTest, WorkerErrorFailsTheTaskWithItsCode) {
  Start();
  const std::string id = Create(DispatchRequest("q"));
  const std::string worker = Open(Hello({"q"}, 1));
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  Send(worker, Failure(assigned[0], 9, "no such mailbox"));
  const v1::Task done = AwaitTask(id);
  EXPECT_EQ(done.state(), v1::Task::FAILED);
  EXPECT_EQ(done.error().code(), 9);
  EXPECT_EQ(done.error().message(), "no such mailbox");
}

class OrderTest : public DispatchTest {
 protected:
  // The payloads of the queue's tasks in the order a worker of capacity 1 gets them.
  std::vector<std::string> Drain(const std::string& queue, int n) {
    const std::string worker = Open(Hello({queue}, 1));
    std::vector<std::string> order;
    for (int i = 0; i < n; ++i) {
      std::vector<v1::Task> assigned = Assigned(worker);
      EXPECT_EQ(assigned.size(), 1u);
      if (assigned.empty()) break;
      order.push_back(assigned[0].spec().dispatch().payload());
      Send(worker, Result(assigned[0], ""));
    }
    return order;
  }
};

TEST_F(OrderTest, FifoByDefault) {
  Start();
  for (const char* p : {"a", "b", "c"}) Create(DispatchRequest("fifo", p));
  RunFor(1ms);
  EXPECT_THAT(Drain("fifo", 3), ElementsAre("a", "b", "c"));
}

TEST_F(OrderTest, Lifo) {
  EngineOptions options = Options();
  options.queues.push_back({"stack", v1::Queue::LIFO, 0});
  Start(options);
  for (const char* p : {"a", "b", "c"}) Create(DispatchRequest("stack", p));
  RunFor(1ms);
  EXPECT_THAT(Drain("stack", 3), ElementsAre("c", "b", "a"));
}

TEST_F(OrderTest, PriorityHighestFirstThenCreationOrder) {
  Start();
  v1::CreateQueueRequest create;
  create.set_name("prio");
  create.set_order(v1::Queue::PRIORITY);
  ASSERT_TRUE(engine_->CreateQueue(create).ok());
  Create(DispatchRequest("prio", "low", -5));
  Create(DispatchRequest("prio", "mid1", 0));
  Create(DispatchRequest("prio", "high", 100));
  Create(DispatchRequest("prio", "mid2", 0));
  RunFor(1ms);
  EXPECT_THAT(Drain("prio", 4), ElementsAre("high", "mid1", "mid2", "low"));
}

TEST_F(DispatchTest, AssignmentsAreSpreadFairlyAndKeptWithinCapacity) {
  Start();
  const std::string a = Open(Hello({"q"}, 2, "a"));
  const std::string b = Open(Hello({"q"}, 2, "b"));
  for (int i = 0; i < 6; ++i) Create(DispatchRequest("q", absl::StrCat(i)));
  RunFor(1ms);
  std::vector<v1::Task> to_a = Assigned(a);
  std::vector<v1::Task> to_b = Assigned(b);
  EXPECT_EQ(to_a.size(), 2u);
  EXPECT_EQ(to_b.size(), 2u);
  EXPECT_EQ(Queue("q").depth(), 2);
  EXPECT_EQ(Queue("q").leased(), 4);
  // A slot that frees takes the next task at once.
  Send(a, Result(to_a[0], ""));
  std::vector<v1::Task> next = Assigned(a);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].spec().dispatch().payload(), "4");
}

TEST_F(DispatchTest, LostWorkerGivesItsTasksBackUnderTheRetryPolicy) {
  Start();
  v1::CreateTaskRequest retried = DispatchRequest("q", "r");
  retried.mutable_options()->mutable_retry()->set_max_attempts(3);
  *retried.mutable_options()->mutable_retry()->mutable_initial_backoff() =
      TimeUtil::MillisecondsToDuration(10);
  const std::string kept = Create(retried);
  const std::string once = Create(DispatchRequest("q", "once"));
  const std::string first = Open(Hello({"q"}, 2, "first"));
  ASSERT_EQ(Assigned(first).size(), 2u);
  engine_->CloseWorker(first, "its stream ended");
  RunFor(50ms);

  const v1::Task lost = Get(once);
  EXPECT_EQ(lost.state(), v1::Task::FAILED);
  EXPECT_EQ(ErrorReason(FromRpcStatus(lost.error())), "WORKER_LOST");
  EXPECT_THAT(lost.error().message(),
              HasSubstr("worker first (" + first + ") was lost: its stream ended"));
  EXPECT_EQ(Get(kept).state(), v1::Task::QUEUED);
  EXPECT_EQ(Get(kept).attempt(), 2);

  const std::string second = Open(Hello({"q"}, 2, "second"));
  std::vector<v1::Task> again = Assigned(second);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id(), kept);
  EXPECT_EQ(again[0].attempt(), 2);
  // The first worker's result for attempt 1, had it come, is not the task's.
  Send(second, Result(again[0], "done"));
  EXPECT_EQ(AwaitTask(kept).state(), v1::Task::SUCCEEDED);
}

TEST_F(DispatchTest, SilentWorkerExpiresAndItsTasksGoBack) {
  Start();
  v1::CreateTaskRequest request = DispatchRequest("q");
  request.mutable_options()->mutable_retry()->set_max_attempts(2);
  *request.mutable_options()->mutable_retry()->mutable_initial_backoff() =
      TimeUtil::MillisecondsToDuration(1);
  const std::string id = Create(request);
  v1::WorkerHello hello = Hello({"q"}, 1);
  *hello.mutable_heartbeat_timeout() = TimeUtil::SecondsToDuration(1);
  const std::string worker = Open(hello);
  ASSERT_EQ(Assigned(worker).size(), 1u);
  // Heartbeats keep it: 3 of them, 400ms apart, outlast its 1s timeout.
  for (int i = 0; i < 3; ++i) {
    RunFor(400ms);
    v1::WorkRequest heartbeat;
    heartbeat.mutable_heartbeat();
    Send(worker, heartbeat);
  }
  EXPECT_EQ(Get(id).state(), v1::Task::RUNNING);
  absl::StatusOr<std::vector<v1::WorkResponse>> end =
      loop_.RunUntilComplete(runtime::Timeout(3s, engine_->NextWorkerCommands(worker)));
  EXPECT_THAT(end.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("heartbeat")));
  EXPECT_EQ(ErrorReason(end.status()), "WORKER_EXPIRED");
  RunFor(20ms);
  EXPECT_EQ(Get(id).state(), v1::Task::QUEUED);
  EXPECT_EQ(Get(id).attempt(), 2);
  engine_->CloseWorker(worker, "gone");
  EXPECT_EQ(engine_->counts().workers, 0u);
}

TEST_F(DispatchTest, CancelReachesTheWorkerAndTheTaskEndsCancelled) {
  Start();
  const std::string id = Create(DispatchRequest("q"));
  const std::string worker = Open(Hello({"q"}, 1));
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  v1::CancelTaskRequest cancel;
  cancel.set_id(id);
  cancel.set_message("user asked");
  ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  std::vector<v1::WorkResponse> commands = Commands(worker);
  ASSERT_EQ(commands.size(), 1u);
  ASSERT_TRUE(commands[0].has_cancel());
  EXPECT_EQ(commands[0].cancel().task(), id);
  EXPECT_EQ(commands[0].cancel().attempt(), 1);
  EXPECT_EQ(commands[0].cancel().message(), "user asked");
  EXPECT_EQ(Get(id).state(), v1::Task::RUNNING);  // until the worker ends it

  v1::WorkRequest ack;
  ack.mutable_cancel_ack()->set_task(id);
  ack.mutable_cancel_ack()->set_attempt(1);
  Send(worker, ack);
  absl::StatusOr<v1::ListWorkersResponse> workers = engine_->ListWorkers({});
  ASSERT_EQ(workers->workers(0).leases_size(), 1);
  EXPECT_TRUE(workers->workers(0).leases(0).cancel_sent());
  EXPECT_TRUE(workers->workers(0).leases(0).cancel_acknowledged());
  Send(worker, Failure(assigned[0], 1, "cancelled"));
  const v1::Task done = AwaitTask(id);
  EXPECT_EQ(done.state(), v1::Task::CANCELLED);
  EXPECT_EQ(done.cancel_message(), "user asked");
}

TEST_F(DispatchTest, WorkerThatIgnoresACancelLosesTheTaskAfterTheGrace) {
  EngineOptions options = Options();
  options.worker_cancel_grace = absl::Milliseconds(100);
  Start(options);
  const std::string id = Create(DispatchRequest("q"));
  const std::string worker = Open(Hello({"q"}, 1));
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  v1::CancelTaskRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  const absl::Time before = absl::Now();
  const v1::Task done = AwaitTask(id);
  EXPECT_EQ(done.state(), v1::Task::CANCELLED);
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(90));
  // Its late result is ignored, and its slot is free for the next task.
  Send(worker, Result(assigned[0], "late"));
  EXPECT_EQ(Get(id).state(), v1::Task::CANCELLED);
  EXPECT_FALSE(Get(id).has_result());
  const std::string next = Create(DispatchRequest("q"));
  std::vector<v1::WorkResponse> commands = Commands(worker);
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_TRUE(commands[0].has_cancel());  // the cancel sent before
  EXPECT_EQ(commands[1].assignment().task().id(), next);
}

TEST_F(DispatchTest, TimeoutCancelsOnTheWorkerAndEndsTimedOut) {
  Start();
  v1::CreateTaskRequest request = DispatchRequest("q");
  *request.mutable_options()->mutable_timeout() = TimeUtil::MillisecondsToDuration(50);
  const std::string id = Create(request);
  const std::string worker = Open(Hello({"q"}, 1));
  std::vector<v1::WorkResponse> commands = Commands(worker);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_TRUE(commands[0].assignment().has_deadline());
  commands = Commands(worker);
  ASSERT_EQ(commands.size(), 1u);
  ASSERT_TRUE(commands[0].has_cancel());
  EXPECT_THAT(commands[0].cancel().message(), HasSubstr("longer than its timeout of 50ms"));
  ASSERT_EQ(commands[0].cancel().task(), id);
  Send(worker, Failure(Get(id), 1, "stopped"));
  EXPECT_EQ(AwaitTask(id).state(), v1::Task::TIMED_OUT);
}

TEST_F(DispatchTest, CancelWhileQueuedLeavesTheQueue) {
  Start();
  const std::string id = Create(DispatchRequest("q"));
  RunFor(1ms);
  v1::CancelTaskRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  EXPECT_EQ(AwaitTask(id).state(), v1::Task::CANCELLED);
  EXPECT_EQ(Queue("q").depth(), 0);
  EXPECT_EQ(Queue("q").size(), 0);
  const std::string worker = Open(Hello({"q"}, 1));
  EXPECT_THAT(Commands(worker, 50ms), IsEmpty());
}

TEST_F(DispatchTest, FullQueueRefusesCreatesAndLosesNothing) {
  EngineOptions options = Options();
  options.queues.push_back({"small", v1::Queue::FIFO, 2});
  Start(options);
  const std::string a = Create(DispatchRequest("small", "a"));
  const std::string b = Create(DispatchRequest("small", "b"));
  absl::StatusOr<v1::Task> c = engine_->CreateTask(DispatchRequest("small", "c"));
  EXPECT_THAT(c.status(), StatusIs(absl::StatusCode::kResourceExhausted,
                                   "queue small is full: 2 tasks not started, 1 more would pass "
                                   "its maxsize of 2"));
  EXPECT_EQ(ErrorReason(c.status()), "QUEUE_FULL");
  v1::CreateTasksRequest batch;
  *batch.add_requests() = SleepRequest(0);
  *batch.add_requests() = DispatchRequest("small", "d");
  EXPECT_THAT(CreateTasks(*engine_, batch).status(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(engine_->counts().tasks, 2u);  // the batch made nothing
  EXPECT_EQ(Queue("small").size(), 2);

  // A create that waits gets in once a worker takes a task.
  v1::CreateTaskRequest waiting = DispatchRequest("small", "e");
  *waiting.mutable_wait_for_room() = TimeUtil::SecondsToDuration(5);
  runtime::TaskHandle<v1::Task> create = loop_.CreateTask(engine_->CreateTaskWaiting(waiting));
  RunFor(20ms);
  EXPECT_FALSE(create.done());
  const std::string worker = Open(Hello({"small"}, 1));
  absl::StatusOr<v1::Task> made = loop_.RunUntilComplete(create);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->spec().dispatch().payload(), "e");
  // One that waits too little gives up with the same error.
  *waiting.mutable_wait_for_room() = TimeUtil::MillisecondsToDuration(30);
  EXPECT_THAT(loop_.RunUntilComplete(engine_->CreateTaskWaiting(waiting)).status(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Get(a).state(), v1::Task::RUNNING);
  EXPECT_EQ(Get(b).state(), v1::Task::QUEUED);
}

TEST_F(DispatchTest, ABatchThatWaitsForRoomIsMadeWholeIntoTheCallersReply) {
  EngineOptions options = Options();
  options.queues.push_back({"small", v1::Queue::FIFO, 1});
  Start(options);
  Create(DispatchRequest("small", "a"));
  // The request and the reply on an arena, as the server has them.
  google::protobuf::Arena arena;
  auto* batch = google::protobuf::Arena::CreateMessage<v1::CreateTasksRequest>(&arena);
  auto* reply = google::protobuf::Arena::CreateMessage<v1::CreateTasksResponse>(&arena);
  *batch->add_requests() = SleepRequest(0);
  *batch->add_requests() = DispatchRequest("small", "b");
  *batch->mutable_wait_for_room() = TimeUtil::SecondsToDuration(5);
  runtime::TaskHandle<void> create = loop_.CreateTask(engine_->CreateTasksWaiting(*batch, reply));
  RunFor(20ms);
  EXPECT_FALSE(create.done());
  EXPECT_EQ(reply->tasks_size(), 0);
  EXPECT_EQ(engine_->counts().tasks, 1u);  // not even the sleep task
  Open(Hello({"small"}, 1));               // takes "a": room for "b"
  ASSERT_TRUE(loop_.RunUntilComplete(create).ok());
  ASSERT_EQ(reply->tasks_size(), 2);
  EXPECT_TRUE(reply->tasks(0).spec().has_sleep());
  EXPECT_EQ(reply->tasks(1).spec().dispatch().payload(), "b");
  EXPECT_EQ(reply->tasks(1).state(), v1::Task::PENDING);
  RunFor(10ms);
  EXPECT_EQ(Get(reply->tasks(1).id()).state(), v1::Task::QUEUED);

  // One with more of a queue's tasks than its maxsize can never fit: refused at once, with
  // nothing made.
  *batch->add_requests() = DispatchRequest("small", "c");
  reply->Clear();
  runtime::TaskHandle<void> hopeless = loop_.CreateTask(engine_->CreateTasksWaiting(*batch, reply));
  RunFor(20ms);
  ASSERT_TRUE(hopeless.done());
  EXPECT_THAT(loop_.RunUntilComplete(hopeless),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue small is full")));
  EXPECT_EQ(reply->tasks_size(), 0);
  EXPECT_EQ(engine_->counts().tasks, 3u);
}

TEST_F(DispatchTest, PausedQueueHoldsItsTasksUntilResumed) {
  Start();
  const std::string worker = Open(Hello({"q"}, 1));
  v1::PauseQueueRequest pause;
  pause.set_name("q");
  ASSERT_TRUE(engine_->PauseQueue(pause)->paused());
  const std::string id = Create(DispatchRequest("q"));
  EXPECT_THAT(Commands(worker, 50ms), IsEmpty());
  EXPECT_EQ(Get(id).state(), v1::Task::QUEUED);
  v1::ResumeQueueRequest resume;
  resume.set_name("q");
  EXPECT_FALSE(engine_->ResumeQueue(resume)->paused());
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].id(), id);
}

TEST_F(DispatchTest, DrainingWorkerFinishesWhatItHoldsAndTakesNothingNew) {
  Start();
  const std::string first = Create(DispatchRequest("q", "1"));
  const std::string worker = Open(Hello({"q"}, 1));
  std::vector<v1::Task> assigned = Assigned(worker);
  ASSERT_EQ(assigned.size(), 1u);
  v1::WorkRequest drain;
  drain.mutable_drain();
  Send(worker, drain);
  const std::string second = Create(DispatchRequest("q", "2"));
  Send(worker, Result(assigned[0], ""));
  std::vector<v1::WorkResponse> commands = Commands(worker);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_TRUE(commands[0].has_drained());
  EXPECT_EQ(AwaitTask(first).state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(Get(second).state(), v1::Task::QUEUED);
}

TEST_F(DispatchTest, QueuesDeclaredByFlagOrCreateQueue) {
  EngineOptions options = Options();
  options.queues.push_back({"jobs", v1::Queue::PRIORITY, 50});
  options.max_queues = 3;
  Start(options);
  v1::Queue jobs = Queue("jobs");
  EXPECT_EQ(jobs.order(), v1::Queue::PRIORITY);
  EXPECT_EQ(jobs.maxsize(), 50);
  EXPECT_TRUE(jobs.declared());
  v1::CreateQueueRequest same;
  same.set_name("jobs");
  same.set_order(v1::Queue::PRIORITY);
  same.set_maxsize(50);
  EXPECT_TRUE(engine_->CreateQueue(same).ok());
  same.set_order(v1::Queue::LIFO);
  EXPECT_THAT(engine_->CreateQueue(same).status(),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       "queue jobs exists with order PRIORITY and maxsize 50"));
  v1::CreateQueueRequest other;
  other.set_name("other");
  EXPECT_EQ(engine_->CreateQueue(other)->maxsize(), 100'000);  // the default
  Create(DispatchRequest("third"));
  EXPECT_THAT(engine_->CreateTask(DispatchRequest("fourth")).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_queues")));
  absl::StatusOr<v1::ListQueuesResponse> list = engine_->ListQueues({});
  ASSERT_EQ(list->queues_size(), 3);
  EXPECT_EQ(list->queues(0).name(), "jobs");
  EXPECT_EQ(list->queues(2).name(), "third");
  v1::GetQueueRequest missing;
  missing.set_name("nope");
  EXPECT_THAT(engine_->GetQueue(missing).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DispatchTest, ParsesTheQueuesFlag) {
  absl::StatusOr<std::vector<QueueSpec>> specs = ParseQueues("a,b:lifo,c:priority:10,d:7");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 4u);
  EXPECT_EQ((*specs)[1].order, v1::Queue::LIFO);
  EXPECT_EQ((*specs)[2].order, v1::Queue::PRIORITY);
  EXPECT_EQ((*specs)[2].maxsize, 10);
  EXPECT_EQ((*specs)[3].maxsize, 7);
  EXPECT_THAT(
      ParseQueues("a:sideways").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--queues entry \"a:sideways\"")));
  EXPECT_THAT(ParseQueues("a,a").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseQueues("a:0").status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DispatchTest, BadInputNamesTheField) {
  Start();
  auto field = [](const absl::Status& status) {
    return ErrorReason(status) == "INVALID_FIELD" ? std::string(status.message()) : "";
  };
  EXPECT_THAT(field(engine_->CreateTask(DispatchRequest("")).status()),
              HasSubstr("spec.dispatch.queue"));
  EXPECT_THAT(field(engine_->CreateTask(DispatchRequest("bad name")).status()),
              HasSubstr("spec.dispatch.queue"));
  EXPECT_THAT(field(engine_->CreateTask(DispatchRequest("q", "", 1001)).status()),
              HasSubstr("options.priority"));
  v1::CreateTaskRequest sleep = SleepRequest(0);
  sleep.mutable_options()->set_priority(3);
  EXPECT_THAT(field(engine_->CreateTask(sleep).status()),
              HasSubstr("options.priority: only dispatch tasks have a priority"));
  v1::CreateTaskRequest big = DispatchRequest("q", std::string((1 << 20) + 1, 'x'));
  EXPECT_THAT(field(engine_->CreateTask(big).status()), HasSubstr("spec.dispatch.payload"));

  EXPECT_THAT(field(engine_->OpenWorker(Hello({}, 1), "").status()), HasSubstr("hello.queues"));
  EXPECT_THAT(field(engine_->OpenWorker(Hello({"q"}, 0), "").status()),
              HasSubstr("hello.capacity"));
  EXPECT_THAT(field(engine_->OpenWorker(Hello({"q", "q"}, 1), "").status()),
              HasSubstr("hello.queues[1]: listed twice"));
  EXPECT_THAT(field(engine_->OpenWorker(Hello({"q"}, 1, ""), "").status()),
              HasSubstr("hello.name"));
  v1::WorkerHello fast = Hello({"q"}, 1);
  *fast.mutable_heartbeat_timeout() = TimeUtil::MillisecondsToDuration(10);
  EXPECT_THAT(field(engine_->OpenWorker(fast, "").status()), HasSubstr("hello.heartbeat_timeout"));

  const std::string worker = Open(Hello({"q"}, 1));
  v1::WorkRequest empty;
  EXPECT_THAT(field(engine_->WorkerMessage(worker, empty)), HasSubstr("kind"));
  v1::WorkRequest again;
  *again.mutable_hello() = Hello({"q"}, 1);
  EXPECT_THAT(field(engine_->WorkerMessage(worker, again)), HasSubstr("hello"));
  v1::WorkRequest bad_code;
  bad_code.mutable_result()->mutable_error()->set_code(99);
  EXPECT_THAT(field(engine_->WorkerMessage(worker, bad_code)), HasSubstr("result.error.code"));
}

TEST_F(DispatchTest, TooManyWorkers) {
  EngineOptions options = Options();
  options.max_workers = 1;
  Start(options);
  const std::string first = Open(Hello({"q"}, 1));
  EXPECT_THAT(engine_->OpenWorker(Hello({"q"}, 1), "").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_workers")));
  engine_->CloseWorker(first, "done");
  EXPECT_TRUE(engine_->OpenWorker(Hello({"q"}, 1), "").ok());
}

}  // namespace
}  // namespace cotask::engine
