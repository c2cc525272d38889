// cotaskd: the cotask server.
//
// Signals: SIGTERM and SIGINT drain (health goes NOT_SERVING, calls in flight get
// --drain_period to finish) and exit 0; SIGHUP reloads what can be reloaded (nothing yet: it
// says so). They are blocked before any thread starts and taken by sigwait here, so no gRPC
// thread ever runs a handler.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/env_flags.h"
#include "service/server.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051",
          "host:port for gRPC (port 0 picks a free one). Env: COTASK_ADDRESS");
ABSL_FLAG(absl::Duration, drain_period, absl::Seconds(10),
          "on SIGTERM/SIGINT, how long calls in flight may take to finish before they are "
          "cancelled. Env: COTASK_DRAIN_PERIOD");

namespace {

void Log(const std::string& message) {
  absl::FPrintF(stderr, "%s cotaskd: %s\n",
                absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                message);
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::SetProgramUsageMessage(
      "cotaskd: the cotask task scheduler server.\n"
      "Usage: cotaskd [--address=127.0.0.1:50051] [--drain_period=10s]\n"
      "Every flag may also be set from the environment as COTASK_<FLAG NAME IN CAPITALS>.");
  if (absl::Status status = cotask::service::ApplyFlagsFromEnvironment(); !status.ok()) {
    Log(absl::StrCat("error: ", status.message()));
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_drain_period) < absl::ZeroDuration()) {
    Log("error: --drain_period must be >= 0s");
    return 2;
  }

  cotask::service::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  auto server = cotask::service::Server::Start(options);
  if (!server.ok()) {
    Log(absl::StrCat("error: ", server.status().message()));
    return 1;
  }
  Log(absl::StrCat("listening on ", (*server)->address()));

  while (true) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      Log("SIGHUP: nothing to reload");
      continue;
    }
    const absl::Duration drain = absl::GetFlag(FLAGS_drain_period);
    Log(absl::StrCat(signal_number == SIGTERM ? "SIGTERM" : "SIGINT", ": draining, up to ",
                     absl::FormatDuration(drain)));
    (*server)->Shutdown(drain);
    Log("stopped");
    return 0;
  }
}
