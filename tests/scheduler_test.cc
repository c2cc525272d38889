// cotask.v1.Scheduler end to end: the real cotaskd on 127.0.0.1 port 0, driven with the
// generated C++ stub. Covers the rules of DESIGN.md section 3 for tasks and groups, exec
// tasks (output, exit codes, killing the whole process tree on cancel), Watch replay, request
// ids, every bad input's exact code and ErrorInfo, and the drain on SIGTERM.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cotask/v1/scheduler.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/scheduler_client.h"
#include "tests/status_matchers.h"
#include "tests/task_requests.h"

namespace cotask {
namespace {

using ::cotask::testing::ContextWithDeadline;
using ::cotask::testing::StartDaemon;
using ::cotask::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;
using testing::Client;
using testing::ErrorInfoOf;
using testing::Exec;
using testing::Failing;
using testing::Sleep;
using testing::ToAbsl;

// A directory of shell scripts that exec tasks run. When the tests run as root, cotaskd runs
// exec tasks as nobody: the directory and scripts are readable and executable by everyone.
class Scripts {
 public:
  Scripts() {
    char pattern[] = "/tmp/cotask-scripts-XXXXXX";
    dir_ = mkdtemp(pattern);
    chmod(dir_.c_str(), 0755);
  }
  ~Scripts() { std::system(absl::StrCat("rm -rf ", dir_).c_str()); }
  std::string Add(const std::string& name, const std::string& body) {
    std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << "#!/bin/sh\n" << body;
    chmod(path.c_str(), 0755);
    return path;
  }

 private:
  std::string dir_;
};

// One cotaskd for the whole suite, with small bounds so that the bad-input cases are cheap.
class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scripts_ = new Scripts();
    // Prints the pid of a background sleeper (a grandchild of cotaskd), then waits on it.
    spawner_ = scripts_->Add("spawner.sh", "sleep 1000 &\necho $!\nwait\n");
    counter_ = scripts_->Add("counter.sh",
                             "i=1\nwhile [ $i -le 2000 ]; do\n  echo line $i\n"
                             "  [ $((i % 500)) -eq 0 ] && echo err $i >&2\n"
                             "  i=$((i + 1))\ndone\n");
    exiter_ = scripts_->Add("exiter.sh", "echo bye\nexit 3\n");
    // Leaves a sleeper behind in a session of its own, out of the reach of a group kill.
    escaper_ =
        scripts_->Add("escaper.sh", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &\necho $!\n");
    auto daemon = StartDaemon(
        {"--address=127.0.0.1:0", "--max_batch_size=10", "--max_payload_bytes=1024",
         "--max_labels=4", "--max_label_key_bytes=16", "--max_label_value_bytes=32",
         "--max_pending_tasks=100", "--exec_kill_grace=2s",
         absl::StrCat("--exec_allow=", spawner_, ",", counter_, ",", exiter_, ",", escaper_)});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = new testing::Daemon(std::move(*daemon));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
    delete scripts_;
  }

