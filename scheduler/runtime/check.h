// Invariant checks for cotask. Abseil 20220623 has no public CHECK; these are cotask's own.
// A failed check is a bug in cotask: it prints the condition and location and aborts.
// Expected failures (bad input, cancellation, timeouts) are absl::Status values, never checks.
#ifndef COTASK_SCHEDULER_RUNTIME_CHECK_H_
#define COTASK_SCHEDULER_RUNTIME_CHECK_H_

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

namespace cotask::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const char* message);
}  // namespace cotask::internal

#define COTASK_CHECK(condition, message)                                          \
  do {                                                                            \
    if (ABSL_PREDICT_FALSE(!(condition))) {                                       \
      ::cotask::internal::CheckFailed(__FILE__, __LINE__, #condition, (message)); \
    }                                                                             \
  } while (false)

#ifdef NDEBUG
#define COTASK_DCHECK(condition, message) \
  do {                                    \
  } while (false && (condition))
#else
#define COTASK_DCHECK(condition, message) COTASK_CHECK(condition, message)
#endif

#endif  // COTASK_SCHEDULER_RUNTIME_CHECK_H_
