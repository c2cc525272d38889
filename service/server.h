// Server: cotaskd's gRPC server. It serves grpc.health.v1.Health and server reflection (so
// grpcurl and grpcui work); the task API joins it with the engine.
//
// Thread-safety: Start, SetServing and Shutdown may be called from any thread, but Shutdown
// must not be called from a thread that polls one of the server's completion queues.
#ifndef COTASK_SERVICE_SERVER_H_
#define COTASK_SERVICE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Server;
}

namespace cotask::service {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see Server::address()).
  std::string address = "127.0.0.1:50051";
};

class Server {
 public:
  // UNAVAILABLE (naming the address) if it cannot listen there.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  // host:port actually bound, with the real port when 0 was asked for.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // What grpc.health.v1.Health answers for the server as a whole ("") and for each service.
  void SetServing(bool serving);

  // Stops accepting calls; calls in flight get until `drain` to finish, then are cancelled.
  void Shutdown(absl::Duration drain);

 private:
  Server(std::unique_ptr<grpc::Server> server, std::string address, int port);

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_;
  bool shut_down_ = false;
};

}  // namespace cotask::service

#endif  // COTASK_SERVICE_SERVER_H_
