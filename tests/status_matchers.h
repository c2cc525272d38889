// GoogleMock matchers for absl::Status, shared by cotask's tests.
#ifndef COTASK_TESTS_STATUS_MATCHERS_H_
#define COTASK_TESTS_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace cotask::testing {

// StatusIs(code, message): the exact code, and a message that is `message` (a string) or
// matches it (a matcher such as HasSubstr); any message if none is given.
template <class MessageMatcher = decltype(::testing::_)>
::testing::Matcher<const absl::Status&> StatusIs(absl::StatusCode code,
                                                 MessageMatcher message = ::testing::_) {
  return ::testing::AllOf(
      ::testing::Property("code", &absl::Status::code, code),
      ::testing::ResultOf([](const absl::Status& s) { return std::string(s.message()); },
                          ::testing::MatcherCast<std::string>(message)));
}

}  // namespace cotask::testing

#endif  // COTASK_TESTS_STATUS_MATCHERS_H_
