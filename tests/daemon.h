// The real cotaskd for tests: started on 127.0.0.1 port 0 with the flags a test gives, its
// address read from its log, stopped (killed and reaped) when the Daemon goes away.
#ifndef COTASK_TESTS_DAEMON_H_
#define COTASK_TESTS_DAEMON_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/subprocess.h"

namespace grpc {
class ClientContext;
}

namespace cotask::testing {

struct Daemon {
  Subprocess process;
  std::string address;
  // host:port of /metrics; empty if not served.
  std::string metrics_address;
};

// Runs cotaskd with `args` (and `env` added to this process's environment) and waits until it
// listens.
absl::StatusOr<Daemon> StartDaemon(std::vector<std::string> args,
                                   const std::vector<std::string>& env = {});

// The path of the cotaskd binary under test.
const char* CotaskdPath();

// Every client call in a test has a deadline.
std::unique_ptr<grpc::ClientContext> ContextWithDeadline(
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace cotask::testing

#endif  // COTASK_TESTS_DAEMON_H_
