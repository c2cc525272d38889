// A client of one cotaskd for the end-to-end tests: the generated stub with helpers that
// create, watch and await tasks and groups, each call with a deadline.
#ifndef COTASK_TESTS_SCHEDULER_CLIENT_H_
#define COTASK_TESTS_SCHEDULER_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cotask/v1/scheduler.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/task_requests.h"

namespace cotask::testing {

inline absl::Status ToAbsl(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// The ErrorInfo in the grpc-status-details-bin trailer.
inline google::rpc::ErrorInfo ErrorInfoOf(const grpc::Status& status) {
  google::rpc::Status details;
  google::rpc::ErrorInfo info;
  EXPECT_TRUE(details.ParseFromString(status.error_details())) << status.error_message();
  EXPECT_EQ(details.code(), static_cast<int>(status.error_code()));
  EXPECT_EQ(details.details_size(), 1);
  if (details.details_size() == 1) {
    EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/google.rpc.ErrorInfo");
    EXPECT_TRUE(info.ParseFromString(details.details(0).value()));
  }
  return info;
}

inline v1::CreateTaskRequest Sleep(int64_t millis, std::string group = {}) {
  return SleepRequest(millis, std::move(group));
}
inline v1::CreateTaskRequest Failing(int64_t millis, std::string group = {}) {
  return FailingRequest(millis, std::move(group));
}
inline v1::CreateTaskRequest Exec(std::vector<std::string> argv) {
  return ExecRequest(std::move(argv));
}

// A client of one cotaskd.
class Client {
 public:
  explicit Client(const std::string& address)
      : stub_(v1::Scheduler::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<v1::Task> Create(const v1::CreateTaskRequest& request) {
    v1::Task task;
    grpc::Status status = stub_->CreateTask(ContextWithDeadline().get(), request, &task);
    if (!status.ok()) return ToAbsl(status);
    return task;
  }
  std::string MustCreate(const v1::CreateTaskRequest& request) {
    absl::StatusOr<v1::Task> task = Create(request);
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? task->id() : std::string();
  }
  void MustCreateGroup(const v1::CreateGroupRequest& request) {
    v1::Group group;
    grpc::Status status = stub_->CreateGroup(ContextWithDeadline().get(), request, &group);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(group.state(), v1::Group::OPEN);
  }
  void MustCreateGroup(const std::string& name, const std::string& parent = {}) {
    v1::CreateGroupRequest request;
    request.set_name(name);
    request.set_parent(parent);
    MustCreateGroup(request);
  }
  v1::Group CloseGroup(const std::string& name) {
    v1::CloseGroupRequest request;
    request.set_name(name);
    v1::Group group;
    grpc::Status status = stub_->CloseGroup(ContextWithDeadline().get(), request, &group);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return group;
  }

  // The log of a task or group from `from` on, through its last event.
  std::vector<v1::Event> Watch(v1::WatchRequest request, int64_t from = 0) {
    request.set_from_sequence(from);
    auto context = ContextWithDeadline(std::chrono::seconds(30));
    auto reader = stub_->Watch(context.get(), request);
    std::vector<v1::Event> events;
    v1::Event event;
    while (reader->Read(&event)) events.push_back(event);
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return events;
  }
  std::vector<v1::Event> WatchTask(const std::string& id, int64_t from = 0) {
    v1::WatchRequest request;
    request.set_task(id);
    return Watch(request, from);
  }
  v1::Task AwaitTask(const std::string& id) {
    WatchTask(id);
    v1::GetTaskRequest request;
    request.set_id(id);
    v1::Task task;
    grpc::Status status = stub_->GetTask(ContextWithDeadline().get(), request, &task);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return task;
  }
  v1::Group AwaitGroup(const std::string& name) {
    v1::WatchRequest watch;
    watch.set_group(name);
    Watch(watch);
    v1::GetGroupRequest request;
    request.set_name(name);
    v1::Group group;
    grpc::Status status = stub_->GetGroup(ContextWithDeadline().get(), request, &group);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return group;
  }

  v1::Scheduler::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<v1::Scheduler::Stub> stub_;
};

}  // namespace cotask::testing

#endif  // COTASK_TESTS_SCHEDULER_CLIENT_H_
