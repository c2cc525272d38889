// The C++ client library against the real cotaskd: blocking and coroutine calls, errors with
// their ErrorInfo, request ids, cancelling an awaited RunAsync, the TaskGroup and Runner
// helpers, and a Watch that resumes when the server closes its connection.
#include "clients/cpp/client.h"

#include <grpcpp/client_context.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "clients/cpp/runner.h"
#include "clients/cpp/task_group.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/daemon.h"
#include "tests/daemon_suite.h"
#include "tests/status_matchers.h"
#include "tests/task_requests.h"

namespace cotask {
namespace {

using ::cotask::testing::FailingRequest;
using ::cotask::testing::SleepRequest;
using ::cotask::testing::StartDaemon;
using ::cotask::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct DefaultFlags {
  static std::vector<std::string> Args() { return {"--address=127.0.0.1:0"}; }
};

class ClientTest : public testing::DaemonSuite<DefaultFlags> {
 protected:
  void SetUp() override {
    DaemonSuite::SetUp();
    ClientOptions options;
    options.server = daemon_->address;
    client_ = std::make_unique<Client>(options);
  }

  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, BlockingCallsAndTheirErrors) {
  v1::CreateTaskRequest request = SleepRequest(5);
  request.mutable_spec()->mutable_sleep()->set_result("hi");
  absl::StatusOr<v1::Task> ran = client_->Run(request);
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(ran->result().output(), "hi");
  EXPECT_THAT(ran->request_id(), ::testing::StartsWith("c"));  // generated
  EXPECT_EQ(ran->request_id().size(), 33u);

  absl::StatusOr<v1::Task> got = client_->GetTask(ran->id());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id(), ran->id());
  absl::Status missing = client_->GetTask("t00000000000000").status();
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("no task")));
  EXPECT_EQ(engine::ErrorReason(missing), "TASK_NOT_FOUND");
  absl::Status bad = client_->CreateTask(v1::CreateTaskRequest()).status();
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec")));
  EXPECT_EQ(engine::ErrorReason(bad), "INVALID_FIELD");

  // The same request id: the same task (what a retried create relies on).
  request.set_request_id("client-test-once");
  absl::StatusOr<v1::Task> first = client_->CreateTask(request);
  absl::StatusOr<v1::Task> again = client_->CreateTask(request);
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(first->id(), again->id());

  ASSERT_TRUE(client_->SetEvent("client-test").ok());
  EXPECT_TRUE(client_->GetEvent("client-test")->is_set());
  EXPECT_FALSE(client_->ClearEvent("client-test")->is_set());
  EXPECT_EQ(client_->CreateSemaphore("client-test", 2)->limit(), 2);
  EXPECT_EQ(client_->GetSemaphore("client-test")->limit(), 2);
}