  Client client_{daemon_->address};
  static inline testing::Daemon* daemon_ = nullptr;
  static inline Scripts* scripts_ = nullptr;
  static inline std::string spawner_, counter_, exiter_, escaper_;
};

TEST_F(SchedulerTest, SleepTaskStreamsItsStatesAndResult) {
  v1::CreateTaskRequest request = Sleep(10);
  request.mutable_spec()->mutable_sleep()->set_result("the answer");
  (*request.mutable_labels())["team"] = "core";
  const std::string id = client_.MustCreate(request);
  std::vector<v1::Task::State> states;
  for (const v1::Event& event : client_.WatchTask(id)) {
    EXPECT_EQ(event.task(), id);
    states.push_back(event.task_state().state());
  }
  EXPECT_THAT(states, ElementsAre(v1::Task::PENDING, v1::Task::QUEUED, v1::Task::RUNNING,
                                  v1::Task::SUCCEEDED));
  v1::Task task = client_.AwaitTask(id);
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(task.result().output(), "the answer");
  EXPECT_EQ(task.labels().at("team"), "core");
  EXPECT_TRUE(task.has_start_time() && task.has_end_time());
}

TEST_F(SchedulerTest, FirstFailureCancelsSiblingsAndTheGroupErrorListsIt) {
  client_.MustCreateGroup("ff");
  const std::string slow1 = client_.MustCreate(Sleep(60'000, "ff"));
  const std::string slow2 = client_.MustCreate(Sleep(60'000, "ff"));
  const std::string bad = client_.MustCreate(Failing(20, "ff"));
  v1::Group group = client_.AwaitGroup("ff");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  ASSERT_EQ(group.failures_size(), 1);
  EXPECT_EQ(group.failures(0).task(), bad);
  EXPECT_EQ(group.error().code(), 13);
  EXPECT_THAT(group.error().message(), HasSubstr(absl::StrCat("task ", bad, " FAILED")));
  EXPECT_THAT(group.error().message(), HasSubstr("failed on purpose"));
  EXPECT_EQ(client_.AwaitTask(slow1).state(), v1::Task::CANCELLED);
  EXPECT_EQ(client_.AwaitTask(slow2).state(), v1::Task::CANCELLED);
}

TEST_F(SchedulerTest, PolicyAllLetsEveryChildFinish) {
  v1::CreateGroupRequest request;
  request.set_name("all");
  request.set_policy(v1::Group::ALL);
  client_.MustCreateGroup(request);
  const std::string ok = client_.MustCreate(Sleep(100, "all"));
  const std::string bad = client_.MustCreate(Failing(0, "all"));
  client_.CloseGroup("all");
  v1::Group group = client_.AwaitGroup("all");
  EXPECT_EQ(group.state(), v1::Group::FAILED);
  ASSERT_EQ(group.failures_size(), 1);
  EXPECT_EQ(group.failures(0).task(), bad);
  EXPECT_EQ(client_.AwaitTask(ok).state(), v1::Task::SUCCEEDED);
}

TEST_F(SchedulerTest, ClosedGroupEndsWhenItsLastChildDoes) {
  client_.MustCreateGroup("closing");
  client_.MustCreate(Sleep(10, "closing"));
  const std::string last = client_.MustCreate(Sleep(150, "closing"));
  EXPECT_EQ(client_.CloseGroup("closing").state(), v1::Group::CLOSED);
  v1::WatchRequest watch;
  watch.set_group("closing");
  std::vector<v1::Event> events = client_.Watch(watch);
  ASSERT_FALSE(events.empty());
  // The group's last event is its end, right after its last child's.
  EXPECT_EQ(events.back().group_state().state(), v1::Group::SUCCEEDED);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2].task(), last);
  EXPECT_EQ(events[events.size() - 2].task_state().state(), v1::Task::SUCCEEDED);
  // A closed group takes no new tasks.
  EXPECT_THAT(client_.Create(Sleep(0, "closing")).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("takes no new tasks")));
}

TEST_F(SchedulerTest, CancelGroupCancelsChildrenExceptShieldedOnes) {
  client_.MustCreateGroup("cancelled");
  const std::string plain = client_.MustCreate(Sleep(60'000, "cancelled"));
  v1::CreateTaskRequest shielded = Sleep(300, "cancelled");
  shielded.mutable_options()->set_shield(true);
  const std::string shielded_id = client_.MustCreate(shielded);
  v1::CancelGroupRequest request;
  request.set_name("cancelled");
  request.set_message("no longer needed");
  v1::CancelGroupResponse response;
  ASSERT_TRUE(client_.stub().CancelGroup(ContextWithDeadline().get(), request, &response).ok());
  EXPECT_TRUE(response.cancelled());
  v1::Group group = client_.AwaitGroup("cancelled");
  EXPECT_EQ(group.state(), v1::Group::CANCELLED);
  EXPECT_EQ(group.cancel_message(), "no longer needed");
  v1::Task cancelled = client_.AwaitTask(plain);
  EXPECT_EQ(cancelled.state(), v1::Task::CANCELLED);
  EXPECT_THAT(cancelled.cancel_message(), HasSubstr("no longer needed"));
  EXPECT_EQ(client_.AwaitTask(shielded_id).state(), v1::Task::SUCCEEDED);
  // Cancelling it again changes nothing, and says so.
  ASSERT_TRUE(client_.stub().CancelGroup(ContextWithDeadline().get(), request, &response).ok());
  EXPECT_FALSE(response.cancelled());
}

TEST_F(SchedulerTest, NestedGroupFailureFailsTheParent) {
  client_.MustCreateGroup("outer");
  client_.MustCreateGroup("inner", "outer");
  const std::string sibling = client_.MustCreate(Sleep(60'000, "outer"));
  const std::string bad = client_.MustCreate(Failing(10, "inner"));
  v1::Group outer = client_.AwaitGroup("outer");
  EXPECT_EQ(outer.state(), v1::Group::FAILED);
  ASSERT_EQ(outer.failures_size(), 1);
  EXPECT_EQ(outer.failures(0).group(), "inner");
  EXPECT_THAT(outer.error().message(), HasSubstr(bad));
  EXPECT_EQ(client_.AwaitGroup("inner").state(), v1::Group::FAILED);
  EXPECT_EQ(client_.AwaitTask(sibling).state(), v1::Task::CANCELLED);
}

TEST_F(SchedulerTest, GroupDeadlineCancelsWhatIsLeftAndTimesOut) {
  v1::CreateGroupRequest request;
  request.set_name("deadline");
  request.mutable_timeout()->set_nanos(200'000'000);
  client_.MustCreateGroup(request);
  const std::string quick = client_.MustCreate(Sleep(0, "deadline"));
  const std::string slow = client_.MustCreate(Sleep(60'000, "deadline"));
  v1::Group group = client_.AwaitGroup("deadline");
  EXPECT_EQ(group.state(), v1::Group::TIMED_OUT);
  EXPECT_EQ(group.error().code(), static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED));
  EXPECT_EQ(client_.AwaitTask(quick).state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(client_.AwaitTask(slow).state(), v1::Task::CANCELLED);
}

TEST_F(SchedulerTest, TaskTimeoutEndsItTimedOut) {
  v1::CreateTaskRequest request = Sleep(60'000);
  request.mutable_options()->mutable_timeout()->set_nanos(50'000'000);
  v1::Task task = client_.AwaitTask(client_.MustCreate(request));
  EXPECT_EQ(task.state(), v1::Task::TIMED_OUT);
  EXPECT_EQ(task.error().code(), static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED));
}

TEST_F(SchedulerTest, CancelTaskCancelsOnceAndThenSaysItHasEnded) {
  const std::string id = client_.MustCreate(Sleep(60'000));
  v1::CancelTaskRequest request;
  request.set_id(id);
  request.set_message("stop it");
  v1::CancelTaskResponse response;
  ASSERT_TRUE(client_.stub().CancelTask(ContextWithDeadline().get(), request, &response).ok());
  EXPECT_TRUE(response.cancelled());
  v1::Task task = client_.AwaitTask(id);
  EXPECT_EQ(task.state(), v1::Task::CANCELLED);
  EXPECT_EQ(task.cancel_message(), "stop it");
  EXPECT_EQ(task.error().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  ASSERT_TRUE(client_.stub().CancelTask(ContextWithDeadline().get(), request, &response).ok());
  EXPECT_FALSE(response.cancelled());
  EXPECT_EQ(response.task().state(), v1::Task::CANCELLED);
}

TEST_F(SchedulerTest, ExecOutputArrivesInOrderAndBeforeTheResult) {
  v1::Task task;
  const std::string id = client_.MustCreate(Exec({counter_}));
  std::vector<v1::Event> events = client_.WatchTask(id);
  std::string stdout_text, stderr_text;
  bool ended = false;
  for (const v1::Event& event : events) {
    EXPECT_FALSE(ended) << "an event after the terminal one";
    if (event.has_output()) {
      (event.output().stream() == v1::Output::STDOUT ? stdout_text : stderr_text) +=
          event.output().data();
    }
    if (event.task_state().state() == v1::Task::SUCCEEDED) ended = true;
  }
  EXPECT_TRUE(ended);
  std::string expected_stdout, expected_stderr;
  for (int i = 1; i <= 2000; ++i) {
    absl::StrAppend(&expected_stdout, "line ", i, "\n");
    if (i % 500 == 0) absl::StrAppend(&expected_stderr, "err ", i, "\n");
  }
  EXPECT_EQ(stdout_text, expected_stdout);
  EXPECT_EQ(stderr_text, expected_stderr);
  // The result keeps the tail of the output (4 KiB by default).
  task = client_.AwaitTask(id);
  EXPECT_EQ(task.result().exit_code(), 0);
  EXPECT_TRUE(task.result().output_truncated());
  EXPECT_EQ(task.result().output().size(), 4096u);
  EXPECT_THAT(task.result().output(), HasSubstr("line 2000\n"));
}

TEST_F(SchedulerTest, ExecNonZeroExitFailsWithItsCode) {
  v1::Task task = client_.AwaitTask(client_.MustCreate(Exec({exiter_})));
  EXPECT_EQ(task.state(), v1::Task::FAILED);
  EXPECT_EQ(task.result().exit_code(), 3);
  EXPECT_EQ(task.result().output(), "bye\n");
  EXPECT_THAT(task.error().message(), HasSubstr("exited with code 3"));
}

bool ProcessIsGone(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  // A zombie waiting for whoever reaps orphans here is gone as far as running goes.
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

TEST_F(SchedulerTest, CancellingAnExecTaskKillsItsGrandchildrenToo) {
  const std::string id = client_.MustCreate(Exec({spawner_}));
  // Wait for the sleeper's pid on stdout.
  v1::WatchRequest watch;
  watch.set_task(id);
  auto context = ContextWithDeadline(30s);
  auto reader = client_.stub().Watch(context.get(), watch);
  v1::Event event;
  pid_t sleeper = 0;
  while (sleeper == 0 && reader->Read(&event)) {
    if (event.has_output()) {
      int pid = 0;
      ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(event.output().data()), &pid));
      sleeper = pid;
    }
  }
  ASSERT_GT(sleeper, 0);
  EXPECT_FALSE(ProcessIsGone(sleeper));
  v1::CancelTaskRequest cancel;
  cancel.set_id(id);
  v1::CancelTaskResponse response;
  ASSERT_TRUE(client_.stub().CancelTask(ContextWithDeadline().get(), cancel, &response).ok());
  while (reader->Read(&event)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(event.task_state().state(), v1::Task::CANCELLED);
  // The task ends only once its whole process group is dead.
  for (int i = 0; i < 50 && !ProcessIsGone(sleeper); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(ProcessIsGone(sleeper));
}

TEST_F(SchedulerTest, ADescendantThatLeavesItsProcessGroupIsKilledAndReapedToo) {
  v1::Task task = client_.AwaitTask(client_.MustCreate(Exec({escaper_})));
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  int escapee = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(task.result().output()), &escapee));
  // cotaskd adopted it (child subreaper), killed it and reaped it: not even a zombie is left.
  bool reaped = false;
  for (int i = 0; i < 50 && !reaped; ++i) {
    reaped = kill(escapee, 0) != 0 && errno == ESRCH;
    if (!reaped) std::this_thread::sleep_for(100ms);
  }
  if (!reaped) kill(escapee, SIGKILL);
  EXPECT_TRUE(reaped);
}

TEST_F(SchedulerTest, RunReturnsTheTasksResultInOneCall) {
  v1::CreateTaskRequest request = Sleep(20);
  request.mutable_spec()->mutable_sleep()->set_result("one call");
  v1::Task task;
  grpc::Status status = client_.stub().Run(ContextWithDeadline().get(), request, &task);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(task.state(), v1::Task::SUCCEEDED);
  EXPECT_EQ(task.result().output(), "one call");
  v1::Task exec;
  ASSERT_TRUE(client_.stub().Run(ContextWithDeadline().get(), Exec({exiter_}), &exec).ok());
  EXPECT_EQ(exec.state(), v1::Task::FAILED);
  EXPECT_EQ(exec.result().exit_code(), 3);
}

TEST_F(SchedulerTest, RunPastItsDeadlineCancelsTheTaskUnlessDetached) {
  for (bool detached : {false, true}) {
    SCOPED_TRACE(detached);
    v1::CreateTaskRequest request = Sleep(60'000);
    request.set_detached(detached);
    const std::string label = detached ? "detached" : "attached";
    (*request.mutable_labels())["run-deadline"] = label;
    v1::Task task;
    grpc::Status status = client_.stub().Run(ContextWithDeadline(200ms).get(), request, &task);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    v1::ListTasksRequest list;
    (*list.mutable_labels())["run-deadline"] = label;
    v1::ListTasksResponse listed;
    ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), list, &listed).ok());
    ASSERT_EQ(listed.tasks_size(), 1);
    const std::string id = listed.tasks(0).id();
    if (detached) {
      EXPECT_EQ(listed.tasks(0).state(), v1::Task::RUNNING);
      v1::CancelTaskRequest cancel;
      cancel.set_id(id);
      v1::CancelTaskResponse cancelled;
      ASSERT_TRUE(client_.stub().CancelTask(ContextWithDeadline().get(), cancel, &cancelled).ok());
    } else {
      v1::Task ended = client_.AwaitTask(id);
      EXPECT_EQ(ended.state(), v1::Task::CANCELLED);
      EXPECT_THAT(ended.cancel_message(), HasSubstr("the Run call that created it ended"));
    }
  }
}

TEST_F(SchedulerTest, WaitTasksFirstExceptionReturnsOnTheFirstFailure) {
  const std::string slow = client_.MustCreate(Sleep(60'000));
  const std::string bad = client_.MustCreate(Failing(50));
  v1::WaitTasksRequest request;
  request.add_ids(slow);
  request.add_ids(bad);
  request.set_return_when(v1::WaitTasksRequest::FIRST_EXCEPTION);
  v1::WaitTasksResponse response;
  grpc::Status status = client_.stub().WaitTasks(ContextWithDeadline().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.done_size(), 1);
  EXPECT_EQ(response.done(0).id(), bad);
  EXPECT_EQ(response.done(0).state(), v1::Task::FAILED);
  ASSERT_EQ(response.pending_size(), 1);
  EXPECT_EQ(response.pending(0).id(), slow);
  // With a timeout and nothing more ending, the answer comes when it passes, without error.
  request.set_return_when(v1::WaitTasksRequest::ALL_COMPLETED);
  request.mutable_timeout()->set_nanos(100'000'000);
  ASSERT_TRUE(client_.stub().WaitTasks(ContextWithDeadline().get(), request, &response).ok());
  EXPECT_EQ(response.pending_size(), 1);
  v1::CancelTaskRequest cancel;
  cancel.set_id(slow);
  v1::CancelTaskResponse cancelled;
  ASSERT_TRUE(client_.stub().CancelTask(ContextWithDeadline().get(), cancel, &cancelled).ok());
}

TEST_F(SchedulerTest, ADelayedTaskRunsOnlyOnceItsDelayHasPassed) {
  v1::CreateTaskRequest request = Sleep(0);
  request.mutable_options()->mutable_delay()->set_nanos(300'000'000);
  const std::string id = client_.MustCreate(request);
  std::vector<v1::Event> events = client_.WatchTask(id);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].task_state().state(), v1::Task::PENDING);
  EXPECT_EQ(events[1].task_state().state(), v1::Task::QUEUED);
  // From the event log's own timestamps: it left PENDING no sooner than the delay.
  using google::protobuf::util::TimeUtil;
  EXPECT_GE(TimeUtil::TimestampToNanoseconds(events[1].time()) -
                TimeUtil::TimestampToNanoseconds(events[0].time()),
            300'000'000);
  EXPECT_EQ(events[3].task_state().state(), v1::Task::SUCCEEDED);
}

TEST_F(SchedulerTest, WatchResumedFromTheMiddleLosesNothing) {
  const std::string id = client_.MustCreate(Exec({counter_}));
  std::vector<v1::Event> all = client_.WatchTask(id);
  ASSERT_GT(all.size(), 6u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].sequence(), static_cast<int64_t>(i + 1));
  const int64_t middle = static_cast<int64_t>(all.size() / 2);
  std::vector<v1::Event> rest = client_.WatchTask(id, middle);
  ASSERT_EQ(rest.size(), all.size() - static_cast<size_t>(middle) + 1);
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].SerializeAsString(),
              all[static_cast<size_t>(middle) - 1 + i].SerializeAsString());
  }
}

TEST_F(SchedulerTest, TheSameRequestIdMakesOneTask) {
  v1::CreateTaskRequest request = Sleep(0);
  request.set_request_id("retry-me-1");
  (*request.mutable_labels())["idempotency"] = "case1";
  const std::string first = client_.MustCreate(request);
  const std::string second = client_.MustCreate(request);
  EXPECT_EQ(first, second);
  v1::ListTasksRequest list;
  (*list.mutable_labels())["idempotency"] = "case1";
  v1::ListTasksResponse response;
  ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), list, &response).ok());
  EXPECT_EQ(response.tasks_size(), 1);
}

TEST_F(SchedulerTest, ListTasksFiltersAndPages) {
  client_.MustCreateGroup("listed");
  std::vector<std::string> ids;
  ids.reserve(5);
  for (int i = 0; i < 5; ++i) ids.push_back(client_.MustCreate(Sleep(0, "listed")));
  v1::ListTasksRequest list;
  list.set_group("listed");
  list.set_page_size(2);
  std::vector<std::string> seen;
  for (int pages = 0; pages < 10; ++pages) {
    v1::ListTasksResponse response;
    ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), list, &response).ok());
    for (const v1::Task& task : response.tasks()) seen.push_back(task.id());
    if (response.next_page_token().empty()) break;
    list.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(seen, ids);
}

