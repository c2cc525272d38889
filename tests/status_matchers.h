// GoogleMock matchers for absl::Status, shared by cotask's tests.
#ifndef COTASK_TESTS_STATUS_MATCHERS_H_
#define COTASK_TESTS_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"

namespace cotask::testing {

// StatusIs(code, message): the exact code and the exact message.
MATCHER_P2(StatusIs, code, message,
           std::string(negation ? "isn't " : "is ") + absl::StatusCodeToString(code) + ": " +
               std::string(message)) {
  return arg.code() == code && arg.message() == message;
}

}  // namespace cotask::testing

#endif  // COTASK_TESTS_STATUS_MATCHERS_H_
