#include "scheduler/engine/engine.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "scheduler/engine/engine_fixture.h"
#include "scheduler/engine/errors.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"
#include "tests/task_requests.h"

namespace cotask::engine {
namespace {

using google::protobuf::util::TimeUtil;

using ::cotask::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

using ::cotask::testing::ExecRequest;
using ::cotask::testing::FailingRequest;
using ::cotask::testing::GroupRequest;
using ::cotask::testing::SleepRequest;

TEST_F(EngineTest, SleepTaskGoesThroughEveryStateAndSucceedsWithItsResult) {
  v1::CreateTaskRequest request = SleepRequest(5);
  request.mutable_spec()->mutable_sleep()->set_result("done");
  absl::StatusOr<v1::Task> created = engine().CreateTask(request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), v1::Task::PENDING);
  v1::WatchRequest target;
  target.set_task(created->id());
  std::vector<v1::Task::State> states;
  std::vector<int64_t> sequences;
  for (const v1::Event& event : WatchAll(target)) {
    states.push_back(event.task_state().state());
    sequences.push_back(event.sequence());
  }
  EXPECT_THAT(states, ElementsAre(v1::Task::PENDING, v1::Task::QUEUED, v1::Task::RUNNING,
                                  v1::Task::SUCCEEDED));
  EXPECT_THAT(sequences, ElementsAre(1, 2, 3, 4));
  v1::Task task = AwaitTask(created->id());
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(task.result().output(), "done");
  EXPECT_FALSE(task.has_error());
}

// A sleep task without a result to give succeeds with an empty one: in its view, and in the
// end event of a log watched as it runs.
TEST_F(EngineTest, ASleepTasksSuccessWithoutResultBytesHasAnEmptyResult) {
  auto created = engine().CreateTask(SleepRequest(5));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(created->has_result());
  v1::WatchRequest target;
  target.set_task(created->id());
  const std::vector<v1::Event> events = WatchAll(target);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().task_state().state(), v1::Task::SUCCEEDED);
  EXPECT_TRUE(events.back().task_state().has_result());
  const v1::Task task = Get(created->id());
  EXPECT_TRUE(task.has_result());
  EXPECT_EQ(task.result().ByteSizeLong(), 0u);
}

TEST_F(EngineTest, SleepTaskWithAnErrorFailsWithIt) {
  auto created = engine().CreateTask(FailingRequest(0));
  ASSERT_TRUE(created.ok());
  v1::Task task = AwaitTask(created->id());
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.error().code(), 13);
  EXPECT_EQ(task.error().message(), "failed on purpose");
}

