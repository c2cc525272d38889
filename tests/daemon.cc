#include "tests/daemon.h"

#include <grpcpp/client_context.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace cotask::testing {

const char* CotaskdPath() { return COTASKD_PATH; }

absl::StatusOr<Daemon> StartDaemon(std::vector<std::string> args,
                                   const std::vector<std::string>& env) {
  args.insert(args.begin(), CotaskdPath());
  auto process = Subprocess::Start(args, env);
  if (!process.ok()) return process.status();
  auto log = process->WaitForStderr("listening on ", std::chrono::seconds(20));
  if (!log.ok()) return log.status();
  // "... listening on 127.0.0.1:PORT; ..." (no std::regex: GCC 12 warns inside it under ASan)
  constexpr absl::string_view kListening = "listening on ";
  constexpr absl::string_view kHost = "127.0.0.1:";
  const size_t at = log->find(absl::StrCat(kListening, kHost));
  if (at == std::string::npos) return absl::InternalError("no address in: " + *log);
  const size_t address_at = at + kListening.size();
  const size_t port_at = address_at + kHost.size();
  size_t end = port_at;
  while (end < log->size() && absl::ascii_isdigit(static_cast<unsigned char>((*log)[end]))) ++end;
  if (end == port_at) return absl::InternalError("no port in: " + *log);
  return Daemon{std::move(*process), log->substr(address_at, end - address_at)};
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace cotask::testing
