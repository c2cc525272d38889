// The outcome of a task: a value, an error, or a cancellation.
// Task<T> ends with absl::StatusOr<T>, Task<void> with absl::Status. Cancellation is the
// status code CANCELLED, carrying the message given to Cancel(), as asyncio's CancelledError
// carries its msg.
#ifndef COTASK_SCHEDULER_RUNTIME_RESULT_H_
#define COTASK_SCHEDULER_RUNTIME_RESULT_H_

#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cotask::runtime {

namespace internal {
template <class T>
struct ResultOfImpl {
  using type = absl::StatusOr<T>;
};
template <>
struct ResultOfImpl<void> {
  using type = absl::Status;
};
}  // namespace internal

template <class T>
using ResultOf = typename internal::ResultOfImpl<T>::type;

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <class T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// The value type of a result: StatusOr<T> -> T, Status -> void.
template <class R>
struct ValueOfResult;
template <class T>
struct ValueOfResult<absl::StatusOr<T>> {
  using type = T;
};
template <>
struct ValueOfResult<absl::Status> {
  using type = void;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_RESULT_H_
