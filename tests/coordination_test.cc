// Coordination end to end, on the real cotaskd: dependencies, retries, named semaphores and
// events, what a PENDING task waits for, and runners (a clean close, a client process killed).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cotask/v1/scheduler.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/daemon_suite.h"
#include "tests/scheduler_client.h"
#include "tests/status_matchers.h"
#include "tests/subprocess.h"

namespace cotask {
namespace {

using ::cotask::testing::Client;
using ::cotask::testing::ContextWithDeadline;
using ::cotask::testing::ErrorInfoOf;
using ::cotask::testing::Failing;
using ::cotask::testing::Sleep;
using ::cotask::testing::StartDaemon;
using ::cotask::testing::StatusIs;
using ::cotask::testing::ToAbsl;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

int64_t Micros(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMicroseconds(t);
}

struct CoordinationFlags {
  static std::vector<std::string> Args() {
    return {"--address=127.0.0.1:0", "--semaphores=db=3,x=1,y=1"};
  }
};

class CoordinationTest : public testing::DaemonSuite<CoordinationFlags> {
 protected:
  void SetUp() override {
    DaemonSuite::SetUp();
    client_ = std::make_unique<Client>(daemon_->address);
  }

  v1::Task Get(const std::string& id) {
    v1::GetTaskRequest request;
    request.set_id(id);
    v1::Task task;
    grpc::Status status = client_->stub().GetTask(ContextWithDeadline().get(), request, &task);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return task;
  }

  std::unique_ptr<Client> client_;
};

TEST_F(CoordinationTest, AChainRunsInOrderAndAFailureFailsTheRestNamingIt) {
  const std::string a = client_->MustCreate(Sleep(30));
  v1::CreateTaskRequest request = Sleep(10);
  request.mutable_options()->add_after(a);
  const std::string b = client_->MustCreate(request);
  request = Sleep(0);
  request.mutable_options()->add_after(b);
  const std::string c = client_->MustCreate(request);
  const v1::Task last = client_->AwaitTask(c);
  ASSERT_EQ(last.state(), v1::Task::SUCCEEDED);
  EXPECT_GE(Micros(Get(b).start_time()), Micros(Get(a).end_time()));
  EXPECT_GE(Micros(last.start_time()), Micros(Get(b).end_time()));

  const std::string failing = client_->MustCreate(Failing(5));
  request = Sleep(0);
  request.mutable_options()->add_after(failing);
  const std::string second = client_->MustCreate(request);
  request.mutable_options()->set_after(0, second);
  const v1::Task third = client_->AwaitTask(client_->MustCreate(request));
  EXPECT_EQ(third.state(), v1::Task::FAILED);
  EXPECT_EQ(third.error().message(),
            absl::StrCat("dependency ", second, " ended FAILED: dependency ", failing,
                         " ended FAILED: failed on purpose"));
  EXPECT_EQ(client_->AwaitTask(second).error().code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));

  // An unknown id (like one that no task has yet: no cycle can be made) is INVALID_ARGUMENT.
  request.mutable_options()->set_after(0, "t7fffffffffffff");
  v1::Task task;
  grpc::Status status = client_->stub().CreateTask(ContextWithDeadline().get(), request, &task);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorInfoOf(status).metadata().at("field"), "options.after[0]");
}

