#include "service/env_flags.h"

#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

// Defined in a file under service/, so ApplyFlagsFromEnvironment covers it.
ABSL_FLAG(int, env_flags_test_count, 1, "a flag for this test");
ABSL_FLAG(absl::Duration, env_flags_test_period, absl::Seconds(1), "a flag for this test");

namespace cotask::service {
namespace {

TEST(EnvFlagsTest, VariableNameIsThePrefixedUpperCaseFlagName) {
  EXPECT_EQ(EnvironmentVariableFor("drain_timeout"), "COTASK_DRAIN_TIMEOUT");
}

TEST(EnvFlagsTest, SetsFlagsFromTheEnvironment) {
  setenv("COTASK_ENV_FLAGS_TEST_COUNT", "42", 1);
  setenv("COTASK_ENV_FLAGS_TEST_PERIOD", "250ms", 1);
  ASSERT_TRUE(ApplyFlagsFromEnvironment().ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_env_flags_test_count), 42);
  EXPECT_EQ(absl::GetFlag(FLAGS_env_flags_test_period), absl::Milliseconds(250));
  unsetenv("COTASK_ENV_FLAGS_TEST_COUNT");
  unsetenv("COTASK_ENV_FLAGS_TEST_PERIOD");
}

TEST(EnvFlagsTest, ABadValueNamesTheVariableAndTheFlag) {
  setenv("COTASK_ENV_FLAGS_TEST_COUNT", "many", 1);
  absl::Status status = ApplyFlagsFromEnvironment();
  unsetenv("COTASK_ENV_FLAGS_TEST_COUNT");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      std::string(status.message())
          .rfind("COTASK_ENV_FLAGS_TEST_COUNT=\"many\" is not a valid --env_flags_test_count: ", 0),
      0u)
      << status;
}

}  // namespace
}  // namespace cotask::service
