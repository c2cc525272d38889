#include "service/env_flags.h"

#include <cstdlib>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cotask::service {

std::string EnvironmentVariableFor(absl::string_view flag_name) {
  return absl::StrCat("COTASK_", absl::AsciiStrToUpper(flag_name));
}

absl::Status ApplyFlagsFromEnvironment() {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // cotask's own flags only (Abseil's --flagfile and friends keep their own rules).
    if (!absl::StrContains(flag->Filename(), "service/")) continue;
    std::string variable = EnvironmentVariableFor(name);
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(variable, "=\"", value, "\" is not a valid --", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace cotask::service
