// Watch end to end, on both ways cotaskd serves it: on an I/O thread, each step a call to the
// engine's thread (--io_threads=1), and on the engine's own thread, reading the engine directly
// (--io_threads=0, the default on machines with up to 2 CPUs). Each test starts its own cotaskd.
#include <grpcpp/client_context.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cotask/v1/scheduler.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/scheduler_client.h"

namespace cotask {
namespace {

using ::cotask::testing::ContextWithDeadline;
using ::cotask::testing::StartDaemon;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using testing::Client;
using testing::ErrorInfoOf;
using testing::Sleep;

class WatchTest : public ::testing::TestWithParam<const char*> {
 protected:
  void Start(std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"--address=127.0.0.1:0", GetParam()});
    auto daemon = StartDaemon(flags);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::make_unique<testing::Daemon>(std::move(*daemon));
    client_ = std::make_unique<Client>(daemon_->address);
  }
  void Cancel(const std::string& id) {
    v1::CancelTaskRequest request;
    request.set_id(id);
    v1::CancelTaskResponse response;
    ASSERT_TRUE(client_->stub().CancelTask(ContextWithDeadline().get(), request, &response).ok());
  }
  static v1::WatchRequest OfTask(const std::string& id) {
    v1::WatchRequest request;
    request.set_task(id);
    return request;
  }
  // The status a Watch ends with, having read every event.
  grpc::Status WatchStatus(const v1::WatchRequest& request) {
    auto context = ContextWithDeadline();
    auto reader = client_->stub().Watch(context.get(), request);
    v1::Event event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }

  std::unique_ptr<testing::Daemon> daemon_;
  std::unique_ptr<Client> client_;
};

INSTANTIATE_TEST_SUITE_P(IoThreads, WatchTest,
                         ::testing::Values("--io_threads=1", "--io_threads=0"),
                         [](const auto& info) {
                           return std::string(info.param) == "--io_threads=0" ? "OnTheEngine"
                                                                              : "OnAnIoThread";
                         });

// The watcher waits at the end of the log and gets each event as it comes, then the end.
TEST_P(WatchTest, AWaitingWatcherGetsTheNextEventAsItComesThenTheEnd) {
  Start();
  const std::string id = client_->MustCreate(Sleep(600'000));
  auto context = ContextWithDeadline(30s);
  auto reader = client_->stub().Watch(context.get(), OfTask(id));
  std::vector<v1::Event> events;
  v1::Event event;
  while (events.empty() || events.back().task_state().state() != v1::Task::RUNNING) {
    ASSERT_TRUE(reader->Read(&event));
    events.push_back(event);
  }
  Cancel(id);
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.task_state().state(), v1::Task::CANCELLED);
  events.push_back(event);
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].task_state().state(), v1::Task::PENDING);
  EXPECT_EQ(events[1].task_state().state(), v1::Task::QUEUED);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(events[i].task(), id);
  }
}

TEST_P(WatchTest, ResumingAtASequenceGivesTheSameEventsFromThere) {
  Start();
  const std::string id = client_->MustCreate(Sleep(10));
  std::vector<v1::Event> all = client_->WatchTask(id);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all.back().task_state().state(), v1::Task::SUCCEEDED);
  std::vector<v1::Event> rest = client_->WatchTask(id, 3);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].SerializeAsString(), all[2].SerializeAsString());
  EXPECT_EQ(rest[1].SerializeAsString(), all[3].SerializeAsString());
  // Past the end of an ended log: nothing, and the stream ends.
  EXPECT_TRUE(client_->WatchTask(id, 5).empty());
}

TEST_P(WatchTest, NoFollowEndsOnceCaughtUp) {
  Start();
  const std::string id = client_->MustCreate(Sleep(600'000));
  v1::WatchRequest request = OfTask(id);
  request.set_no_follow(true);
  std::vector<v1::Event> events = client_->Watch(request);  // (a 30 s deadline)
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].task_state().state(), v1::Task::PENDING);
  EXPECT_NE(events.back().task_state().state(), v1::Task::CANCELLED);
  Cancel(id);
}

TEST_P(WatchTest, BadRequestsNameTheFieldAndUnknownTargetsAreNotFound) {
  Start();
  const std::string id = client_->MustCreate(Sleep(0));
  grpc::Status status = WatchStatus(v1::WatchRequest());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("target"));

  v1::WatchRequest negative = OfTask(id);
  negative.set_from_sequence(-1);
  status = WatchStatus(negative);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("from_sequence"));

  status = WatchStatus(OfTask("0123456789abcdef"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorInfoOf(status).reason(), "TASK_NOT_FOUND");

  v1::WatchRequest group;
  group.set_group("nobody");
  status = WatchStatus(group);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorInfoOf(status).reason(), "GROUP_NOT_FOUND");
}

// --max_watchers bounds the open streams; one that goes away gives its place back.
TEST_P(WatchTest, WatchersAreBoundedAndOneThatGoesAwayGivesBackItsPlace) {
  Start({"--max_watchers=1"});
  const std::string id = client_->MustCreate(Sleep(600'000));
  auto first_context = ContextWithDeadline(30s);
  auto first = client_->stub().Watch(first_context.get(), OfTask(id));
  v1::Event event;
  ASSERT_TRUE(first->Read(&event));  // open, and waiting at the end of the log soon

  v1::WatchRequest caught_up = OfTask(id);
  caught_up.set_no_follow(true);
  grpc::Status refused = WatchStatus(caught_up);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_watchers"));
  google::rpc::ErrorInfo info = ErrorInfoOf(refused);
  EXPECT_EQ(info.reason(), "TOO_MANY_WATCHERS");
  EXPECT_EQ(info.metadata().at("bound"), "1");

  first_context->TryCancel();
  while (first->Read(&event)) {
  }
  EXPECT_EQ(first->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server learns of the cancel on its own time: the place comes back soon after.
  grpc::Status again = WatchStatus(caught_up);
  for (int i = 0; i < 100 && again.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED; ++i) {
    std::this_thread::sleep_for(50ms);
    again = WatchStatus(caught_up);
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
  Cancel(id);
}

}  // namespace
}  // namespace cotask
