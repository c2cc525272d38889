#include "clients/cpp/task_group.h"

#include <utility>

#include "scheduler/engine/errors.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask {

absl::StatusOr<std::unique_ptr<TaskGroup>> TaskGroup::Create(Client& client,
                                                             v1::CreateGroupRequest request) {
  COTASK_ASSIGN_OR_RETURN(v1::Group group, client.CreateGroup(std::move(request)));
  return std::unique_ptr<TaskGroup>(new TaskGroup(client, std::move(group)));
}

absl::StatusOr<std::unique_ptr<TaskGroup>> TaskGroup::Create(Client& client,
                                                             const std::string& name) {
  v1::CreateGroupRequest request;
  request.set_name(name);
  return Create(client, std::move(request));
}

TaskGroup::~TaskGroup() {
  if (!closed_) client_.CloseGroup(group_.name()).IgnoreError();
}

absl::StatusOr<v1::Task> TaskGroup::CreateTask(v1::CreateTaskRequest request) {
  request.set_group(group_.name());
  return client_.CreateTask(std::move(request));
}

absl::Status TaskGroup::Outcome() const {
  if (group_.state() == v1::Group::SUCCEEDED) return absl::OkStatus();
  return engine::FromRpcStatus(group_.error());
}

absl::Status TaskGroup::Wait(CallOptions call) {
  closed_ = true;
  COTASK_ASSIGN_OR_RETURN(group_, client_.CloseGroup(group_.name(), call));
  COTASK_ASSIGN_OR_RETURN(group_, client_.AwaitGroup(group_, call));
  return Outcome();
}

runtime::Task<void> TaskGroup::WaitAsync(CallOptions call) {
  closed_ = true;
  COTASK_CO_ASSIGN_OR_RETURN(group_, co_await client_.CloseGroupAsync(group_.name(), call));
  COTASK_CO_ASSIGN_OR_RETURN(group_, co_await client_.AwaitGroupAsync(group_, call));
  co_return Outcome();
}

}  // namespace cotask