TEST_F(CoordinationTest, RetriesBackOffAndStopAtMaxAttempts) {
  v1::CreateTaskRequest request = Failing(0);
  v1::RetryPolicy& retry = *request.mutable_options()->mutable_retry();
  retry.set_max_attempts(4);
  *retry.mutable_initial_backoff() = TimeUtil::MillisecondsToDuration(20);
  retry.set_multiplier(2);
  *retry.mutable_max_backoff() = TimeUtil::MillisecondsToDuration(50);
  const std::string id = client_->MustCreate(request);
  const v1::Task task = client_->AwaitTask(id);
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.attempt(), 4);
  std::vector<int64_t> started;
  int attempts_ended = 0;
  for (const v1::Event& event : client_->WatchTask(id)) {
    if (event.has_task_state() && event.task_state().state() == v1::Task::RUNNING) {
      started.push_back(Micros(event.time()));
    }
    if (event.has_attempt_ended()) {
      ++attempts_ended;
      EXPECT_EQ(event.attempt_ended().attempt(), attempts_ended);
      EXPECT_EQ(event.attempt_ended().error().message(), "failed on purpose");
    }
  }
  EXPECT_EQ(attempts_ended, 3);
  ASSERT_EQ(started.size(), 4u);
  // Backoffs of 20ms, 40ms, then 50ms (the max), from the event log's timestamps.
  EXPECT_GE(started[1] - started[0], 20'000);
  EXPECT_GE(started[2] - started[1], 40'000);
  EXPECT_GE(started[3] - started[2], 50'000);
  EXPECT_LT(started[3] - started[2], 80'000 + 500'000);  // capped (generously, for a busy CI)
}

TEST_F(CoordinationTest, TwoHundredTasksOverASemaphoreOfThreeNeverRunMoreThanThree) {
  v1::CreateTasksRequest batch;
  for (int i = 0; i < 200; ++i) {
    v1::CreateTaskRequest request = i % 10 == 0 ? Failing(1) : Sleep(i % 3);
    request.mutable_options()->add_acquire()->set_semaphore("db");
    *batch.add_requests() = request;
  }
  v1::CreateTasksResponse created;
  grpc::Status status = client_->stub().CreateTasks(ContextWithDeadline().get(), batch, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<std::pair<int64_t, int>> changes;  // +1 at RUNNING, -1 at the end
  for (const v1::Task& task : created.tasks()) {
    for (const v1::Event& event : client_->WatchTask(task.id())) {
      if (!event.has_task_state()) continue;
      const v1::Task::State state = event.task_state().state();
      if (state == v1::Task::RUNNING) changes.emplace_back(Micros(event.time()), +1);
      if (state >= v1::Task::SUCCEEDED) changes.emplace_back(Micros(event.time()), -1);
    }
  }
  ASSERT_EQ(changes.size(), 400u);
  std::sort(changes.begin(), changes.end());  // at the same microsecond, an end first
  int running = 0;
  int most = 0;
  for (const auto& [time, change] : changes) {
    running += change;
    most = std::max(most, running);
  }
  EXPECT_EQ(most, 3);
  v1::GetSemaphoreRequest get;
  get.set_name("db");
  v1::Semaphore semaphore;
  status = client_->stub().GetSemaphore(ContextWithDeadline().get(), get, &semaphore);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(semaphore.limit(), 3);
  EXPECT_EQ(semaphore.in_use(), 0);
}

TEST_F(CoordinationTest, TasksAcquiringTheSameTwoSemaphoresInOppositeOrdersBothFinish) {
  std::vector<std::string> ids;
  for (int round = 0; round < 5; ++round) {
    for (const auto& [first, second] : {std::pair{"x", "y"}, std::pair{"y", "x"}}) {
      v1::CreateTaskRequest request = Sleep(2);
      request.mutable_options()->add_acquire()->set_semaphore(first);
      request.mutable_options()->add_acquire()->set_semaphore(second);
      ids.push_back(client_->MustCreate(request));
    }
  }
  for (const std::string& id : ids) EXPECT_EQ(client_->AwaitTask(id).state(), v1::Task::SUCCEEDED);
}

TEST_F(CoordinationTest, AnEventReleasesEveryWaitingTask) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::CreateTaskRequest request = Sleep(0);
    request.mutable_options()->add_wait_events("release");
    ids.push_back(client_->MustCreate(request));
  }
  for (const std::string& id : ids) {
    const v1::Task task = Get(id);
    EXPECT_EQ(task.state(), v1::Task::PENDING);
    EXPECT_THAT(task.waiting().events(), ElementsAre("release"));
  }
  v1::GetEventRequest get;
  get.set_name("release");
  v1::NamedEvent event;
  ASSERT_TRUE(client_->stub().GetEvent(ContextWithDeadline().get(), get, &event).ok());
  EXPECT_FALSE(event.is_set());
  EXPECT_EQ(event.waiting_tasks(), 5);
  v1::SetEventRequest set;
  set.set_name("release");
  ASSERT_TRUE(client_->stub().SetEvent(ContextWithDeadline().get(), set, &event).ok());
  EXPECT_TRUE(event.is_set());
  for (const std::string& id : ids) EXPECT_EQ(client_->AwaitTask(id).state(), v1::Task::SUCCEEDED);

  get.set_name("no-such-event");
  grpc::Status status = client_->stub().GetEvent(ContextWithDeadline().get(), get, &event);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorInfoOf(status).reason(), "EVENT_NOT_FOUND");
}

