// The engine's coordination: dependencies (after), retries, named events, named semaphores and
// runners.
#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "scheduler/engine/engine_fixture.h"
#include "scheduler/engine/validation.h"
#include "tests/status_matchers.h"
#include "tests/task_requests.h"

namespace cotask::engine {
namespace {

using ::cotask::testing::FailingRequest;
using ::cotask::testing::GroupRequest;
using ::cotask::testing::SleepRequest;
using ::cotask::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

int64_t Micros(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMicroseconds(t);
}

v1::CreateTaskRequest After(v1::CreateTaskRequest request, std::vector<std::string> ids) {
  for (std::string& id : ids) request.mutable_options()->add_after(std::move(id));
  return request;
}

v1::CreateTaskRequest Acquiring(v1::CreateTaskRequest request,
                                const std::vector<std::pair<std::string, int64_t>>& permits) {
  for (const auto& [name, count] : permits) {
    v1::Permit& permit = *request.mutable_options()->add_acquire();
    permit.set_semaphore(name);
    permit.set_count(count);
  }
  return request;
}

v1::CreateTaskRequest WaitingFor(v1::CreateTaskRequest request, std::vector<std::string> events) {
  for (std::string& name : events) request.mutable_options()->add_wait_events(std::move(name));
  return request;
}

v1::CreateTaskRequest Retrying(v1::CreateTaskRequest request, int max_attempts,
                               int64_t initial_backoff_ms, double multiplier = 2) {
  v1::RetryPolicy& retry = *request.mutable_options()->mutable_retry();
  retry.set_max_attempts(max_attempts);
  *retry.mutable_initial_backoff() = TimeUtil::MillisecondsToDuration(initial_backoff_ms);
  retry.set_multiplier(multiplier);
  return request;
}

class CoordinationTest : public EngineTest {
 protected:
  std::vector<v1::Event> Log(const std::string& id) {
    v1::WatchRequest target;
    target.set_task(id);
    return WatchAll(target);
  }
  // Runs the loop until the condition holds (at most 5s).
  template <class F>
  bool RunUntil(F condition) {
    for (int i = 0; i < 5000 && !condition(); ++i) RunFor(1ms);
    return condition();
  }
};

// ---------------------------------------------------------------------------------------------
// after

TEST_F(CoordinationTest, AChainRunsInOrder) {
  engine();
  const std::string a = Create(SleepRequest(20));
  const std::string b = Create(After(SleepRequest(10), {a}));
  const std::string c = Create(After(SleepRequest(0), {b}));
  // While A runs, B waits for it and C for B.
  EXPECT_THAT(Get(b).waiting().tasks(), ElementsAre(a));
  EXPECT_EQ(Get(b).state(), v1::Task::PENDING);
  v1::Task last = AwaitTask(c);
  EXPECT_EQ(last.state(), v1::Task::SUCCEEDED);
  const v1::Task first = Get(a);
  const v1::Task middle = Get(b);
  EXPECT_GE(Micros(middle.start_time()), Micros(first.end_time()));
  EXPECT_GE(Micros(last.start_time()), Micros(middle.end_time()));
  EXPECT_FALSE(middle.has_waiting());
}

TEST_F(CoordinationTest, AFailedDependencyFailsTheChainNamingIt) {
  engine();
  const std::string a = Create(FailingRequest(5));
  const std::string b = Create(After(SleepRequest(0), {a}));
  const std::string c = Create(After(SleepRequest(0), {b}));
  v1::Task last = AwaitTask(c);
  const v1::Task middle = Get(b);
  EXPECT_EQ(middle.state(), v1::Task::FAILED);
  EXPECT_EQ(middle.error().code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(middle.error().message(),
            absl::StrCat("dependency ", a, " ended FAILED: failed on purpose"));
  EXPECT_FALSE(middle.has_start_time());  // it never ran
  EXPECT_EQ(last.state(), v1::Task::FAILED);
  EXPECT_EQ(last.error().message(), absl::StrCat("dependency ", b, " ended FAILED: dependency ", a,
                                                 " ended FAILED: failed on purpose"));
}

TEST_F(CoordinationTest, ACancelledDependencyFailsItsDependents) {
  engine();
  const std::string a = Create(SleepRequest(10'000));
  const std::string b = Create(After(SleepRequest(0), {a}));
  v1::CancelTaskRequest cancel;
  cancel.set_id(a);
  ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  v1::Task task = AwaitTask(b);
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_THAT(task.error().message(), HasSubstr(absl::StrCat(a, " ended CANCELLED")));
}

TEST_F(CoordinationTest, DependenciesMustExistSoNoCycleCanBeMade) {
  engine();
  const std::string a = Create(SleepRequest(0));
  // The id the next task would get (ids are creation times): a task cannot name itself or any
  // later task, so every dependency graph is acyclic.
  const std::string future = absl::StrFormat("t%014x", absl::ToUnixMicros(absl::Now()) + 1'000'000);
  EXPECT_THAT(engine_->CreateTask(After(SleepRequest(0), {a, future})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("options.after[1]: no task ", future))));
  EXPECT_THAT(
      engine_->CreateTask(After(SleepRequest(0), {a, a})).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.after[1]: listed twice")));
  EXPECT_THAT(engine_->CreateTask(After(SleepRequest(0), {""})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.after[0]")));
  EXPECT_EQ(engine_->counts().tasks, 1u);  // nothing else was made
}

TEST_F(CoordinationTest, CancellingAWaitingTaskEndsItWithoutRunning) {
  engine();
  const std::string a = Create(SleepRequest(10'000));
  const std::string b = Create(After(SleepRequest(0), {a}));
  RunFor(5ms);
  v1::CancelTaskRequest cancel;
  cancel.set_id(b);
  ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  v1::Task task = AwaitTask(b);
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_FALSE(task.has_start_time());
  EXPECT_FALSE(task.has_waiting());
}

// ---------------------------------------------------------------------------------------------
// Retries

TEST_F(CoordinationTest, RetriesBackOffAndStopAtMaxAttempts) {
  engine();
  const std::string id = Create(Retrying(FailingRequest(0), 3, 30, 2));
  v1::Task task = AwaitTask(id);
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.attempt(), 3);
  EXPECT_EQ(task.error().message(), "failed on purpose");
  std::vector<int64_t> running;  // when each attempt started
  std::vector<v1::AttemptEnded> ended;
  for (const v1::Event& event : Log(id)) {
    if (event.has_task_state() && event.task_state().state() == v1::Task::RUNNING) {
      EXPECT_EQ(event.task_state().attempt(), static_cast<int>(running.size()) + 1);
      running.push_back(Micros(event.time()));
    }
    if (event.has_attempt_ended()) ended.push_back(event.attempt_ended());
  }
  ASSERT_EQ(running.size(), 3u);
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[0].attempt(), 1);
  EXPECT_EQ(ended[0].state(), v1::Task::FAILED);
  EXPECT_EQ(ended[0].error().message(), "failed on purpose");
  EXPECT_EQ(ended[1].attempt(), 2);
  // 30ms, then 60ms.
  EXPECT_GE(running[1] - running[0], 30'000);
  EXPECT_GE(running[2] - running[1], 60'000);
  EXPECT_GE(Micros(ended[1].retry_time()) - Micros(ended[0].retry_time()), 60'000);
}

TEST_F(CoordinationTest, TheTimeoutIsPerAttemptAndTimeoutsAreRetried) {
  engine();
  v1::CreateTaskRequest request = Retrying(SleepRequest(50), 2, 1);
  request.mutable_options()->mutable_timeout()->set_nanos(10'000'000);
  request.mutable_options()->mutable_retry()->add_retry_on(v1::Task::TIMED_OUT);
  v1::Task task = AwaitTask(Create(request));
  EXPECT_EQ(task.state(), v1::Task::TIMED_OUT);
  EXPECT_EQ(task.attempt(), 2);
}

TEST_F(CoordinationTest, OnlyTheListedOutcomesAreRetried) {
  engine();
  v1::CreateTaskRequest request = Retrying(FailingRequest(0), 5, 1);
  request.mutable_options()->mutable_retry()->add_retry_on(v1::Task::TIMED_OUT);
  v1::Task task = AwaitTask(Create(request));
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.attempt(), 1);
}

TEST_F(CoordinationTest, ACancelledTaskIsNeverRetried) {
  engine();
  const std::string running = Create(Retrying(SleepRequest(10'000), 5, 1));
  const std::string backing_off = Create(Retrying(FailingRequest(0), 5, 10'000));
  ASSERT_TRUE(RunUntil([&] { return Get(backing_off).attempt() == 2; }));
  EXPECT_EQ(Get(backing_off).state(), v1::Task::PENDING);
  EXPECT_TRUE(Get(backing_off).waiting().has_until());
  for (const std::string& id : {running, backing_off}) {
    v1::CancelTaskRequest cancel;
    cancel.set_id(id);
    ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  }
  EXPECT_EQ(AwaitTask(running).state(), v1::Task::CANCELLED);
  EXPECT_EQ(AwaitTask(running).attempt(), 1);
  EXPECT_EQ(AwaitTask(backing_off).state(), v1::Task::CANCELLED);
  EXPECT_EQ(AwaitTask(backing_off).attempt(), 2);
}

TEST_F(CoordinationTest, AFailFastGroupWaitsForTheRetriesToRunOut) {
  engine();
  ASSERT_TRUE(engine_->CreateGroup(GroupRequest("g")).ok());
  const std::string flaky = Create(Retrying(FailingRequest(0, "g"), 3, 20));
  const std::string sibling = Create(SleepRequest(10'000, "g"));
  ASSERT_TRUE(RunUntil([&] { return Get(flaky).attempt() == 2; }));
  v1::GetGroupRequest get;
  get.set_name("g");
  EXPECT_EQ(engine_->GetGroup(get)->state(), v1::Group::OPEN);
  EXPECT_EQ(Get(sibling).state(), v1::Task::RUNNING);
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  EXPECT_EQ(group.failure_count(), 1);
  EXPECT_EQ(Get(flaky).attempt(), 3);
  EXPECT_EQ(Get(sibling).state(), v1::Task::CANCELLED);
  EXPECT_GE(Micros(Get(sibling).end_time()), Micros(Get(flaky).end_time()));
}

TEST_F(CoordinationTest, RetryPolicyIsValidated) {
  engine();
  auto status_of = [&](auto edit) {
    v1::CreateTaskRequest request = Retrying(FailingRequest(0), 2, 1);
    edit(*request.mutable_options()->mutable_retry());
    return engine_->CreateTask(request).status();
  };
  EXPECT_THAT(
      status_of([](v1::RetryPolicy& r) { r.set_max_attempts(101); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.retry.max_attempts")));
  EXPECT_THAT(status_of([](v1::RetryPolicy& r) { r.set_multiplier(0.5); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.retry.multiplier")));
  EXPECT_THAT(status_of([](v1::RetryPolicy& r) { r.mutable_max_backoff()->set_nanos(1); }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("options.retry.max_backoff: less than initial_backoff")));
  EXPECT_THAT(status_of([](v1::RetryPolicy& r) { r.add_retry_on(v1::Task::CANCELLED); }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("options.retry.retry_on[0]: only FAILED and TIMED_OUT")));
}

// ---------------------------------------------------------------------------------------------
// Named events

TEST_F(CoordinationTest, SettingAnEventReleasesEveryWaitingTask) {
  engine();
  std::vector<std::string> ids(3);
  for (std::string& id : ids) id = Create(WaitingFor(SleepRequest(0), {"go"}));
  RunFor(10ms);
  for (const std::string& id : ids) {
    EXPECT_EQ(Get(id).state(), v1::Task::PENDING);
    EXPECT_THAT(Get(id).waiting().events(), ElementsAre("go"));
  }
  v1::GetEventRequest get;
  get.set_name("go");
  EXPECT_EQ(engine_->GetEvent(get)->waiting_tasks(), 3);
  EXPECT_FALSE(engine_->GetEvent(get)->is_set());
  v1::SetEventRequest set;
  set.set_name("go");
  absl::StatusOr<v1::NamedEvent> event = engine_->SetEvent(set);
  ASSERT_TRUE(event.ok());
  EXPECT_TRUE(event->is_set());
  for (const std::string& id : ids) EXPECT_EQ(AwaitTask(id).state(), v1::Task::SUCCEEDED);
  // Set, it lets new tasks through at once; cleared, it holds them again.
  EXPECT_EQ(AwaitTask(Create(WaitingFor(SleepRequest(0), {"go"}))).state(), v1::Task::SUCCEEDED);
  v1::ClearEventRequest clear;
  clear.set_name("go");
  EXPECT_FALSE(engine_->ClearEvent(clear)->is_set());
  const std::string held = Create(WaitingFor(SleepRequest(0), {"go"}));
  RunFor(10ms);
  EXPECT_EQ(Get(held).state(), v1::Task::PENDING);
}

TEST_F(CoordinationTest, ATaskWaitsForAllItsEvents) {
  engine();
  const std::string id = Create(WaitingFor(SleepRequest(0), {"a", "b"}));
  v1::SetEventRequest set;
  set.set_name("b");
  ASSERT_TRUE(engine_->SetEvent(set).ok());
  RunFor(10ms);
  EXPECT_EQ(Get(id).state(), v1::Task::PENDING);
  EXPECT_THAT(Get(id).waiting().events(), ElementsAre("a"));
  set.set_name("a");
  ASSERT_TRUE(engine_->SetEvent(set).ok());
  EXPECT_EQ(AwaitTask(id).state(), v1::Task::SUCCEEDED);
}

TEST_F(CoordinationTest, EventNamesAndBoundsAreChecked) {
  EngineOptions options;
  options.max_events = 2;
  engine(options);
  v1::GetEventRequest get;
  get.set_name("never");
  EXPECT_THAT(engine_->GetEvent(get).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("never")));
  v1::SetEventRequest set;
  set.set_name("bad name");
  EXPECT_THAT(engine_->SetEvent(set).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name: a name may only")));
  Create(WaitingFor(SleepRequest(0), {"one", "two"}));
  set.set_name("three");
  EXPECT_THAT(engine_->SetEvent(set).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_events")));
  EXPECT_THAT(engine_->CreateTask(WaitingFor(SleepRequest(0), {"four"})).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_events=2")));
  set.set_name("one");  // exists: fine
  EXPECT_TRUE(engine_->SetEvent(set).ok());
}

// ---------------------------------------------------------------------------------------------
// Named semaphores

EngineOptions WithSemaphores(std::vector<std::pair<std::string, int64_t>> semaphores) {
  EngineOptions options;
  options.semaphores = std::move(semaphores);
  return options;
}

TEST_F(CoordinationTest, NeverMoreRunningThanTheSemaphoresLimit) {
  engine(WithSemaphores({{"db", 3}}));
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    // Some fail and some time out: the permits come back whatever the ending.
    v1::CreateTaskRequest request =
        i % 5 == 0 ? FailingRequest(2) : SleepRequest(i % 7 == 0 ? 50 : 2);
    if (i % 7 == 0) request.mutable_options()->mutable_timeout()->set_nanos(3'000'000);
    ids.push_back(Create(Acquiring(request, {{"db", 1}})));
  }
  RunFor(1ms);
  v1::GetSemaphoreRequest get;
  get.set_name("db");
  absl::StatusOr<v1::Semaphore> semaphore = engine_->GetSemaphore(get);
  ASSERT_TRUE(semaphore.ok());
  EXPECT_EQ(semaphore->limit(), 3);
  EXPECT_EQ(semaphore->in_use(), 3);
  EXPECT_EQ(semaphore->holders_size(), 3);
  EXPECT_GT(semaphore->waiting_tasks(), 0);
  EXPECT_LE(semaphore->waiting_tasks(), 27);
  EXPECT_EQ(Get(ids.back()).waiting().permits(0).semaphore(), "db");
  // From the event logs: +1 at RUNNING, -1 at the end; an end before a start at the same time.
  std::vector<std::pair<int64_t, int>> changes;
  for (const std::string& id : ids) {
    AwaitTask(id);
    for (const v1::Event& event : Log(id)) {
      if (!event.has_task_state()) continue;
      const v1::Task::State state = event.task_state().state();
      if (state == v1::Task::RUNNING) changes.emplace_back(Micros(event.time()), +1);
      if (state >= v1::Task::SUCCEEDED) changes.emplace_back(Micros(event.time()), -1);
    }
  }
  std::sort(changes.begin(), changes.end());
  int running = 0;
  int most = 0;
  for (const auto& [time, change] : changes) {
    running += change;
    most = std::max(most, running);
  }
  EXPECT_EQ(most, 3);
  EXPECT_EQ(running, 0);
  semaphore = engine_->GetSemaphore(get);
  EXPECT_EQ(semaphore->in_use(), 0);
  EXPECT_EQ(semaphore->waiting_tasks(), 0);
}

TEST_F(CoordinationTest, TasksWantingTheSameTwoSemaphoresInEitherOrderBothFinish) {
  engine(WithSemaphores({{"x", 1}, {"y", 1}}));
  const std::string a = Create(Acquiring(SleepRequest(10), {{"x", 1}, {"y", 1}}));
  const std::string b = Create(Acquiring(SleepRequest(10), {{"y", 1}, {"x", 1}}));
  EXPECT_EQ(AwaitTask(a).state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(AwaitTask(b).state(), v1::Task::SUCCEEDED);
  EXPECT_GE(Micros(Get(b).start_time()), Micros(Get(a).end_time()));
}

TEST_F(CoordinationTest, CancellingAHolderOrAWaiterGivesItsPermitsBack) {
  engine(WithSemaphores({{"lock", 1}}));
  const std::string holder = Create(Acquiring(SleepRequest(10'000), {{"lock", 1}}));
  const std::string waiter = Create(Acquiring(SleepRequest(10'000), {{"lock", 1}}));
  const std::string next = Create(Acquiring(SleepRequest(0), {{"lock", 1}}));
  RunFor(5ms);
  for (const std::string& id : {waiter, holder}) {
    v1::CancelTaskRequest cancel;
    cancel.set_id(id);
    ASSERT_TRUE(engine_->CancelTask(cancel).ok());
  }
  EXPECT_EQ(AwaitTask(next).state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(Get(waiter).state(), v1::Task::CANCELLED);
  EXPECT_FALSE(Get(waiter).has_start_time());
}

TEST_F(CoordinationTest, SemaphoresAreDeclaredAndPermitsChecked) {
  engine(WithSemaphores({{"db", 2}}));
  EXPECT_THAT(engine_->CreateTask(Acquiring(SleepRequest(0), {{"nope", 1}})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("options.acquire[0].semaphore: no semaphore named nope")));
  EXPECT_THAT(engine_->CreateTask(Acquiring(SleepRequest(0), {{"db", 3}})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("options.acquire[0].count: 3 permits; semaphore db has 2")));
  EXPECT_THAT(engine_->CreateTask(Acquiring(SleepRequest(0), {{"db", 1}, {"db", 1}})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.acquire[1]")));
  v1::CreateSemaphoreRequest create;
  create.set_name("gpu");
  create.set_limit(1);
  EXPECT_EQ(engine_->CreateSemaphore(create)->limit(), 1);
  EXPECT_TRUE(engine_->CreateSemaphore(create).ok());
  create.set_limit(2);
  EXPECT_THAT(engine_->CreateSemaphore(create).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
  create.set_limit(0);
  EXPECT_THAT(engine_->CreateSemaphore(create).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
  EXPECT_EQ(AwaitTask(Create(Acquiring(SleepRequest(0), {{"gpu", 0}}))).state(),
            v1::Task::SUCCEEDED);
  v1::GetSemaphoreRequest get;
  get.set_name("none");
  EXPECT_THAT(engine_->GetSemaphore(get).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ParseSemaphoresTest, ParsesAndNamesTheBadEntry) {
  auto parsed = ParseSemaphores("db=3,gpu=1");
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(*parsed, ElementsAre(std::pair<std::string, int64_t>{"db", 3},
                                   std::pair<std::string, int64_t>{"gpu", 1}));
  EXPECT_THAT(ParseSemaphores("").value(), IsEmpty());
  EXPECT_THAT(ParseSemaphores("db=3,gpu=0").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpu=0")));
  EXPECT_THAT(ParseSemaphores("db").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseSemaphores("db=1,db=2").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a second time")));
}

// ---------------------------------------------------------------------------------------------
// Runners

TEST_F(CoordinationTest, ARunnersTasksInheritItsContextAndAreCancelledAtItsEnd) {
  engine();
  v1::OpenRunnerRequest open;
  (*open.mutable_labels())["team"] = "infra";
  (*open.mutable_labels())["env"] = "prod";
  absl::StatusOr<v1::RunnerResponse> opened = engine_->OpenRunner(open);
  ASSERT_TRUE(opened.ok()) << opened.status();
  const std::string runner = opened->opened().runner();
  v1::CreateTaskRequest owned = SleepRequest(10'000);
  owned.set_runner(runner);
  (*owned.mutable_labels())["env"] = "dev";  // its own wins
  const std::string task = Create(owned);
  owned.set_detached(true);
  const std::string detached = Create(owned);
  v1::CreateGroupRequest group = GroupRequest("rg");
  group.set_runner(runner);
  ASSERT_TRUE(engine_->CreateGroup(group).ok());
  const std::string child = Create(SleepRequest(10'000, "rg"));
  const std::string done = Create([&] {
    v1::CreateTaskRequest r = SleepRequest(0);
    r.set_runner(runner);
    return r;
  }());
  AwaitTask(done);
  EXPECT_THAT(Get(task).labels(), ::testing::UnorderedElementsAre(::testing::Pair("team", "infra"),
                                                                  ::testing::Pair("env", "dev")));
  EXPECT_EQ(Get(task).runner(), runner);

  auto closed = loop_.RunUntilComplete(engine_->CloseRunner(runner, "the client closed it"));
  ASSERT_TRUE(closed.ok());
  ASSERT_EQ(closed->size(), 1u);
  const v1::RunnerClosed& report = closed->back().closed();
  EXPECT_EQ(report.reason(), absl::StrCat("runner ", runner, " ended: the client closed it"));
  EXPECT_THAT(report.cancelled_tasks(), ElementsAre(task));
  EXPECT_THAT(report.cancelled_groups(), ElementsAre("rg"));
  // It waited for them to end.
  EXPECT_EQ(Get(task).state(), v1::Task::CANCELLED);
  EXPECT_EQ(Get(task).cancel_message(), report.reason());
  EXPECT_EQ(Get(child).state(), v1::Task::CANCELLED);
  EXPECT_EQ(Get(detached).state(), v1::Task::RUNNING);
  EXPECT_EQ(engine_->counts().runners, 0u);
  // The runner is gone: nothing more joins it.
  EXPECT_THAT(engine_->CreateTask(owned).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runner: no open runner")));
}

TEST_F(CoordinationTest, ARunnersExecTasksGetItsEnvironment) {
  EngineOptions options;
  options.exec_allow = {"/usr/bin/env"};
  engine(options);
  v1::OpenRunnerRequest open;
  (*open.mutable_env())["GREETING"] = "hello";
  (*open.mutable_env())["WHO"] = "runner";
  const std::string runner = engine_->OpenRunner(open)->opened().runner();
  v1::CreateTaskRequest request = cotask::testing::ExecRequest({"/usr/bin/env"});
  (*request.mutable_spec()->mutable_exec()->mutable_env())["WHO"] = "task";
  request.set_runner(runner);
  v1::Task task = AwaitTask(Create(request));
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  EXPECT_THAT(task.result().output(), HasSubstr("GREETING=hello\n"));
  EXPECT_THAT(task.result().output(), HasSubstr("WHO=task\n"));
  loop_.RunUntilComplete(engine_->CloseRunner(runner, "done")).IgnoreError();
}

TEST_F(CoordinationTest, ADebugRunnerReportsSlowTasksAndUnreadFailures) {
  engine();
  v1::OpenRunnerRequest open;
  open.set_debug(true);
  open.mutable_slow_task_duration()->set_nanos(20'000'000);
  const std::string runner = engine_->OpenRunner(open)->opened().runner();
  auto in_runner = [&](v1::CreateTaskRequest request) {
    request.set_runner(runner);
    return Create(request);
  };
  const std::string slow = in_runner(SleepRequest(60));
  in_runner(SleepRequest(0));  // fast: no report
  const std::string unread = in_runner(FailingRequest(0));
  const std::string read = in_runner(FailingRequest(0));
  AwaitTask(read);  // a watch to its end reads the outcome
  AwaitTask(slow);
  auto reports = loop_.RunUntilComplete(engine_->NextRunnerReports(runner));
  ASSERT_TRUE(reports.ok());
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ(reports->at(0).slow_task().task(), slow);
  EXPECT_GE(TimeUtil::DurationToMilliseconds(reports->at(0).slow_task().running()), 20);

  auto closed = loop_.RunUntilComplete(engine_->CloseRunner(runner, "bye"));
  ASSERT_TRUE(closed.ok());
  std::vector<std::string> unread_reported;
  for (const v1::RunnerResponse& message : *closed) {
    if (message.has_unread_failure()) unread_reported.push_back(message.unread_failure().task());
  }
  EXPECT_THAT(unread_reported, ElementsAre(unread));
  EXPECT_TRUE(closed->back().has_closed());
}

TEST_F(CoordinationTest, RunnerRequestsAreChecked) {
  EngineOptions options;
  options.max_runners = 1;
  engine(options);
  v1::OpenRunnerRequest open;
  (*open.mutable_env())["PATH"] = "/tmp";
  EXPECT_THAT(engine_->OpenRunner(open).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("open.env[\"PATH\"]")));
  open.clear_env();
  (*open.mutable_labels())["bad key!"] = "x";
  EXPECT_THAT(engine_->OpenRunner(open).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("open.labels")));
  open.clear_labels();
  ASSERT_TRUE(engine_->OpenRunner(open).ok());
  EXPECT_THAT(engine_->OpenRunner(open).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_runners")));
  v1::CreateTaskRequest request = SleepRequest(0);
  request.set_runner("r00000000000000");
  EXPECT_THAT(engine_->CreateTask(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runner: no open runner")));
}

}  // namespace
}  // namespace cotask::engine