TEST_F(ClientTest, CoroutineCallsRunOnTheCallersLoop) {
  runtime::EventLoop loop;
  auto body = [](Client* client) -> runtime::Task<std::vector<std::string>> {
    std::vector<std::string> states;
    COTASK_CO_ASSIGN_OR_RETURN(v1::Task created, co_await client->CreateTaskAsync(SleepRequest(5)));
    COTASK_CO_RETURN_IF_ERROR(co_await client->WatchAsync(
        [&] {
          v1::WatchRequest watch;
          watch.set_task(created.id());
          return watch;
        }(),
        [&](const v1::Event& event) {
          states.push_back(v1::Task::State_Name(event.task_state().state()));
          return true;
        }));
    COTASK_CO_ASSIGN_OR_RETURN(v1::Task ran, co_await client->RunAsync(FailingRequest(0)));
    states.push_back(v1::Task::State_Name(ran.state()));
    absl::StatusOr<v1::Task> missing = co_await client->GetTaskAsync("t00000000000000");
    states.push_back(std::string(absl::StatusCodeToString(missing.status().code())));
    co_return states;
  };
  auto states = loop.RunUntilComplete(body(client_.get()));
  ASSERT_TRUE(states.ok()) << states.status();
  EXPECT_THAT(*states,
              ElementsAre("PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "NOT_FOUND"));
}

TEST_F(ClientTest, CancellingAnAwaitedRunCancelsTheRemoteTask) {
  runtime::EventLoop loop;
  v1::CreateTaskRequest request = SleepRequest(60'000);
  request.set_request_id(NewRequestId());
  const std::string request_id = request.request_id();
  auto run = loop.CreateTask(client_->RunAsync(request));
  auto cancel_soon = [](runtime::TaskHandle<v1::Task> run) -> runtime::Task<void> {
    COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(200ms));
    run.Cancel("the caller gave up");
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(loop.RunUntilComplete(cancel_soon(run)).ok());
  auto outcome =
      loop.RunUntilComplete([](runtime::TaskHandle<v1::Task> run) -> runtime::Task<void> {
        co_return (co_await run).status();
      }(run));
  EXPECT_THAT(outcome, StatusIs(absl::StatusCode::kCancelled));
  // The server saw the call end and cancelled the task it made.
  v1::ListTasksRequest list;
  absl::StatusOr<v1::ListTasksResponse> tasks = client_->ListTasks(list);
  ASSERT_TRUE(tasks.ok());
  std::string id;
  for (const v1::Task& task : tasks->tasks()) {
    if (task.request_id() == request_id) id = task.id();
  }
  ASSERT_FALSE(id.empty());
  v1::Task task;
  for (int i = 0; i < 100; ++i) {
    task = *client_->GetTask(id);
    if (task.state() == v1::Task::CANCELLED) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_THAT(task.cancel_message(), HasSubstr("the Run call that created it ended"));
}

TEST_F(ClientTest, ATaskGroupRaisesItsChildrensFailuresTogether) {
  v1::CreateGroupRequest request;
  request.set_name("client-all");
  request.set_policy(v1::Group::ALL);
  auto group = TaskGroup::Create(*client_, request);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<std::string> failing(2);
  for (int i = 0; i < 2; ++i) failing[i] = (*group)->CreateTask(FailingRequest(5L * i))->id();
  ASSERT_TRUE((*group)->CreateTask(SleepRequest(10)).ok());
  absl::Status outcome = (*group)->Wait();
  EXPECT_THAT(outcome,
              StatusIs(absl::StatusCode::kInternal, HasSubstr("group client-all: 2 failures")));
  EXPECT_THAT(outcome.message(), HasSubstr(failing[0]));
  EXPECT_THAT(outcome.message(), HasSubstr(failing[1]));
  EXPECT_EQ(engine::ErrorReason(outcome), "GROUP_FAILED");
  EXPECT_EQ((*group)->group().state(), v1::Group::FAILED);
  ASSERT_EQ((*group)->group().failures_size(), 2);
  EXPECT_EQ((*group)->group().failures(0).task(), failing[0]);

  // Fail-fast (the default): the first failure cancels the sibling.
  auto fast = TaskGroup::Create(*client_, "client-fast");
  ASSERT_TRUE(fast.ok());
  const std::string sibling = (*fast)->CreateTask(SleepRequest(60'000))->id();
  ASSERT_TRUE((*fast)->CreateTask(FailingRequest(0)).ok());
  EXPECT_THAT((*fast)->Wait(), StatusIs(absl::StatusCode::kInternal, HasSubstr("1 failure")));
  EXPECT_EQ(client_->GetTask(sibling)->state(), v1::Task::CANCELLED);

  auto fine = TaskGroup::Create(*client_, "client-fine");
  ASSERT_TRUE(fine.ok());
  ASSERT_TRUE((*fine)->CreateTask(SleepRequest(1)).ok());
  EXPECT_TRUE((*fine)->Wait().ok());
  EXPECT_EQ((*fine)->group().state(), v1::Group::SUCCEEDED);
}

TEST_F(ClientTest, ARunnerOwnsWhatItCreatesAndCancelsItWhenClosed) {
  RunnerOptions options;
  options.labels["owner"] = "client-test";
  options.debug = true;
  auto runner = Runner::Open(*client_, options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  auto task = (*runner)->CreateTask(SleepRequest(60'000));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->labels().at("owner"), "client-test");
  EXPECT_EQ(task->runner(), (*runner)->id());
  auto failing = (*runner)->CreateTask(FailingRequest(0));
  ASSERT_TRUE(failing.ok()) << failing.status();
  // Closed once the sleeper has been RUNNING well past the 100 ms that make it slow (the report
  // lists it, and the failure that came at once), however busy the machine: a fixed pause was
  // not always enough. (The failed task is not looked at: reading its outcome would make the
  // failure read.)
  auto ready = [&] {
    absl::StatusOr<v1::Task> sleeper = client_->GetTask(task->id());
    if (!sleeper.ok() || sleeper->state() != v1::Task::RUNNING) return false;
    const auto started = std::chrono::system_clock::time_point(std::chrono::microseconds(
        google::protobuf::util::TimeUtil::TimestampToMicroseconds(sleeper->start_time())));
    return std::chrono::system_clock::now() - started > 250ms;
  };
  for (int i = 0; i < 500 && !ready(); ++i) std::this_thread::sleep_for(20ms);
  absl::StatusOr<RunnerReport> report = (*runner)->Close("test over");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->closed.cancelled_tasks(), ElementsAre(task->id()));
  EXPECT_THAT(report->closed.reason(), HasSubstr("the client closed it: test over"));
  EXPECT_EQ(report->unread_failures.size(), 1u);
  EXPECT_EQ(report->slow_tasks.size(), 1u);
  EXPECT_EQ(client_->GetTask(task->id())->state(), v1::Task::CANCELLED);
}

TEST_F(ClientTest, WithRunnerClosesTheRunnerWhateverTheBodyDoes) {
  runtime::EventLoop loop;
  std::string owned;
  absl::StatusOr<RunnerReport> report = loop.RunUntilComplete(
      WithRunner(*client_, {}, [&](AsyncRunner& runner) -> runtime::Task<void> {
        COTASK_CO_ASSIGN_OR_RETURN(v1::Task task, co_await runner.CreateTask(SleepRequest(60'000)));
        owned = task.id();
        COTASK_CO_ASSIGN_OR_RETURN(v1::Task ran, co_await runner.Run(SleepRequest(1)));
        EXPECT_EQ(ran.runner(), runner.id());
        co_return absl::OkStatus();
      }));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->closed.cancelled_tasks(), ElementsAre(owned));
  EXPECT_EQ(client_->GetTask(owned)->state(), v1::Task::CANCELLED);

  // A body that fails: its error comes back, and the runner is closed all the same.
  absl::StatusOr<RunnerReport> failed = loop.RunUntilComplete(
      WithRunner(*client_, {}, [&](AsyncRunner& runner) -> runtime::Task<void> {
        COTASK_CO_ASSIGN_OR_RETURN(v1::Task task, co_await runner.CreateTask(SleepRequest(60'000)));
        owned = task.id();
        co_return absl::AbortedError("the body gave up");
      }));
  EXPECT_THAT(failed.status(), StatusIs(absl::StatusCode::kAborted, "the body gave up"));
  const v1::Task task = *client_->GetTask(owned);
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_THAT(task.cancel_message(), HasSubstr("the client closed it: the body gave up"));
}

// A server that closes every connection after 300ms (plus 200ms of grace): a Watch of a task
// that takes 2s spans several connections and still sees every event once, in order.
TEST(ClientWatchTest, WatchResumesWhenTheServerClosesTheStream) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--max_connection_age=300ms",
                             "--max_connection_age_grace=200ms", "--exec_allow=/bin/sh"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ClientOptions options;
  options.server = daemon->address;
  Client client(options);
  v1::CreateTaskRequest request = testing::ExecRequest(
      {"/bin/sh", "-c", "i=0; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"});
  // A plain stream of such a task does break on this server...
  absl::StatusOr<v1::Task> task = client.CreateTask(request);
  ASSERT_TRUE(task.ok()) << task.status();
  v1::WatchRequest watch;
  watch.set_task(task->id());
  {
    grpc::ClientContext context;
    auto reader = client.stub().Watch(&context, watch);
    v1::Event event;
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  // ...and the client's Watch resumes it (from the start, here, for a second task).
  task = client.CreateTask(request);
  ASSERT_TRUE(task.ok()) << task.status();
  watch.set_task(task->id());
  std::vector<int64_t> sequences;
  std::string output;
  absl::Status watched = client.Watch(watch, [&](const v1::Event& event) {
    sequences.push_back(event.sequence());
    if (event.has_output()) output += event.output().data();
    return true;
  });
  ASSERT_TRUE(watched.ok()) << watched;
  for (size_t i = 0; i < sequences.size(); ++i)
    EXPECT_EQ(sequences[i], static_cast<int64_t>(i) + 1);
  std::string expected;
  for (int i = 0; i < 20; ++i) expected += "line " + std::to_string(i) + "\n";
  EXPECT_EQ(output, expected);
}

}  // namespace
}  // namespace cotask