struct BadCase {
  std::string name;
  grpc::StatusCode code;
  std::string reason;
  std::string field;  // ErrorInfo.metadata["field"], if any
  std::string message_part;
};

TEST_F(SchedulerTest, EveryBadInputGetsItsExactCodeAndNamesTheField) {
  client_.MustCreateGroup("closed-one");
  client_.CloseGroup("closed-one");
  auto create = [&](const v1::CreateTaskRequest& request) {
    v1::Task task;
    return client_.stub().CreateTask(ContextWithDeadline().get(), request, &task);
  };
  auto check = [&](const grpc::Status& status, const BadCase& c) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message_part));
    google::rpc::ErrorInfo info = ErrorInfoOf(status);
    EXPECT_EQ(info.reason(), c.reason);
    EXPECT_EQ(info.domain(), "cotask.dev");
    if (!c.field.empty()) {
      EXPECT_EQ(info.metadata().at("field"), c.field);
    }
  };
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

  check(create(v1::CreateTaskRequest()),
        {"missing spec", kInvalid, "INVALID_FIELD", "spec", "spec: required"});
  check(create(Sleep(-5)), {"negative duration", kInvalid, "INVALID_FIELD", "spec.sleep.duration",
                            "must not be negative"});
  v1::CreateTaskRequest negative_timeout = Sleep(0);
  negative_timeout.mutable_options()->mutable_timeout()->set_seconds(-1);
  check(create(negative_timeout),
        {"negative timeout", kInvalid, "INVALID_FIELD", "options.timeout", "must not be negative"});
  check(create(Exec({})),
        {"empty argv", kInvalid, "INVALID_FIELD", "spec.exec.argv", "spec.exec.argv: required"});
  v1::CreateTaskRequest big = Sleep(0);
  big.mutable_spec()->mutable_sleep()->set_result(std::string(1025, 'x'));
  check(create(big), {"oversized payload", kInvalid, "INVALID_FIELD", "spec.sleep.result",
                      "1025 bytes, more than the limit"});
  check(create(Sleep(0, "no-such-group")),
        {"unknown group", kInvalid, "INVALID_FIELD", "group", "no group named"});
  v1::CreateTaskRequest many_labels = Sleep(0);
  for (int i = 0; i < 5; ++i) (*many_labels.mutable_labels())[absl::StrCat("k", i)] = "v";
  check(create(many_labels), {"too many labels", kInvalid, "INVALID_FIELD", "labels", "5 labels"});
  v1::CreateTaskRequest long_key = Sleep(0);
  (*long_key.mutable_labels())[std::string(17, 'k')] = "v";
  check(create(long_key), {"label key too long", kInvalid, "INVALID_FIELD",
                           absl::StrCat("labels[\"", std::string(17, 'k'), "\"]"), "bytes"});
  v1::CreateTaskRequest long_value = Sleep(0);
  (*long_value.mutable_labels())["k"] = std::string(33, 'v');
  check(create(long_value), {"label value too long", kInvalid, "INVALID_FIELD", "labels[\"k\"]",
                             "a label value of 33 bytes"});
  check(create(Exec({"/bin/ls"})), {"exec not allowed", grpc::StatusCode::PERMISSION_DENIED,
                                    "EXEC_NOT_ALLOWED", "spec.exec.argv[0]", "--exec_allow"});
  check(create(Sleep(0, "closed-one")), {"closed group", grpc::StatusCode::FAILED_PRECONDITION,
                                         "GROUP_NOT_OPEN", "", "it was closed"});

  v1::CreateTasksRequest batch;
  for (int i = 0; i < 11; ++i) *batch.add_requests() = Sleep(0);
  v1::CreateTasksResponse batch_response;
  check(client_.stub().CreateTasks(ContextWithDeadline().get(), batch, &batch_response),
        {"batch too big", kInvalid, "INVALID_FIELD", "requests", "11 tasks, more than the limit"});
  batch.clear_requests();
  *batch.add_requests() = Sleep(0);
  *batch.add_requests() = Sleep(-1);
  check(client_.stub().CreateTasks(ContextWithDeadline().get(), batch, &batch_response),
        {"bad item in a batch", kInvalid, "INVALID_FIELD", "requests[1].spec.sleep.duration",
         "requests[1].spec.sleep.duration"});

  v1::ListTasksRequest list;
  list.set_page_size(-1);
  v1::ListTasksResponse list_response;
  check(client_.stub().ListTasks(ContextWithDeadline().get(), list, &list_response),
        {"negative page_size", kInvalid, "INVALID_FIELD", "page_size", "must not be negative"});
  list.set_page_size(1);
  list.set_group("listed-elsewhere");
  client_.MustCreateGroup("listed-elsewhere");
  client_.MustCreate(Sleep(0, "listed-elsewhere"));
  client_.MustCreate(Sleep(0, "listed-elsewhere"));
  ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), list, &list_response).ok());
  ASSERT_FALSE(list_response.next_page_token().empty());
  v1::ListTasksRequest other;
  other.set_page_size(1);
  other.set_page_token(list_response.next_page_token());
  check(client_.stub().ListTasks(ContextWithDeadline().get(), other, &list_response),
        {"page token of another query", kInvalid, "INVALID_FIELD", "page_token", "another query"});

  v1::GetTaskRequest get;
  get.set_id("t-nope");
  v1::Task task;
  check(client_.stub().GetTask(ContextWithDeadline().get(), get, &task),
        {"unknown task", grpc::StatusCode::NOT_FOUND, "TASK_NOT_FOUND", "", "no task t-nope"});
  v1::GetGroupRequest get_group;
  get_group.set_name("nope");
  v1::Group group;
  check(client_.stub().GetGroup(ContextWithDeadline().get(), get_group, &group),
        {"unknown group", grpc::StatusCode::NOT_FOUND, "GROUP_NOT_FOUND", "", "no group"});
  v1::WatchRequest watch;
  watch.set_task("t-nope");
  auto watch_context = ContextWithDeadline();
  auto reader = client_.stub().Watch(watch_context.get(), watch);
  v1::Event event;
  EXPECT_FALSE(reader->Read(&event));
  check(reader->Finish(), {"watch of an unknown task", grpc::StatusCode::NOT_FOUND,
                           "TASK_NOT_FOUND", "", "no task t-nope"});
  v1::CreateGroupRequest duplicate;
  duplicate.set_name("closed-one");
  check(client_.stub().CreateGroup(ContextWithDeadline().get(), duplicate, &group),
        {"group exists", grpc::StatusCode::ALREADY_EXISTS, "GROUP_EXISTS", "", "exists already"});
  v1::CreateGroupRequest bad_name;
  bad_name.set_name("no spaces");
  check(client_.stub().CreateGroup(ContextWithDeadline().get(), bad_name, &group),
        {"bad group name", kInvalid, "INVALID_FIELD", "name", "[A-Za-z0-9._-]"});

  // Nothing already accepted was lost or changed: the tasks made above are all still there.
  v1::ListTasksRequest again;
  again.set_group("listed-elsewhere");
  ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), again, &list_response).ok());
  EXPECT_EQ(list_response.tasks_size(), 2);
}