TEST_F(EngineTest, TimeoutEndsTheTaskTimedOut) {
  v1::CreateTaskRequest request = SleepRequest(10'000);
  request.mutable_options()->mutable_timeout()->set_nanos(20'000'000);
  auto created = engine().CreateTask(request);
  ASSERT_TRUE(created.ok());
  v1::Task task = AwaitTask(created->id());
  EXPECT_EQ(task.state(), v1::Task::TIMED_OUT);
  EXPECT_EQ(task.error().code(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(task.error().message(), HasSubstr("20ms"));
}

TEST_F(EngineTest, CancellingAnEndedTaskChangesNothingAndSaysSo) {
  auto created = engine().CreateTask(SleepRequest(0));
  ASSERT_TRUE(created.ok());
  AwaitTask(created->id());
  v1::CancelTaskRequest cancel;
  cancel.set_id(created->id());
  auto response = engine_->CancelTask(cancel);
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->cancelled());
  EXPECT_EQ(response->task().state(), v1::Task::SUCCEEDED);
}

TEST_F(EngineTest, TaskCancelledBeforeItStartsNeverRuns) {
  auto created = engine().CreateTask(SleepRequest(0));
  ASSERT_TRUE(created.ok());
  v1::CancelTaskRequest cancel;
  cancel.set_id(created->id());
  cancel.set_message("changed my mind");
  auto response = engine_->CancelTask(cancel);
  ASSERT_TRUE(response.ok());
  EXPECT_TRUE(response->cancelled());
  EXPECT_EQ(response->task().state(), v1::Task::CANCELLED);
  EXPECT_EQ(response->task().error().message(), "cancelled: changed my mind");
  EXPECT_FALSE(response->task().has_start_time());
}

TEST_F(EngineTest, FirstFailureCancelsSiblingsAndTheGroupListsIt) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g")).ok());
  auto slow1 = engine_->CreateTask(SleepRequest(10'000, "g"));
  auto slow2 = engine_->CreateTask(SleepRequest(10'000, "g"));
  auto bad = engine_->CreateTask(FailingRequest(10, "g"));
  ASSERT_TRUE(slow1.ok() && slow2.ok() && bad.ok());
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  ASSERT_EQ(group.failures_size(), 1);
  EXPECT_EQ(group.failures(0).task(), bad->id());
  EXPECT_EQ(group.failures(0).state(), v1::Task::FAILED);
  EXPECT_THAT(group.error().message(), HasSubstr(bad->id()));
  EXPECT_THAT(group.error().message(), HasSubstr("failed on purpose"));
  EXPECT_EQ(AwaitTask(slow1->id()).state(), v1::Task::CANCELLED);
  EXPECT_EQ(AwaitTask(slow2->id()).state(), v1::Task::CANCELLED);
  // The failure closed the group.
  EXPECT_THAT(engine_->CreateTask(SleepRequest(0, "g")).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a child failed")));
}

TEST_F(EngineTest, PolicyAllLetsEveryChildFinish) {
  v1::CreateGroupRequest request = GroupRequest("g");
  request.set_policy(v1::Group::ALL);
  ASSERT_TRUE(engine().CreateGroup(request).ok());
  auto slow = engine_->CreateTask(SleepRequest(50, "g"));
  auto bad = engine_->CreateTask(FailingRequest(0, "g"));
  auto bad2 = engine_->CreateTask(FailingRequest(10, "g"));
  ASSERT_TRUE(engine_->CloseGroup(Close("g")).ok());
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  ASSERT_EQ(group.failures_size(), 2);
  EXPECT_EQ(group.failures(0).task(), bad->id());
  EXPECT_EQ(group.failures(1).task(), bad2->id());
  EXPECT_EQ(AwaitTask(slow->id()).state(), v1::Task::SUCCEEDED);
}

TEST_F(EngineTest, AGroupKeepsItsFirstHundredFailuresAndCountsThemAll) {
  v1::CreateGroupRequest request = GroupRequest("many");
  request.set_policy(v1::Group::ALL);
  ASSERT_TRUE(engine().CreateGroup(request).ok());
  v1::CreateTasksRequest batch;
  for (int i = 0; i < 150; ++i) *batch.add_requests() = FailingRequest(0, "many");
  auto created = CreateTasks(*engine_, batch);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(engine_->CloseGroup(Close("many")).ok());
  v1::Group group = AwaitGroup("many");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  EXPECT_EQ(group.failure_count(), 150);
  EXPECT_EQ(group.failures_size(), 100);
  EXPECT_EQ(group.failures(0).task(), created->tasks(0).id());
  EXPECT_THAT(group.error().message(), HasSubstr("group many: 150 failures ("));
  EXPECT_THAT(group.error().message(), HasSubstr("; and 140 more)"));
}

TEST_F(EngineTest, ClosedGroupEndsWhenItsLastChildEnds) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g")).ok());
  auto a = engine_->CreateTask(SleepRequest(5, "g"));
  auto b = engine_->CreateTask(SleepRequest(30, "g"));
  auto closed = engine_->CloseGroup(Close("g"));
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->state(), v1::Group::CLOSED);
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::SUCCEEDED);
  EXPECT_EQ(group.children(), 2);
  EXPECT_EQ(group.active_children(), 0);
  EXPECT_EQ(AwaitTask(b->id()).state(), v1::Task::SUCCEEDED);
  EXPECT_GE(
      google::protobuf::util::TimeUtil::TimestampToNanoseconds(group.end_time()),
      google::protobuf::util::TimeUtil::TimestampToNanoseconds(AwaitTask(b->id()).end_time()));
}

// A child names its group in every view, and its own log's state changes name it, while the
// group's record is kept and after it has been forgotten.
TEST_F(EngineTest, AChildKeepsItsGroupsNameAfterTheGroupIsForgotten) {
  EngineOptions options;
  options.retain_finished_groups = 0;
  ASSERT_TRUE(engine(options).CreateGroup(GroupRequest("g")).ok());
  auto child = engine_->CreateTask(SleepRequest(0, "g"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->group(), "g");
  EXPECT_EQ(AwaitTask(child->id()).group(), "g");
  v1::WatchRequest own;
  own.set_task(child->id());
  for (const v1::Event& event : WatchAll(own)) EXPECT_EQ(event.group(), "g") << event.DebugString();
  ASSERT_TRUE(engine_->CloseGroup(Close("g")).ok());
  EXPECT_EQ(AwaitGroup("g").state(), v1::Group::SUCCEEDED);
  // Ended and not retained: the next create forgets it.
  ASSERT_TRUE(engine_->CreateTask(SleepRequest(0)).ok());
  v1::GetGroupRequest get;
  get.set_name("g");
  EXPECT_THAT(engine_->GetGroup(get).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Get(child->id()).group(), "g");
  v1::ListTasksRequest list;
  const absl::StatusOr<v1::ListTasksResponse> listed = engine_->ListTasks(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_GE(listed->tasks_size(), 1);
  EXPECT_EQ(listed->tasks(0).group(), "g");
  const std::vector<v1::Event> events = WatchAll(own);
  ASSERT_FALSE(events.empty());
  for (const v1::Event& event : events) EXPECT_EQ(event.group(), "g") << event.DebugString();
}

TEST_F(EngineTest, AGroupSaysWhereItsLogGoesOnFromSoThatAWatchNeedNotReplayIt) {
  absl::StatusOr<v1::Group> created = engine().CreateGroup(GroupRequest("g"));
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->last_sequence(), 1);  // OPEN
  auto first = engine_->CreateTask(SleepRequest(0, "g"));
  AwaitTask(first->id());
  auto second = engine_->CreateTask(SleepRequest(20, "g"));
  absl::StatusOr<v1::Group> closed = engine_->CloseGroup(Close("g"));
  ASSERT_TRUE(closed.ok());
  v1::WatchRequest target;
  target.set_group("g");
  target.set_no_follow(true);
  const std::vector<v1::Event> so_far = WatchAll(target);
  ASSERT_FALSE(so_far.empty());
  EXPECT_EQ(closed->last_sequence(), so_far.back().sequence());
  EXPECT_EQ(so_far.back().group_state().state(), v1::Group::CLOSED);

  // From last_sequence + 1: what came after the close, ending with the group's end.
  target.set_no_follow(false);
  target.set_from_sequence(closed->last_sequence() + 1);
  const std::vector<v1::Event> after = WatchAll(target);
  ASSERT_EQ(after.size(), 2);
  EXPECT_EQ(after[0].sequence(), closed->last_sequence() + 1);
  EXPECT_EQ(after[0].task(), second->id());
  EXPECT_EQ(after[0].task_state().state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(after[1].group_state().state(), v1::Group::SUCCEEDED);
  v1::GetGroupRequest get;
  get.set_name("g");
  EXPECT_EQ(engine_->GetGroup(get)->last_sequence(), after[1].sequence());
  v1::ListGroupsRequest list;
  EXPECT_EQ(engine_->ListGroups(list)->groups(0).last_sequence(), after[1].sequence());
  // A group that has ended says so with the sequence of its last event.
  v1::CancelGroupRequest cancel;
  cancel.set_name("g");
  EXPECT_EQ(engine_->CancelGroup(cancel)->group().last_sequence(), after[1].sequence());
}

TEST_F(EngineTest, OpenGroupDoesNotEndWhenItsChildrenHave) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g")).ok());
  auto a = engine_->CreateTask(SleepRequest(0, "g"));
  AwaitTask(a->id());
  v1::GetGroupRequest get;
  get.set_name("g");
  EXPECT_EQ(engine_->GetGroup(get)->state(), v1::Group::OPEN);
  // An empty group that is closed ends at once.
  ASSERT_TRUE(engine_->CreateGroup(GroupRequest("empty")).ok());
  EXPECT_EQ(engine_->CloseGroup(Close("empty"))->state(), v1::Group::SUCCEEDED);
}

TEST_F(EngineTest, CancelGroupCancelsChildrenButNotShieldedOnes) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g")).ok());
  auto plain = engine_->CreateTask(SleepRequest(10'000, "g"));
  v1::CreateTaskRequest shielded_request = SleepRequest(40, "g");
  shielded_request.mutable_options()->set_shield(true);
  auto shielded = engine_->CreateTask(shielded_request);
  RunFor(5ms);
  v1::CancelGroupRequest cancel;
  cancel.set_name("g");
  cancel.set_message("enough");
  auto response = engine_->CancelGroup(cancel);
  ASSERT_TRUE(response.ok());
  EXPECT_TRUE(response->cancelled());
  EXPECT_EQ(response->group().state(), v1::Group::CLOSED);  // waits for the shielded child
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::CANCELLED);
  EXPECT_THAT(group.error().message(), HasSubstr("enough"));
  EXPECT_EQ(AwaitTask(plain->id()).state(), v1::Task::CANCELLED);
  EXPECT_EQ(AwaitTask(shielded->id()).state(), v1::Task::SUCCEEDED);
  EXPECT_FALSE(engine_->CancelGroup(cancel)->cancelled());
}

TEST_F(EngineTest, NestedGroupFailureIsItsParentsChildFailure) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("parent")).ok());
  ASSERT_TRUE(engine_->CreateGroup(GroupRequest("child", "parent")).ok());
  auto sibling = engine_->CreateTask(SleepRequest(10'000, "parent"));
  auto cousin = engine_->CreateTask(SleepRequest(10'000, "child"));
  auto bad = engine_->CreateTask(FailingRequest(5, "child"));
  v1::Group parent = AwaitGroup("parent");
  EXPECT_EQ(parent.state(), v1::Group::FAILED);
  ASSERT_EQ(parent.failures_size(), 1);
  EXPECT_EQ(parent.failures(0).group(), "child");
  EXPECT_THAT(parent.error().message(), HasSubstr(bad->id()));
  EXPECT_EQ(AwaitGroup("child").state(), v1::Group::FAILED);
  EXPECT_EQ(AwaitTask(sibling->id()).state(), v1::Task::CANCELLED);
  EXPECT_EQ(AwaitTask(cousin->id()).state(), v1::Task::CANCELLED);
}

TEST_F(EngineTest, GroupsNestAtMost32Deep) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g1")).ok());
  for (int depth = 2; depth <= 32; ++depth) {
    ASSERT_TRUE(
        engine_->CreateGroup(GroupRequest(absl::StrCat("g", depth), absl::StrCat("g", depth - 1)))
            .ok());
  }
  EXPECT_THAT(engine_->CreateGroup(GroupRequest("g33", "g32")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parent: groups nest")));
  // A failure deep down fails every ancestor.
  ASSERT_TRUE(engine_->CreateTask(FailingRequest(0, "g32")).ok());
  EXPECT_EQ(AwaitGroup("g1").state(), v1::Group::FAILED);
}

TEST_F(EngineTest, CancellingAParentCancelsItsChildGroups) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("parent")).ok());
  ASSERT_TRUE(engine_->CreateGroup(GroupRequest("child", "parent")).ok());
  auto task = engine_->CreateTask(SleepRequest(10'000, "child"));
  v1::CancelGroupRequest cancel;
  cancel.set_name("parent");
  ASSERT_TRUE(engine_->CancelGroup(cancel).ok());
  EXPECT_EQ(AwaitGroup("parent").state(), v1::Group::CANCELLED);
  EXPECT_EQ(AwaitGroup("child").state(), v1::Group::CANCELLED);
  EXPECT_EQ(AwaitTask(task->id()).state(), v1::Task::CANCELLED);
}

TEST_F(EngineTest, GroupDeadlineCancelsWhatIsLeftAndTimesOut) {
  v1::CreateGroupRequest request = GroupRequest("g");
  request.mutable_timeout()->set_nanos(30'000'000);
  ASSERT_TRUE(engine().CreateGroup(request).ok());
  auto quick = engine_->CreateTask(SleepRequest(0, "g"));
  auto slow = engine_->CreateTask(SleepRequest(10'000, "g"));
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::TIMED_OUT);
  EXPECT_EQ(group.error().code(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(AwaitTask(quick->id()).state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(AwaitTask(slow->id()).state(), v1::Task::CANCELLED);
}

TEST_F(EngineTest, TimedOutChildFailsAFailFastGroup) {
  ASSERT_TRUE(engine().CreateGroup(GroupRequest("g")).ok());
  v1::CreateTaskRequest request = SleepRequest(10'000, "g");
  request.mutable_options()->mutable_timeout()->set_nanos(10'000'000);
  auto timed = engine_->CreateTask(request);
  auto other = engine_->CreateTask(SleepRequest(10'000, "g"));
  v1::Group group = AwaitGroup("g");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  ASSERT_EQ(group.failures_size(), 1);
  EXPECT_EQ(group.failures(0).state(), v1::Task::TIMED_OUT);
  EXPECT_EQ(AwaitTask(other->id()).state(), v1::Task::CANCELLED);
}

TEST_F(EngineTest, SameRequestIdReturnsTheSameTask) {
  v1::CreateTaskRequest request = SleepRequest(0);
  request.set_request_id("r-1");
  auto first = engine().CreateTask(request);
  auto second = engine_->CreateTask(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id(), second->id());
  v1::CreateTasksRequest batch;
  *batch.add_requests() = request;
  *batch.add_requests() = request;
  auto third = CreateTasks(*engine_, batch);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->tasks(0).id(), first->id());
  EXPECT_EQ(third->tasks(1).id(), first->id());
  EXPECT_EQ(engine_->counts().tasks, 1u);
  // A new id twice in one batch: the first item makes the task, the second gets it.
  v1::CreateTaskRequest again = SleepRequest(0);
  again.set_request_id("r-2");
  v1::CreateTasksRequest repeated;
  *repeated.add_requests() = again;
  *repeated.add_requests() = request;
  *repeated.add_requests() = SleepRequest(0);
  *repeated.add_requests() = again;
  auto fourth = CreateTasks(*engine_, repeated);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  ASSERT_EQ(fourth->tasks_size(), 4);
  EXPECT_EQ(fourth->tasks(0).request_id(), "r-2");
  EXPECT_EQ(fourth->tasks(1).id(), first->id());
  EXPECT_NE(fourth->tasks(2).id(), fourth->tasks(0).id());
  EXPECT_EQ(fourth->tasks(3).id(), fourth->tasks(0).id());
  EXPECT_EQ(engine_->counts().tasks, 3u);
}

// Once its task has ended and been forgotten, a request id is free: it makes a new task.
TEST_F(EngineTest, AForgottenTasksRequestIdMakesANewTask) {
  EngineOptions options;
  options.retain_finished_tasks = 0;
  v1::CreateTaskRequest request = SleepRequest(0);
  request.set_request_id("r-1");
  auto first = engine(options).CreateTask(request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(AwaitTask(first->id()).state(), v1::Task::SUCCEEDED);
  ASSERT_TRUE(engine_->CreateTask(SleepRequest(0)).ok());  // forgets the first
  v1::GetTaskRequest get;
  get.set_id(first->id());
  EXPECT_THAT(engine_->GetTask(get).status(), StatusIs(absl::StatusCode::kNotFound));
  auto second = engine_->CreateTask(request);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->id(), first->id());
  EXPECT_EQ(second->request_id(), "r-1");
  // The id now names the second task, not the forgotten one.
  auto third = engine_->CreateTask(request);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->id(), second->id());
}

TEST_F(EngineTest, BatchIsAllOrNothingAndNamesTheBadItem) {
  v1::CreateTasksRequest batch;
  *batch.add_requests() = SleepRequest(0);
  *batch.add_requests() = SleepRequest(-1000);
  auto created = CreateTasks(engine(), batch);
  EXPECT_THAT(created.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("requests[1].spec.sleep.duration")));
  EXPECT_EQ(ErrorReason(created.status()), "INVALID_FIELD");
  EXPECT_EQ(engine_->counts().tasks, 0u);
}

TEST_F(EngineTest, BadInputNamesTheFieldAndTheBound) {
  EngineOptions options;
  options.max_batch_size = 2;
  options.max_payload_bytes = 8;
  options.max_labels = 1;
  options.max_pending_tasks = 2;
  Engine& e = engine(options);
  EXPECT_THAT(e.CreateTask(v1::CreateTaskRequest()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec: required")));
  v1::CreateTaskRequest big = SleepRequest(0);
  big.mutable_spec()->mutable_sleep()->set_result("123456789");
  EXPECT_THAT(e.CreateTask(big).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.sleep.result")));
  v1::CreateTaskRequest labels = SleepRequest(0);
  (*labels.mutable_labels())["a"] = "1";
  (*labels.mutable_labels())["b"] = "2";
  EXPECT_THAT(e.CreateTask(labels).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels: 2 labels")));
  v1::CreateTaskRequest bad_key = SleepRequest(0);
  (*bad_key.mutable_labels())["no spaces"] = "1";
  EXPECT_THAT(e.CreateTask(bad_key).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels[\"no spaces\"]")));
  EXPECT_THAT(e.CreateTask(SleepRequest(0, "nope")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group: no group")));
  v1::CreateTaskRequest exec = ExecRequest({});
  EXPECT_THAT(e.CreateTask(exec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.exec.argv")));
  exec = ExecRequest({"/bin/true"});
  EXPECT_THAT(e.CreateTask(exec).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--exec_allow")));
  v1::CreateTasksRequest batch;
  for (int i = 0; i < 3; ++i) *batch.add_requests() = SleepRequest(0);
  EXPECT_THAT(CreateTasks(e, batch).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("requests: 3 tasks")));
  ASSERT_TRUE(e.CreateTask(SleepRequest(10'000)).ok());
  ASSERT_TRUE(e.CreateTask(SleepRequest(10'000)).ok());
  auto full = e.CreateTask(SleepRequest(0));
  EXPECT_THAT(full.status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_pending_tasks=2")));
  EXPECT_EQ(ErrorReason(full.status()), "TOO_MANY_PENDING_TASKS");
  EXPECT_EQ(e.counts().tasks, 2u);
}

TEST_F(EngineTest, OnlyATaskIdFindsTheTaskNotTextThatLooksLikeOne) {
  Engine& e = engine();
  const std::string id = Create(SleepRequest(10'000));
  ASSERT_EQ(id.size(), 15u);
  EXPECT_EQ(Get(id).id(), id);
  const std::string upper = absl::StrCat("t", absl::AsciiStrToUpper(id.substr(1)));
  const std::string next = absl::StrCat(id.substr(0, 14), id[14] == 'f' ? "0" : "f");
  for (const std::string& other :
       {upper, absl::StrCat("T", id.substr(1)), id.substr(0, 14), absl::StrCat(id, "0"),
        absl::StrCat("u", id.substr(1)), absl::StrCat(id.substr(0, 14), "g"), next}) {
    if (other == id) continue;  // (an id of all digits has no upper case)
    v1::GetTaskRequest get;
    get.set_id(other);
    const absl::Status status = e.GetTask(get).status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("no task"))) << other;
    EXPECT_EQ(ErrorReason(status), "TASK_NOT_FOUND") << other;
  }
}

TEST_F(EngineTest, ListTasksPagesWithTokensTiedToTheQuery) {
  Engine& e = engine();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::CreateTaskRequest request = SleepRequest(10'000);
    (*request.mutable_labels())["n"] = i % 2 == 0 ? "even" : "odd";
    ids.push_back(e.CreateTask(request)->id());
  }
  v1::ListTasksRequest list;
  list.set_page_size(2);
  std::vector<std::string> seen;
  while (true) {
    auto page = e.ListTasks(list);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const v1::Task& t : page->tasks()) seen.push_back(t.id());
    if (page->next_page_token().empty()) break;
    list.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(seen, ids);
  v1::ListTasksRequest evens;
  (*evens.mutable_labels())["n"] = "even";
  evens.set_page_size(2);
  auto first = e.ListTasks(evens);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->tasks_size(), 2);
  v1::ListTasksRequest other = evens;
  (*other.mutable_labels())["n"] = "odd";
  other.set_page_token(first->next_page_token());
  EXPECT_THAT(e.ListTasks(other).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  // A token made by hand, resuming after what is no task id, is refused (not read as one).
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(first->next_page_token(), &raw));
  ASSERT_EQ(raw.substr(16), first->tasks(1).id());  // (the query's fingerprint, then the id)
  v1::ListTasksRequest forged = evens;
  forged.set_page_token(absl::WebSafeBase64Escape(raw.substr(0, 16) + "not-an-id"));
  EXPECT_THAT(e.ListTasks(forged).status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                                     "page_token: not a token this server made"));
  forged.set_page_token(absl::WebSafeBase64Escape(raw.substr(0, 16) + ids[0]));
  auto resumed = e.ListTasks(forged);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(resumed->tasks_size(), 2);
  EXPECT_EQ(resumed->tasks(0).id(), ids[2]);
  v1::ListTasksRequest negative;
  negative.set_page_size(-1);
  EXPECT_THAT(e.ListTasks(negative).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
}

TEST_F(EngineTest, BoundedLogMarksWhatFellOut) {
  EngineOptions options;
  options.max_log_bytes = 1;  // keeps only the newest event
  auto created = engine(options).CreateTask(SleepRequest(0));
  ASSERT_TRUE(created.ok());
  RunFor(20ms);  // the task ends before anyone reads its log
  v1::WatchRequest target;
  target.set_task(created->id());
  std::vector<v1::Event> events = WatchAll(target);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].truncated().first_sequence(), 1);
  EXPECT_EQ(events[0].truncated().last_sequence(), 3);
  EXPECT_EQ(events[1].sequence(), 4);
  EXPECT_EQ(events[1].task_state().state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(engine_->counts().log_events_dropped, 3);
}

TEST_F(EngineTest, WatchPastTheEndOfAnEndedLogEndsAtOnce) {
  auto created = engine().CreateTask(SleepRequest(0));
  ASSERT_TRUE(created.ok());
  AwaitTask(created->id());
  v1::WatchRequest target;
  target.set_task(created->id());
  auto batch = loop_.RunUntilComplete(engine_->NextEvents(target, 1000, 1 << 20));
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->ended);
  EXPECT_TRUE(batch->events.empty());
  target.set_task("t-unknown");
  EXPECT_THAT(loop_.RunUntilComplete(engine_->NextEvents(target, 0, 1 << 20)).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no task t-unknown")));
}

// A task's first event (PENDING) is made when its log is first used, not stored at creation:
// a reader still finds it first, at sequence 1 and the task's create time, before what follows.
TEST_F(EngineTest, ATaskLogStartsWithItsPendingEventAtItsCreateTime) {
  v1::CreateTaskRequest request = SleepRequest(0);
  request.mutable_options()->mutable_delay()->set_seconds(3600);
  auto created = engine().CreateTask(request);
  ASSERT_TRUE(created.ok()) << created.status();
  v1::WatchRequest target;
  target.set_task(created->id());
  target.set_no_follow(true);
  auto batch = loop_.RunUntilComplete(engine_->NextEvents(target, 0, 1 << 20));
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->events.size(), 1u);
  const v1::Event& pending = batch->events[0];
  EXPECT_EQ(pending.sequence(), 1);
  EXPECT_EQ(pending.task(), created->id());
  EXPECT_EQ(pending.task_state().state(), v1::Task::PENDING);
  EXPECT_EQ(pending.task_state().attempt(), 1);
  EXPECT_EQ(pending.time(), created->create_time());

  // Another task, cancelled before anything read its log: PENDING still comes first.
  auto other = engine_->CreateTask(request);
  ASSERT_TRUE(other.ok()) << other.status();
  v1::CancelTaskRequest cancel;
  cancel.set_id(other->id());
  ASSERT_TRUE(engine_->CancelTask(cancel)->cancelled());
  target.set_task(other->id());
  batch = loop_.RunUntilComplete(engine_->NextEvents(target, 0, 1 << 20));
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->events.size(), 2u);
  EXPECT_EQ(batch->events[0].sequence(), 1);
  EXPECT_EQ(batch->events[0].task_state().state(), v1::Task::PENDING);
  EXPECT_EQ(batch->events[0].time(), other->create_time());
  EXPECT_EQ(batch->events[1].sequence(), 2);
  EXPECT_EQ(batch->events[1].task_state().state(), v1::Task::CANCELLED);
  EXPECT_TRUE(batch->ended);
}

// A sleep task that ends before anything reads its log holds no log (its standard events are
// made from its times when first read): a reader finds the same four events, numbered 1 to 4,
// at its create, start and end times, the last one ending the log; a result with bytes is kept
// as it was, not made.
TEST_F(EngineTest, AnUnreadTaskLogIsMadeFromTheTaskWhenRead) {
  Engine& e = engine();
  auto created = e.CreateTask(SleepRequest(0));
  ASSERT_TRUE(created.ok()) << created.status();
  RunFor(20ms);
  v1::GetTaskRequest get;
  get.set_id(created->id());
  const v1::Task ended = *e.GetTask(get);
  ASSERT_EQ(ended.state(), v1::Task::SUCCEEDED);
  EXPECT_TRUE(ended.has_result());  // empty, and there
  EXPECT_EQ(ended.result().ByteSizeLong(), 0u);
  EXPECT_EQ(e.counts().log_bytes, 0);

  v1::WatchRequest target;
  target.set_task(created->id());
  auto batch = loop_.RunUntilComplete(e.NextEvents(target, 0, 1 << 20));
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->events.size(), 4u);
  const v1::Task::State states[] = {v1::Task::PENDING, v1::Task::QUEUED, v1::Task::RUNNING,
                                    v1::Task::SUCCEEDED};
  const google::protobuf::Timestamp times[] = {ended.create_time(), ended.start_time(),
                                               ended.start_time(), ended.end_time()};
  for (int i = 0; i < 4; ++i) {
    const v1::Event& event = batch->events[i];
    EXPECT_EQ(event.sequence(), i + 1);
    EXPECT_EQ(event.task(), created->id());
    EXPECT_EQ(event.task_state().state(), states[i]);
    EXPECT_EQ(event.task_state().attempt(), 1);
    EXPECT_EQ(event.time(), times[i]);
  }
  EXPECT_TRUE(batch->events[3].task_state().has_result());
  EXPECT_EQ(batch->events[3].task_state().result().ByteSizeLong(), 0u);
  EXPECT_TRUE(batch->ended);
  EXPECT_EQ(batch->next_sequence, 5);
  EXPECT_GT(e.counts().log_bytes, 0);

  v1::CreateTaskRequest with_result = SleepRequest(0);
  with_result.mutable_spec()->mutable_sleep()->set_result("bytes");
  auto other = e.CreateTask(with_result);
  ASSERT_TRUE(other.ok()) << other.status();
  RunFor(20ms);
  target.set_task(other->id());
  batch = loop_.RunUntilComplete(e.NextEvents(target, 0, 1 << 20));
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->events.size(), 4u);
  EXPECT_EQ(batch->events[2].task_state().state(), v1::Task::RUNNING);
  EXPECT_EQ(batch->events[3].sequence(), 4);
  EXPECT_EQ(batch->events[3].task_state().result().output(), "bytes");
  EXPECT_TRUE(batch->ended);
}

TEST_F(EngineTest, ListGroupsFiltersByParentAndStateAndPages) {
  Engine& e = engine();
  ASSERT_TRUE(e.CreateGroup(GroupRequest("a")).ok());
  ASSERT_TRUE(e.CreateGroup(GroupRequest("a.1", "a")).ok());
  ASSERT_TRUE(e.CreateGroup(GroupRequest("a.2", "a")).ok());
  ASSERT_TRUE(e.CreateGroup(GroupRequest("b")).ok());
  ASSERT_TRUE(e.CloseGroup(Close("a.2")).ok());  // empty: ends SUCCEEDED at once
  v1::ListGroupsRequest children;
  children.set_parent("a");
  children.set_page_size(1);
  std::vector<std::string> names;
  while (true) {
    auto page = e.ListGroups(children);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const v1::Group& g : page->groups()) names.push_back(g.name());
    if (page->next_page_token().empty()) break;
    children.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(names, ElementsAre("a.1", "a.2"));
  v1::ListGroupsRequest open;
  open.set_state(v1::Group::OPEN);
  auto page = e.ListGroups(open);
  ASSERT_TRUE(page.ok());
  names.clear();
  for (const v1::Group& g : page->groups()) names.push_back(g.name());
  EXPECT_THAT(names, ElementsAre("a", "a.1", "b"));
  v1::GetGroupRequest get;
  get.set_name("a");
  EXPECT_EQ(e.GetGroup(get)->children(), 2);
  EXPECT_EQ(e.GetGroup(get)->active_children(), 1);
}

TEST_F(EngineTest, RunReturnsTheEndedTaskWithItsResult) {
  v1::CreateTaskRequest request = SleepRequest(5);
  request.mutable_spec()->mutable_sleep()->set_result("ran");
  auto task = loop_.RunUntilComplete(engine().Run(request));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(task->result().output(), "ran");
  // The task as GetTask shows it: its id and times with it.
  EXPECT_EQ(task->id().size(), kTaskIdSize);
  EXPECT_GT(task->end_time().seconds(), 0);
  EXPECT_EQ(task->SerializeAsString(), Get(task->id()).SerializeAsString());
  // A failure is a task that FAILED, not a failed call.
  task = loop_.RunUntilComplete(engine_->Run(FailingRequest(0)));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->state(), v1::Task::FAILED);
  EXPECT_EQ(task->SerializeAsString(), Get(task->id()).SerializeAsString());
  EXPECT_THAT(loop_.RunUntilComplete(engine_->Run(SleepRequest(-1))).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.sleep.duration")));
}

TEST_F(EngineTest, ARunCallEndedEarlyCancelsItsTaskUnlessDetached) {
  for (bool detached : {false, true}) {
    SCOPED_TRACE(detached);
    v1::CreateTaskRequest request = SleepRequest(60'000);
    request.set_detached(detached);
    auto run = loop_.CreateTask(engine().Run(request));
    loop_.CallLater(20ms, [&] { run.Cancel("the client went away"); });
    EXPECT_THAT(loop_.RunUntilComplete(run).status(),
                StatusIs(absl::StatusCode::kCancelled, "the client went away"));
    v1::ListTasksRequest list;
    v1::Task task = engine_->ListTasks(list)->tasks(detached ? 1 : 0);
    if (detached) {
      EXPECT_EQ(task.state(), v1::Task::RUNNING);
    } else {
      task = AwaitTask(task.id());
      EXPECT_EQ(task.state(), v1::Task::CANCELLED);
      EXPECT_THAT(task.cancel_message(), HasSubstr("the Run call that created it ended"));
    }
  }
}

v1::WaitTasksRequest WaitFor(const std::vector<std::string>& ids,
                             v1::WaitTasksRequest::ReturnWhen when) {
  v1::WaitTasksRequest request;
  for (const std::string& id : ids) request.add_ids(id);
  request.set_return_when(when);
  return request;
}

std::vector<std::string> IdsOf(const google::protobuf::RepeatedPtrField<v1::Task>& tasks) {
  std::vector<std::string> ids;
  for (const v1::Task& task : tasks) ids.push_back(task.id());
  return ids;
}

TEST_F(EngineTest, WaitTasksReturnsAsAsyncioWaitDoes) {
  Engine& e = engine();
  const std::string quick = e.CreateTask(SleepRequest(10))->id();
  const std::string failing = e.CreateTask(FailingRequest(30))->id();
  const std::string slow = e.CreateTask(SleepRequest(60))->id();
  const std::vector<std::string> all = {quick, failing, slow};

  auto first =
      loop_.RunUntilComplete(e.WaitTasks(WaitFor(all, v1::WaitTasksRequest::FIRST_COMPLETED)));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(IdsOf(first->done()), ElementsAre(quick));
  EXPECT_THAT(IdsOf(first->pending()), ElementsAre(failing, slow));

  auto exception =
      loop_.RunUntilComplete(e.WaitTasks(WaitFor(all, v1::WaitTasksRequest::FIRST_EXCEPTION)));
  ASSERT_TRUE(exception.ok());
  EXPECT_THAT(IdsOf(exception->done()), ElementsAre(quick, failing));
  EXPECT_THAT(IdsOf(exception->pending()), ElementsAre(slow));

  auto everything =
      loop_.RunUntilComplete(e.WaitTasks(WaitFor(all, v1::WaitTasksRequest::ALL_COMPLETED)));
  ASSERT_TRUE(everything.ok());
  EXPECT_THAT(IdsOf(everything->done()), ElementsAre(quick, failing, slow));
  EXPECT_TRUE(everything->pending().empty());
  // An ended task as GetTask shows it, its times with it.
  for (const v1::Task& done : everything->done()) {
    EXPECT_EQ(done.SerializeAsString(), Get(done.id()).SerializeAsString()) << done.DebugString();
    EXPECT_GT(done.end_time().seconds(), 0);
    EXPECT_GE(TimeUtil::TimestampToNanoseconds(done.end_time()),
              TimeUtil::TimestampToNanoseconds(done.start_time()));
    EXPECT_GE(TimeUtil::TimestampToNanoseconds(done.start_time()),
              TimeUtil::TimestampToNanoseconds(done.create_time()));
  }
}

TEST_F(EngineTest, WaitTasksTimeoutAnswersWithWhatHasEndedAndCancelsNothing) {
  Engine& e = engine();
  const std::string slow = e.CreateTask(SleepRequest(60'000))->id();
  v1::WaitTasksRequest request = WaitFor({slow}, v1::WaitTasksRequest::ALL_COMPLETED);
  request.mutable_timeout()->set_nanos(20'000'000);
  auto waited = loop_.RunUntilComplete(e.WaitTasks(request));
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_TRUE(waited->done().empty());
  ASSERT_EQ(waited->pending_size(), 1);
  EXPECT_EQ(waited->pending(0).state(), v1::Task::RUNNING);
  EXPECT_THAT(loop_.RunUntilComplete(e.WaitTasks(v1::WaitTasksRequest())).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ids: required")));
  EXPECT_THAT(loop_
                  .RunUntilComplete(
                      e.WaitTasks(WaitFor({slow, "t-nope"}, v1::WaitTasksRequest::ALL_COMPLETED)))
                  .status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no task t-nope")));
}

// Delayed tasks share one timer: created in any order, each starts at its own time, each shows
// its start as waiting.until until then, and a cancelled one leaves the others' starts alone.
TEST_F(EngineTest, DelayedTasksStartInTheOrderOfTheirStartTimesWhateverTheirCreationOrder) {
  std::vector<std::string> ids;
  for (int delay_ms : {90, 30, 60, 45}) {
    v1::CreateTaskRequest request = SleepRequest(0);
    request.mutable_options()->mutable_delay()->set_nanos(delay_ms * 1'000'000);
    auto created = engine().CreateTask(request);
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_EQ(created->waiting().until(), created->start_after());
    ids.push_back(created->id());
  }
  v1::CancelTaskRequest cancel;
  cancel.set_id(ids[1]);  // the earliest
  ASSERT_TRUE(engine_->CancelTask(cancel)->cancelled());
  v1::ListTasksRequest list;
  auto listed = engine_->ListTasks(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tasks_size(), 4);
  EXPECT_FALSE(listed->tasks(1).has_waiting());  // CANCELLED: it waits for nothing
  EXPECT_EQ(listed->tasks(3).waiting().until(), listed->tasks(3).start_after());
  int64_t previous_start = 0;
  for (int i : {3, 2, 0}) {  // 45, 60, 90 ms
    const v1::Task task = AwaitTask(ids[i]);
    EXPECT_EQ(task.state(), v1::Task::SUCCEEDED) << i;
    EXPECT_FALSE(task.has_waiting()) << i;
    const int64_t start = TimeUtil::TimestampToNanoseconds(task.start_time());
    EXPECT_GE(start, TimeUtil::TimestampToNanoseconds(task.start_after())) << i;
    EXPECT_GT(start, previous_start) << i;
    previous_start = start;
  }
  EXPECT_EQ(AwaitTask(ids[1]).state(), v1::Task::CANCELLED);
  EXPECT_FALSE(AwaitTask(ids[1]).has_start_time());
}

TEST_F(EngineTest, ADelayedTaskStaysPendingUntilItsStartAndCanBeCancelledMeanwhile) {
  v1::CreateTaskRequest request = SleepRequest(0);
  request.mutable_options()->mutable_delay()->set_nanos(80'000'000);
  auto delayed = engine().CreateTask(request);
  ASSERT_TRUE(delayed.ok()) << delayed.status();
  EXPECT_EQ(TimeUtil::TimestampToNanoseconds(delayed->start_after()) -
                TimeUtil::TimestampToNanoseconds(delayed->create_time()),
            80'000'000);
  RunFor(20ms);
  v1::GetTaskRequest get;
  get.set_id(delayed->id());
  EXPECT_EQ(engine_->GetTask(get)->state(), v1::Task::PENDING);
  v1::Task task = AwaitTask(delayed->id());
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  EXPECT_GE(TimeUtil::TimestampToNanoseconds(task.start_time()),
            TimeUtil::TimestampToNanoseconds(task.start_after()));

  v1::CreateTaskRequest later = SleepRequest(0);
  *later.mutable_options()->mutable_start_at() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()) + 3'600'000'000'000);
  auto waiting = engine_->CreateTask(later);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  RunFor(5ms);
  v1::CancelTaskRequest cancel;
  cancel.set_id(waiting->id());
  ASSERT_TRUE(engine_->CancelTask(cancel)->cancelled());
  task = AwaitTask(waiting->id());
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_FALSE(task.has_start_time());

  v1::CreateTaskRequest both = later;
  both.mutable_options()->mutable_delay()->set_seconds(1);
  EXPECT_THAT(engine_->CreateTask(both).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.start_at: give")));
  v1::CreateTaskRequest negative = SleepRequest(0);
  negative.mutable_options()->mutable_delay()->set_seconds(-1);
  EXPECT_THAT(engine_->CreateTask(negative).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options.delay")));
}

TEST_F(EngineTest, DrainRefusesNewWorkAndCancelsWhatOutlivesIt) {
  Engine& e = engine();
  ASSERT_TRUE(e.CreateGroup(GroupRequest("g")).ok());
  auto quick = e.CreateTask(SleepRequest(5));
  auto slow = e.CreateTask(SleepRequest(10'000, "g"));
  ASSERT_TRUE(loop_.RunUntilComplete(e.Drain(50ms)).ok());
  EXPECT_THAT(e.CreateTask(SleepRequest(0)).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_EQ(AwaitTask(quick->id()).state(), v1::Task::SUCCEEDED);
  v1::Task cancelled = AwaitTask(slow->id());
  EXPECT_EQ(cancelled.state(), v1::Task::CANCELLED);
  EXPECT_THAT(cancelled.cancel_message(), HasSubstr("shutting down"));
  EXPECT_EQ(AwaitGroup("g").state(), v1::Group::CANCELLED);
}

TEST_F(EngineTest, ExecTaskStreamsItsOutputThenEndsWithItsExitCode) {
  EngineOptions options;
  options.exec_allow = {"/bin/sh"};
  v1::CreateTaskRequest request =
      ExecRequest({"/bin/sh", "-c", "echo \"$GREETING\"; echo oops >&2; exit 7"});
  (*request.mutable_spec()->mutable_exec()->mutable_env())["GREETING"] = "hello";
  auto created = engine(options).CreateTask(request);
  ASSERT_TRUE(created.ok()) << created.status();
  v1::WatchRequest target;
  target.set_task(created->id());
  std::string out, err;
  for (const v1::Event& event : WatchAll(target)) {
    if (event.has_output()) {
      (event.output().stream() == v1::Output::STDOUT ? out : err) += event.output().data();
    }
  }
  EXPECT_EQ(out, "hello\n");
  EXPECT_EQ(err, "oops\n");
  v1::Task task = AwaitTask(created->id());
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.result().exit_code(), 7);
  EXPECT_EQ(task.error().message(), "/bin/sh exited with code 7");
}

TEST_F(EngineTest, CancelledExecTaskIsKilledAndEndsCancelled) {
  EngineOptions options;
  options.exec_allow = {"/bin/sleep"};
  options.exec_kill_grace = 100ms;
  auto created = engine(options).CreateTask(ExecRequest({"/bin/sleep", "600"}));
  ASSERT_TRUE(created.ok());
  RunFor(50ms);
  v1::CancelTaskRequest cancel;
  cancel.set_id(created->id());
  ASSERT_TRUE(engine_->CancelTask(cancel)->cancelled());
  EXPECT_EQ(AwaitTask(created->id()).state(), v1::Task::CANCELLED);
}

}  // namespace
}  // namespace cotask::engine

namespace cotask::engine {
namespace {

// Ids are "t" and the creation time in microseconds, 14 hex digits: unique, and in creation
// order as strings (ListTasks pages by them).
TEST_F(EngineTest, TaskIdsAreTheirCreationMicrosecondsInHexAndSortByCreation) {
  engine();
  const std::vector<std::string> ids = {Create(SleepRequest(0)), Create(SleepRequest(0)),
                                        Create(SleepRequest(0))};
  for (const std::string& id : ids) {
    ASSERT_EQ(id.size(), 15u) << id;
    EXPECT_EQ(id[0], 't');
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 1), std::string::npos) << id;
    const int64_t micros = std::stoll(id.substr(1), nullptr, 16);
    const int64_t created = TimeUtil::TimestampToMicroseconds(Get(id).create_time());
    // (Taken as the task is made, just before its create_time; ids made within one
    // microsecond step on by one.)
    EXPECT_NEAR(static_cast<double>(micros), static_cast<double>(created), 1000) << id;
  }
  EXPECT_LT(ids[0], ids[1]);
  EXPECT_LT(ids[1], ids[2]);
}

}  // namespace
}  // namespace cotask::engine
