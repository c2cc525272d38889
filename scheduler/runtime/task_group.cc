#include "scheduler/runtime/task_group.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace cotask::runtime {

namespace {

constexpr absl::string_view kGroupErrorsUrl = "type.cotask.dev/cotask.runtime.TaskGroupErrors";

// Payload format: per failure, u32 code, u32 length + message, u32 length + the failure's own
// TaskGroupErrors payload (empty unless it is a group error itself), little-endian.
void AppendU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendBytes(std::string& out, absl::string_view bytes) {
  AppendU32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes.data(), bytes.size());
}
bool ReadU32(absl::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(4);
  return true;
}
bool ReadBytes(absl::string_view& in, absl::string_view& bytes) {
  uint32_t n = 0;
  if (!ReadU32(in, n) || in.size() < n) return false;
  bytes = in.substr(0, n);
  in.remove_prefix(n);
  return true;
}

}  // namespace

absl::Status TaskGroupError(const std::vector<absl::Status>& errors) {
  COTASK_CHECK(!errors.empty(), "TaskGroupError needs at least one error");
  std::string message = absl::StrCat("task group failed with ", errors.size(),
                                     errors.size() == 1 ? " error: " : " errors: ");
  std::string payload;
  for (size_t i = 0; i < errors.size(); ++i) {
    const absl::Status& e = errors[i];
    if (i > 0) absl::StrAppend(&message, "; ");
    absl::StrAppend(&message, "[", absl::StatusCodeToString(e.code()), ": ", e.message(), "]");
    AppendU32(payload, static_cast<uint32_t>(e.code()));
    AppendBytes(payload, e.message());
    auto nested = e.GetPayload(kGroupErrorsUrl);
    AppendBytes(payload, nested.has_value() ? std::string(*nested) : std::string());
  }
  absl::Status status(errors.front().code(), message);
  status.SetPayload(kGroupErrorsUrl, absl::Cord(payload));
  return status;
}

std::vector<absl::Status> TaskGroupErrors(const absl::Status& status) {
  std::vector<absl::Status> errors;
  auto payload = status.GetPayload(kGroupErrorsUrl);
  if (!payload.has_value()) return errors;
  std::string bytes(*payload);
  absl::string_view in(bytes);
  while (!in.empty()) {
    uint32_t code = 0;
    absl::string_view message, nested;
    if (!ReadU32(in, code) || !ReadBytes(in, message) || !ReadBytes(in, nested)) break;
    absl::Status error(static_cast<absl::StatusCode>(code), message);
    if (!nested.empty()) error.SetPayload(kGroupErrorsUrl, absl::Cord(nested));
    errors.push_back(std::move(error));
  }
  return errors;
}

// The body's end waiting for the last child. Cancelling the parent here interrupts the wait
// (the group then cancels the children, unless it is already doing so, and waits again).
class TaskGroup::ExitAwaiter final : public internal::CancelHook {
 public:
  explicit ExitAwaiter(TaskGroup& group) : group_(&group) {}
  ~ExitAwaiter() {
    if (group_->exit_waiter_ == this) group_->exit_waiter_ = nullptr;
  }

  bool await_ready() {
    task_ = group_->parent_;
    cancelled_ = task_->TakePendingCancel();
    return cancelled_ || group_->children_.empty();
  }
  void await_suspend(std::coroutine_handle<> at) {
    group_->exit_waiter_ = this;
    task_->Suspend(at, this);
  }
  absl::Status await_resume() {
    if (cancelled_) return task_->TakeCancelDelivery();
    return absl::OkStatus();
  }

  void OnCancel() override {
    group_->exit_waiter_ = nullptr;
    cancelled_ = true;
    task_->WakeAfterCancel();
  }
  void OnChildrenDone() {
    group_->exit_waiter_ = nullptr;
    task_->Wake();
  }

 private:
  TaskGroup* group_;
  internal::TaskState* task_ = nullptr;
  bool cancelled_ = false;
};

TaskGroup::~TaskGroup() {
  // Only when the parent's frame is destroyed at loop shutdown can children remain.
  children_.ForEach([](internal::TaskState* child) { child->set_group(nullptr); });
  children_.Clear();
}

absl::Status TaskGroup::CheckAccepting() const {
  if (exiting_ && children_.empty()) {
    return absl::FailedPreconditionError("TaskGroup is finished: it accepts no new tasks");
  }
  if (aborting_) {
    return absl::FailedPreconditionError("TaskGroup is shutting down: it accepts no new tasks");
  }
  return absl::OkStatus();
}

void TaskGroup::Adopt(internal::TaskState& child) {
  child.set_group(this);
  children_.PushBack(&child);
}

void TaskGroup::Abort() {
  aborting_ = true;
  children_.ForEach(
      [](internal::TaskState* child) { child->Cancel("cancelled by its task group"); });
}

void TaskGroup::OnChildDone(internal::TaskState& child) {
  child.set_group(nullptr);
  const absl::Status& status = child.status();
  if (!status.ok() && !absl::IsCancelled(status)) {
    errors_.push_back(status);
    if (!aborting_ && !parent_cancel_requested_) {
      // Stop the body wherever it waits; Exit withdraws this request again.
      Abort();
      parent_cancel_requested_ = true;
      parent_->Cancel("cancelled by its task group: a child task failed");
    }
  }
  if (children_.empty() && exit_waiter_ != nullptr) exit_waiter_->OnChildrenDone();
}

Task<void> TaskGroup::Exit(absl::Status body) {
  exiting_ = true;
  bool propagate_cancel = false;
  if (absl::IsCancelled(body)) {
    propagate_cancel = true;
    if (!aborting_) Abort();
  } else if (!body.ok()) {
    if (!aborting_) Abort();
  }
  while (!children_.empty()) {
    absl::Status waited = co_await ExitAwaiter(*this);
    if (!waited.ok() && !aborting_) {
      // The parent was cancelled from outside while waiting: cancel the children, and keep
      // waiting for them.
      propagate_cancel = true;
      Abort();
    }
  }
  if (parent_cancel_requested_ && parent_->Uncancel() == 0) propagate_cancel = false;
  if (!body.ok() && !absl::IsCancelled(body)) errors_.push_back(body);
  if (!errors_.empty()) co_return TaskGroupError(errors_);
  if (propagate_cancel) co_return absl::IsCancelled(body) ? body : parent_->CancelledStatus();
  co_return absl::OkStatus();
}

}  // namespace cotask::runtime