TEST_F(SchedulerTest, PendingTasksPastTheBoundAreRefusedAndNothingIsLost) {
  client_.MustCreateGroup("pending");
  v1::CreateTasksRequest batch;
  for (int i = 0; i < 10; ++i) *batch.add_requests() = Sleep(60'000, "pending");
  v1::CreateTasksResponse response;
  int accepted = 0;
  grpc::Status status;
  for (int i = 0; i < 20; ++i) {
    status = client_.stub().CreateTasks(ContextWithDeadline().get(), batch, &response);
    if (!status.ok()) break;
    accepted += response.tasks_size();
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_pending_tasks=100"));
  EXPECT_EQ(ErrorInfoOf(status).reason(), "TOO_MANY_PENDING_TASKS");
  v1::ListTasksRequest list;
  list.set_group("pending");
  list.set_page_size(1000);
  v1::ListTasksResponse listed;
  ASSERT_TRUE(client_.stub().ListTasks(ContextWithDeadline().get(), list, &listed).ok());
  EXPECT_EQ(listed.tasks_size(), accepted);
  v1::CancelGroupRequest cancel;
  cancel.set_name("pending");
  v1::CancelGroupResponse cancelled;
  ASSERT_TRUE(client_.stub().CancelGroup(ContextWithDeadline().get(), cancel, &cancelled).ok());
  EXPECT_EQ(client_.AwaitGroup("pending").state(), v1::Group::CANCELLED);
}

// `clients` clients at once, each on a connection of its own, create and await 20 sleep(0)
// tasks one after the other: how many SUCCEEDED, by client.
std::vector<int> SucceededFromClientsAtOnce(const std::string& address, int clients) {
  std::vector<std::thread> threads;
  threads.reserve(clients);
  std::vector<int> succeeded(clients, 0);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Client client(address);
      for (int i = 0; i < 20; ++i) {
        if (client.AwaitTask(client.MustCreate(Sleep(0))).state() == v1::Task::SUCCEEDED) {
          ++succeeded[c];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return succeeded;
}

TEST(SchedulerDaemonTest, ServesFromSeveralIoThreads) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--io_threads=3"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  // Calls from several clients at once land on the server's different completion queues.
  EXPECT_THAT(SucceededFromClientsAtOnce(daemon->address, 4), ::testing::Each(20));
}

// The names of a process's threads (/proc/PID/task/*/comm).
std::vector<std::string> ThreadNames(pid_t pid) {
  std::vector<std::string> names;
  for (const auto& entry :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.push_back(name);
  }
  return names;
}

TEST(SchedulerDaemonTest, NamesItsEngineAndIoThreads) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--io_threads=2"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::vector<std::string> names = ThreadNames(daemon->process.pid());
  EXPECT_THAT(names, Contains("cotask-engine").Times(1));
  EXPECT_THAT(names, Contains("cotask-io-0").Times(1));
  EXPECT_THAT(names, Contains("cotask-io-1").Times(1));
  EXPECT_THAT(names, Contains("cotask-procs").Times(1));  // exec tasks' spawns and reaps
}

// By default (--io_threads=-1) a cotaskd that may use at most 2 CPUs serves calls on its
// engine's thread (bench/README.md: on 2 vCPUs every figure is as good or better so).
TEST(SchedulerDaemonTest, OnOneCpuTheEngineThreadServesTheCallsByDefault) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);  // the daemon inherits it
  auto daemon = StartDaemon({"--address=127.0.0.1:0"});
  auto explicit_one = StartDaemon({"--address=127.0.0.1:0", "--io_threads=1"});
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ASSERT_TRUE(explicit_one.ok()) << explicit_one.status();
  EXPECT_THAT(ThreadNames(daemon->process.pid()), Not(Contains(StartsWith("cotask-io"))));
  EXPECT_THAT(SucceededFromClientsAtOnce(daemon->address, 2), ::testing::Each(20));
  // The flag, given, is what counts.
  EXPECT_THAT(ThreadNames(explicit_one->process.pid()), Contains("cotask-io-0").Times(1));
}

