// Every cotaskd flag can also come from the environment: --drain_timeout from
// COTASK_DRAIN_TIMEOUT, and so on (COTASK_ + the flag's name in upper case). The command line
// wins over the environment, which wins over the default.
#ifndef COTASK_SERVICE_ENV_FLAGS_H_
#define COTASK_SERVICE_ENV_FLAGS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cotask::service {

// The environment variable for a flag: "drain_timeout" -> "COTASK_DRAIN_TIMEOUT".
std::string EnvironmentVariableFor(absl::string_view flag_name);

// Sets every flag defined in cotask's service/ sources from its environment variable, if set.
// Call before absl::ParseCommandLine. INVALID_ARGUMENT, naming the variable, for a bad value.
absl::Status ApplyFlagsFromEnvironment();

}  // namespace cotask::service

#endif  // COTASK_SERVICE_ENV_FLAGS_H_
