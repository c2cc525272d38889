// Propagating absl::Status (Abseil 20220623 ships no RETURN_IF_ERROR; these are cotask's own,
// defined once), in coroutines and in plain functions.
//
//   COTASK_CO_RETURN_IF_ERROR(co_await Sleep(1s));   // in a Task<T> coroutine
//   COTASK_CO_ASSIGN_OR_RETURN(int v, co_await queue.Get());
//   COTASK_RETURN_IF_ERROR(Validate(request));       // in a function returning Status(Or)
//   COTASK_ASSIGN_OR_RETURN(Record* r, Find(id));
#ifndef COTASK_SCHEDULER_RUNTIME_STATUS_MACROS_H_
#define COTASK_SCHEDULER_RUNTIME_STATUS_MACROS_H_

#include <utility>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define COTASK_STATUS_CONCAT_INNER_(a, b) a##b
#define COTASK_STATUS_CONCAT_(a, b) COTASK_STATUS_CONCAT_INNER_(a, b)

#define COTASK_CO_RETURN_IF_ERROR(expr)                                                   \
  do {                                                                                    \
    if (::absl::Status cotask_status_ = (expr); ABSL_PREDICT_FALSE(!cotask_status_.ok())) \
      co_return cotask_status_;                                                           \
  } while (false)

#define COTASK_CO_ASSIGN_OR_RETURN(lhs, expr) \
  COTASK_CO_ASSIGN_OR_RETURN_IMPL_(COTASK_STATUS_CONCAT_(cotask_statusor_, __LINE__), lhs, expr)

#define COTASK_RETURN_IF_ERROR(expr)                                                      \
  do {                                                                                    \
    if (::absl::Status cotask_status_ = (expr); ABSL_PREDICT_FALSE(!cotask_status_.ok())) \
      return cotask_status_;                                                              \
  } while (false)

#define COTASK_ASSIGN_OR_RETURN(lhs, expr) \
  COTASK_ASSIGN_OR_RETURN_IMPL_(COTASK_STATUS_CONCAT_(cotask_statusor_, __LINE__), lhs, expr)

// lhs is a declaration and statusor a generated name: neither can take parentheses.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define COTASK_CO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)          \
  auto statusor = (expr);                                              \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) co_return statusor.status(); \
  lhs = *std::move(statusor)
#define COTASK_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)          \
  auto statusor = (expr);                                           \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) return statusor.status(); \
  lhs = *std::move(statusor)
// NOLINTEND(bugprone-macro-parentheses)

#endif  // COTASK_SCHEDULER_RUNTIME_STATUS_MACROS_H_
