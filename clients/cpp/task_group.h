// cotask::TaskGroup: a remote asyncio.TaskGroup.
//
//   absl::StatusOr<std::unique_ptr<TaskGroup>> group = TaskGroup::Create(client, "nightly");
//   (*group)->CreateTask(request);            // joins the group
//   absl::Status outcome = (*group)->Wait();  // closes it, waits for every child
//
// Wait() is the end of `async with`: it closes the group (no new tasks) and returns once every
// child has ended: OK if the group SUCCEEDED, otherwise the group's error, as asyncio raises an
// ExceptionGroup: FAILED (the first failure's code; the message names the failures, group()
// lists every one), CANCELLED or DEADLINE_EXCEEDED (TIMED_OUT). The first failure of a
// fail-fast group cancels the other children on the server, as in asyncio. A group that goes
// out of scope without Wait() is closed (not waited for).
#ifndef COTASK_CLIENTS_CPP_TASK_GROUP_H_
#define COTASK_CLIENTS_CPP_TASK_GROUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "clients/cpp/client.h"
#include "cotask/v1/scheduler.pb.h"

namespace cotask {

class TaskGroup {
 public:
  // `request` names the group (and may set its policy, parent, deadline, runner, labels).
  static absl::StatusOr<std::unique_ptr<TaskGroup>> Create(Client& client,
                                                           v1::CreateGroupRequest request);
  static absl::StatusOr<std::unique_ptr<TaskGroup>> Create(Client& client, const std::string& name);
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  // Closes the group if Wait() was not called.
  ~TaskGroup();

  const std::string& name() const { return group_.name(); }
  // The group as last seen (after Wait(): as it ended, with every failure).
  const v1::Group& group() const { return group_; }

  // Creates a task in the group (request.group is set).
  absl::StatusOr<v1::Task> CreateTask(v1::CreateTaskRequest request);
  // Closes the group and waits until it has ended; OK if it SUCCEEDED, its error otherwise.
  absl::Status Wait(CallOptions call = {});
  // The same, in a coroutine.
  runtime::Task<void> WaitAsync(CallOptions call = {});

 private:
  TaskGroup(Client& client, v1::Group group) : client_(client), group_(std::move(group)) {}
  // OK if the group SUCCEEDED, else its error.
  absl::Status Outcome() const;

  Client& client_;
  v1::Group group_;
  bool closed_ = false;
};

}  // namespace cotask

#endif  // COTASK_CLIENTS_CPP_TASK_GROUP_H_
