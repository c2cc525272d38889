// cotask's errors: absl::Status values that carry a google.rpc.ErrorInfo (as a payload keyed by
// its type URL), so that the service can send clients a google.rpc.Status with the reason and
// the offending field, and a task's or group's error can be stored in its proto as is.
#ifndef COTASK_SCHEDULER_ENGINE_ERRORS_H_
#define COTASK_SCHEDULER_ENGINE_ERRORS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace google::rpc {
class Status;
}

namespace cotask::engine {

inline constexpr absl::string_view kErrorDomain = "cotask.dev";
inline constexpr absl::string_view kErrorInfoTypeUrl = "type.googleapis.com/google.rpc.ErrorInfo";

using ErrorMetadata = std::vector<std::pair<std::string, std::string>>;

// An error whose ErrorInfo says `reason` (UPPER_SNAKE_CASE, stable) with `metadata`.
absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                   const ErrorMetadata& metadata = {});

// INVALID_ARGUMENT, reason INVALID_FIELD, metadata field (and bound, if given); the message
// starts with the field's name.
absl::Status InvalidField(absl::string_view field, absl::string_view problem,
                          absl::string_view bound = {});

// The same error with its field renamed under `prefix` ("requests[3]."): for batches.
absl::Status PrefixField(const absl::Status& status, absl::string_view prefix);

// The reason in status's ErrorInfo, or "" if it has none.
std::string ErrorReason(const absl::Status& status);

// google.rpc.Status of an error: code, message, and exactly one ErrorInfo (its own, or one
// whose reason is the code's name when it carries none). OK gives code 0 and no details.
google::rpc::Status ToRpcStatus(const absl::Status& status);
// The inverse, keeping the first ErrorInfo.
absl::Status FromRpcStatus(const google::rpc::Status& status);

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_ERRORS_H_
