#include "tests/daemon.h"

#include <grpcpp/client_context.h>

#include <regex>
#include <utility>

namespace cotask::testing {

const char* CotaskdPath() { return COTASKD_PATH; }

absl::StatusOr<Daemon> StartDaemon(std::vector<std::string> args,
                                   const std::vector<std::string>& env) {
  args.insert(args.begin(), CotaskdPath());
  auto process = Subprocess::Start(args, env);
  if (!process.ok()) return process.status();
  auto log = process->WaitForStderr("listening on ", std::chrono::seconds(20));
  if (!log.ok()) return log.status();
  std::smatch match;
  if (!std::regex_search(*log, match, std::regex("listening on (127\\.0\\.0\\.1:[0-9]+)"))) {
    return absl::InternalError("no address in: " + *log);
  }
  return Daemon{std::move(*process), match[1]};
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace cotask::testing