TEST(SchedulerDaemonTest, WithNoIoThreadsTheEngineThreadServesEveryCall) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--io_threads=0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::vector<std::string> names = ThreadNames(daemon->process.pid());
  EXPECT_THAT(names, Contains("cotask-engine").Times(1));
  EXPECT_THAT(names, Not(Contains(StartsWith("cotask-io"))));
  // Unary calls and waits from several clients at once (a stream and the drain: the SIGTERM
  // test below runs with --io_threads=0 too).
  EXPECT_THAT(SucceededFromClientsAtOnce(daemon->address, 3), ::testing::Each(20));
}

TEST(SchedulerDaemonTest, ExecIsRefusedUntilAllowed) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  Client client(daemon->address);
  v1::Task task;
  grpc::Status status =
      client.stub().CreateTask(ContextWithDeadline().get(), Exec({"/bin/true"}), &task);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("start cotaskd with --exec_allow="));
  EXPECT_EQ(ErrorInfoOf(status).reason(), "EXEC_DISABLED");
}

class SigtermTest : public ::testing::TestWithParam<const char*> {};

// With the calls served on I/O threads (the default) and on the engine's thread.
INSTANTIATE_TEST_SUITE_P(IoThreads, SigtermTest,
                         ::testing::Values("--io_threads=1", "--io_threads=0"));

