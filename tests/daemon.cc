#include "tests/daemon.h"

#include <grpcpp/client_context.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace cotask::testing {

const char* CotaskdPath() { return COTASKD_PATH; }

namespace {

// The host:port after `prefix` ("127.0.0.1:PORT") in a log; empty if there is none.
// (No std::regex: GCC 12 warns inside it under ASan.)
std::string AddressAfter(const std::string& log, absl::string_view prefix) {
  constexpr absl::string_view kHost = "127.0.0.1:";
  const size_t at = log.find(absl::StrCat(prefix, kHost));
  if (at == std::string::npos) return "";
  const size_t address_at = at + prefix.size();
  const size_t port_at = address_at + kHost.size();
  size_t end = port_at;
  while (end < log.size() && absl::ascii_isdigit(static_cast<unsigned char>(log[end]))) ++end;
  return end == port_at ? "" : log.substr(address_at, end - address_at);
}

}  // namespace

absl::StatusOr<Daemon> StartDaemon(std::vector<std::string> args,
                                   const std::vector<std::string>& env) {
  // Metrics on a port of their own too, unless the test says where.
  bool metrics_given = false;
  for (const std::string& arg : args) metrics_given |= arg.starts_with("--metrics_address");
  if (!metrics_given) args.insert(args.begin(), "--metrics_address=127.0.0.1:0");
  args.insert(args.begin(), CotaskdPath());
  auto process = Subprocess::Start(args, env);
  if (!process.ok()) return process.status();
  // "... listening on 127.0.0.1:PORT; metrics on http://127.0.0.1:PORT/metrics; ..."
  auto log = process->WaitForStderr("listening on ", std::chrono::seconds(20));
  if (!log.ok()) return log.status();
  std::string address = AddressAfter(*log, "listening on ");
  if (address.empty()) return absl::InternalError("no address in: " + *log);
  std::string metrics = AddressAfter(*log, "metrics on http://");
  return Daemon{std::move(*process), std::move(address), std::move(metrics)};
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace cotask::testing
