// The real cotaskd binary, started on 127.0.0.1 port 0, checked from outside with real gRPC
// clients: health, reflection, flags from the command line and the environment, and a clean
// exit on SIGTERM and SIGINT.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/subprocess.h"

namespace cotask {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using namespace std::chrono_literals;

using testing::ContextWithDeadline;
using testing::StartDaemon;

TEST(CotaskdTest, HealthAnswersServingForTheServerAndTheSchedulerOnly) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto channel = grpc::CreateChannel(daemon->address, grpc::InsecureChannelCredentials());
  auto health = Health::NewStub(channel);
  HealthCheckRequest request;
  HealthCheckResponse response;
  for (const char* service : {"", "cotask.v1.Scheduler"}) {
    request.set_service(service);
    grpc::Status status = health->Check(ContextWithDeadline().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << service;
  }
  request.set_service("no.such.Service");
  grpc::Status status = health->Check(ContextWithDeadline().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no service named \"no.such.Service\""));
  // Watch answers SERVICE_UNKNOWN instead, as the health protocol says.
  auto context = ContextWithDeadline();
  auto watch = health->Watch(context.get(), request);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  context->TryCancel();
}

TEST(CotaskdTest, ServesReflectionListingItsServices) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto channel = grpc::CreateChannel(daemon->address, grpc::InsecureChannelCredentials());
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  auto context = ContextWithDeadline();
  auto stream = reflection->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names, IsSupersetOf({"cotask.v1.Scheduler", "grpc.health.v1.Health",
                                   "grpc.reflection.v1alpha.ServerReflection"}));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(CotaskdTest, SigtermDrainsAndExitsZero) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0", "--drain_timeout=3s"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  // A health watcher sees NOT_SERVING when the drain starts.
  auto channel = grpc::CreateChannel(daemon->address, grpc::InsecureChannelCredentials());
  auto health = Health::NewStub(channel);
  auto context = ContextWithDeadline(20000ms);
  HealthCheckRequest request;
  auto watch = health->Watch(context.get(), request);
  HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);

  daemon->process.Signal(SIGTERM);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  // Once the drain is over, the watch ends: the server waits for nobody.
  EXPECT_FALSE(watch->Read(&response));
  grpc::Status ended = watch->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ended.error_message(), "the server is shutting down");
  auto exit_status = daemon->process.Wait(20s);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status));
  EXPECT_EQ(WEXITSTATUS(*exit_status), 0);
  EXPECT_THAT(daemon->process.stderr_text(), HasSubstr("SIGTERM: draining, up to 3s"));
  EXPECT_THAT(daemon->process.stderr_text(), HasSubstr("cotaskd: stopped"));
}

TEST(CotaskdTest, SigintExitsZeroAndSighupIsAnsweredWithoutExiting) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon->process.Signal(SIGHUP);
  ASSERT_TRUE(daemon->process.WaitForStderr("SIGHUP: nothing to reload", 10s).ok());
  daemon->process.Signal(SIGINT);
  auto exit_status = daemon->process.Wait(20s);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status));
  EXPECT_EQ(WEXITSTATUS(*exit_status), 0);
}

TEST(CotaskdTest, TakesItsFlagsFromTheEnvironment) {
  auto daemon = StartDaemon({}, {"COTASK_ADDRESS=127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  EXPECT_NE(daemon->address, "127.0.0.1:50051");
}

TEST(CotaskdTest, TheCommandLineWinsOverTheEnvironment) {
  auto daemon = StartDaemon({"--address=127.0.0.1:0"}, {"COTASK_ADDRESS=256.0.0.1:1"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
}

TEST(CotaskdTest, BadSettingsAreOneClearErrorAndANonZeroExit) {
  struct Case {
    std::vector<std::string> args, env;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--address=256.0.0.1:0"},
       {},
       1,
       "error: cannot listen on --address=256.0.0.1:0: it must be host:port"},
      {{},
       {"COTASK_DRAIN_TIMEOUT=soon", "COTASK_ADDRESS=127.0.0.1:0"},
       2,
       "error: COTASK_DRAIN_TIMEOUT=\"soon\" is not a valid --drain_timeout"},
      {{"--address=127.0.0.1:0", "--drain_timeout=-1s"},
       {},
       2,
       "error: --drain_timeout must be >= 0s"},
      {{"--address=127.0.0.1:0", "--io_threads=-2"},
       {},
       2,
       "error: --io_threads must be from 0 to 64, or -1 (automatic)"},
      {{"--address=127.0.0.1:0", "--io_threads=65"},
       {},
       2,
       "error: --io_threads must be from 0 to 64, or -1 (automatic)"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.begin(), testing::CotaskdPath());
    auto process = testing::Subprocess::Start(args, c.env);
    ASSERT_TRUE(process.ok());
    auto exit_status = process->Wait(20s);
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_TRUE(WIFEXITED(*exit_status));
    EXPECT_EQ(WEXITSTATUS(*exit_status), c.exit_code) << process->stderr_text();
    EXPECT_THAT(process->stderr_text(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace cotask