TEST_P(SigtermTest, WithATaskRunningItCancelsItAfterTheDrainAndExitsZero) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--drain_timeout=1s", GetParam()});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  Client client(daemon->address);
  const std::string quick = client.MustCreate(Sleep(300));
  const std::string slow = client.MustCreate(Sleep(600'000));
  v1::WatchRequest watch;
  watch.set_task(slow);
  auto context = ContextWithDeadline(30s);
  auto reader = client.stub().Watch(context.get(), watch);
  v1::Event event;
  ASSERT_TRUE(reader->Read(&event));

  const auto signalled = std::chrono::steady_clock::now();
  daemon->process.Signal(SIGTERM);
  // New work is refused while draining.
  absl::StatusOr<v1::Task> refused;
  for (int i = 0; i < 100; ++i) {
    refused = client.Create(Sleep(0));
    if (!refused.ok()) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_THAT(refused.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  while (reader->Read(&event)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(event.task_state().state(), v1::Task::CANCELLED);
  EXPECT_THAT(event.task_state().error().message(), HasSubstr("the server is shutting down"));

  auto exit_status = daemon->process.Wait(20s);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status));
  EXPECT_EQ(WEXITSTATUS(*exit_status), 0);
  // Within the drain timeout, give or take the machine's noise.
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, 10s);
}

}  // namespace
}  // namespace cotask
