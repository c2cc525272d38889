// Requests that tests build over and over: sleep tasks (succeeding or failing on purpose), exec
// tasks and groups. Shared by the engine's unit tests and the end-to-end tests.
#ifndef COTASK_TESTS_TASK_REQUESTS_H_
#define COTASK_TESTS_TASK_REQUESTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cotask/v1/scheduler.pb.h"

namespace cotask::testing {

inline v1::CreateTaskRequest SleepRequest(int64_t millis, std::string group = {}) {
  v1::CreateTaskRequest request;
  v1::SleepTask& sleep = *request.mutable_spec()->mutable_sleep();
  sleep.mutable_duration()->set_seconds(millis / 1000);
  sleep.mutable_duration()->set_nanos(static_cast<int32_t>(millis % 1000) * 1'000'000);
  request.set_group(std::move(group));
  return request;
}

// Ends FAILED with google.rpc.Code 13 (INTERNAL) and the message "failed on purpose".
inline v1::CreateTaskRequest FailingRequest(int64_t millis, std::string group = {}) {
  v1::CreateTaskRequest request = SleepRequest(millis, std::move(group));
  request.mutable_spec()->mutable_sleep()->mutable_error()->set_code(13);
  request.mutable_spec()->mutable_sleep()->mutable_error()->set_message("failed on purpose");
  return request;
}

inline v1::CreateTaskRequest ExecRequest(std::vector<std::string> argv) {
  v1::CreateTaskRequest request;
  v1::ExecTask& exec = *request.mutable_spec()->mutable_exec();
  for (std::string& arg : argv) exec.add_argv(std::move(arg));
  return request;
}

// A dispatch task on `queue` with `payload`, for remote workers.
inline v1::CreateTaskRequest DispatchRequest(std::string queue, std::string payload = {},
                                             int32_t priority = 0) {
  v1::CreateTaskRequest request;
  v1::DispatchTask& dispatch = *request.mutable_spec()->mutable_dispatch();
  dispatch.set_queue(std::move(queue));
  dispatch.set_payload(std::move(payload));
  request.mutable_options()->set_priority(priority);
  return request;
}

inline v1::CreateGroupRequest GroupRequest(std::string name, std::string parent = {}) {
  v1::CreateGroupRequest request;
  request.set_name(std::move(name));
  request.set_parent(std::move(parent));
  return request;
}

}  // namespace cotask::testing

#endif  // COTASK_TESTS_TASK_REQUESTS_H_