TEST_F(CoordinationTest, GetTaskShowsWhatAPendingTaskWaitsFor) {
  const std::string blocker = client_->MustCreate(Sleep(60'000));
  v1::CreateTaskRequest request = Sleep(0);
  request.mutable_options()->add_after(blocker);
  const std::string dependent = client_->MustCreate(request);
  EXPECT_THAT(Get(dependent).waiting().tasks(), ElementsAre(blocker));

  request = Sleep(0);
  *request.mutable_options()->mutable_delay() = TimeUtil::SecondsToDuration(60);
  const v1::Task delayed = Get(client_->MustCreate(request));
  EXPECT_EQ(delayed.waiting().until(), delayed.start_after());

  // x is held by a long task: the next one waits for its permit.
  request = Sleep(60'000);
  request.mutable_options()->add_acquire()->set_semaphore("x");
  const std::string holder = client_->MustCreate(request);
  request = Sleep(0);
  request.mutable_options()->add_acquire()->set_semaphore("x");
  const std::string queued = client_->MustCreate(request);
  v1::Task task;
  for (int i = 0; i < 100 && !(task = Get(queued)).waiting().permits_size(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(task.state(), v1::Task::PENDING);
  ASSERT_EQ(task.waiting().permits_size(), 1);
  EXPECT_EQ(task.waiting().permits(0).semaphore(), "x");

  for (const std::string& id : {blocker, delayed.id(), holder, queued}) {
    v1::CancelTaskRequest cancel;
    cancel.set_id(id);
    v1::CancelTaskResponse response;
    ASSERT_TRUE(client_->stub().CancelTask(ContextWithDeadline().get(), cancel, &response).ok());
  }
  EXPECT_EQ(client_->AwaitTask(dependent).state(), v1::Task::FAILED);
  EXPECT_FALSE(client_->AwaitTask(queued).has_waiting());
}

// ---------------------------------------------------------------------------------------------
// Runners

TEST_F(CoordinationTest, ARunnerClosedByItsClientCancelsWhatItOwnsAndSaysWhat) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 30s);
  auto stream = client_->stub().OpenRunner(&context);
  v1::RunnerRequest open;
  open.mutable_open()->set_debug(true);
  (*open.mutable_open()->mutable_labels())["job"] = "nightly";
  ASSERT_TRUE(stream->Write(open));
  v1::RunnerResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_opened());
  const std::string runner = response.opened().runner();
  EXPECT_THAT(runner, StartsWith("r"));

  v1::CreateTaskRequest request = Sleep(60'000);
  request.set_runner(runner);
  const std::string owned = client_->MustCreate(request);
  request.set_detached(true);
  const std::string detached = client_->MustCreate(request);
  request = Failing(0);
  request.set_runner(runner);
  const std::string failed = client_->MustCreate(request);
  EXPECT_EQ(Get(owned).labels().at("job"), "nightly");

  // The failure happens, unread, and then slow-task reports come for the long tasks.
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.has_slow_task()) << response.DebugString();

  v1::RunnerRequest close;
  close.mutable_close()->set_reason("done for today");
  ASSERT_TRUE(stream->Write(close));
  ASSERT_TRUE(stream->WritesDone());
  std::vector<v1::RunnerResponse> rest;
  while (stream->Read(&response)) rest.push_back(response);
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(rest.empty());
  std::vector<std::string> unread;
  for (const v1::RunnerResponse& message : rest) {
    if (message.has_unread_failure()) unread.push_back(message.unread_failure().task());
  }
  EXPECT_THAT(unread, ElementsAre(failed));
  ASSERT_TRUE(rest.back().has_closed());
  const v1::RunnerClosed& closed = rest.back().closed();
  const std::string reason =
      absl::StrCat("runner ", runner, " ended: the client closed it: done for today");
  EXPECT_EQ(closed.reason(), reason);
  EXPECT_THAT(closed.cancelled_tasks(), ElementsAre(owned));
  // It waited for them to end before saying so.
  const v1::Task cancelled = Get(owned);
  EXPECT_EQ(cancelled.state(), v1::Task::CANCELLED);
  EXPECT_EQ(cancelled.cancel_message(), reason);
  EXPECT_EQ(Get(detached).state(), v1::Task::RUNNING);
  v1::CancelTaskRequest cancel;
  cancel.set_id(detached);
  v1::CancelTaskResponse cancelled_response;
  ASSERT_TRUE(
      client_->stub().CancelTask(ContextWithDeadline().get(), cancel, &cancelled_response).ok());
}

TEST_F(CoordinationTest, KillingTheRunnersClientProcessCancelsItsTasksButNotTheDetached) {
  auto helper = testing::Subprocess::Start({RUNNER_CLIENT_PATH, daemon_->address});
  ASSERT_TRUE(helper.ok()) << helper.status();
  absl::StatusOr<std::string> line = helper->WaitForStderr("tasks ", 10s);
  ASSERT_TRUE(line.ok()) << line.status() << helper->stderr_text();
  std::vector<std::string> words =
      absl::StrSplit(absl::StripAsciiWhitespace(line->substr(line->rfind("tasks "))), ' ');
  ASSERT_EQ(words.size(), 3u) << *line;
  const std::string owned = words[1];
  const std::string detached = words[2];
  EXPECT_EQ(Get(owned).state(), v1::Task::RUNNING);

  helper->Signal(SIGKILL);
  ASSERT_TRUE(helper->Wait(10s).ok());
  const v1::Task task = client_->AwaitTask(owned);
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_THAT(task.cancel_message(),
              StartsWith(absl::StrCat("runner ", task.runner(), " ended: ")));
  EXPECT_EQ(Get(detached).state(), v1::Task::RUNNING);
  EXPECT_EQ(Get(detached).labels().at("client"), "runner_client");
  v1::CancelTaskRequest cancel;
  cancel.set_id(detached);
  v1::CancelTaskResponse response;
  ASSERT_TRUE(client_->stub().CancelTask(ContextWithDeadline().get(), cancel, &response).ok());
}

TEST_F(CoordinationTest, ARunnersStreamMustOpenFirstAndThenOnlyClose) {
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    auto stream = client_->stub().OpenRunner(&context);
    v1::RunnerRequest close;
    close.mutable_close();
    ASSERT_TRUE(stream->Write(close));
    v1::RunnerResponse response;
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(ErrorInfoOf(status).metadata().at("field"), "open");
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = client_->stub().OpenRunner(&context);
  v1::RunnerRequest open;
  open.mutable_open();
  ASSERT_TRUE(stream->Write(open));
  v1::RunnerResponse response;
  ASSERT_TRUE(stream->Read(&response));
  v1::CreateTaskRequest request = Sleep(60'000);
  request.set_runner(response.opened().runner());
  const std::string owned = client_->MustCreate(request);
  ASSERT_TRUE(stream->Write(open));  // a second open breaks the protocol
  std::vector<v1::RunnerResponse> rest;
  while (stream->Read(&response)) rest.push_back(response);
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_FALSE(rest.empty());
  EXPECT_THAT(rest.back().closed().cancelled_tasks(), ElementsAre(owned));
  EXPECT_EQ(Get(owned).state(), v1::Task::CANCELLED);
}

}  // namespace
}  // namespace cotask
