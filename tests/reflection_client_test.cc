// A grpcurl-style client against the real cotaskd: it knows no cotask .proto file. It learns the
// API from server reflection, builds requests from JSON with the descriptors it got, sends them
// with gRPC's generic stub and reads the answers back as JSON, exactly as grpcurl and grpcui do.
// With it, a group of sleep tasks and an exec task run to their end.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"

namespace cotask {
namespace {

using ::cotask::testing::ContextWithDeadline;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace pb = google::protobuf;
namespace reflection = grpc::reflection::v1alpha;

std::string ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Shuts the queue down and takes what is left in it, so that it can be destroyed.
void CloseQueue(grpc::CompletionQueue& queue) {
  queue.Shutdown();
  void* tag;
  bool ok;
  while (queue.Next(&tag, &ok)) {
  }
}

absl::Status ToAbsl(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

grpc::ByteBuffer FromBytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// The client: descriptors from reflection, calls through the generic stub.
class ReflectionClient {
 public:
  explicit ReflectionClient(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        generic_(channel_) {}

  // grpcurl's "list" and "describe": fetches the file defining `service` and what it imports.
  absl::Status Load(const std::string& service) {
    auto stub = reflection::ServerReflection::NewStub(channel_);
    auto context = ContextWithDeadline();
    auto stream = stub->ServerReflectionInfo(context.get());
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(service);
    if (!stream->Write(request)) return absl::UnavailableError("reflection stream closed");
    stream->WritesDone();
    reflection::ServerReflectionResponse response;
    if (!stream->Read(&response)) return absl::UnavailableError("no reflection answer");
    if (response.has_error_response()) {
      return absl::NotFoundError(response.error_response().error_message());
    }
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) return absl::InternalError("bad descriptor");
      database_.Add(file);
    }
    grpc::Status status = stream->Finish();
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    service_ = pool_.FindServiceByName(service);
    if (service_ == nullptr) return absl::NotFoundError("service not in the descriptors");
    return absl::OkStatus();
  }

  // A unary call, JSON in and out.
  absl::StatusOr<std::string> Call(const std::string& method_name, const std::string& json) {
    const pb::MethodDescriptor* method = service_->FindMethodByName(method_name);
    if (method == nullptr) return absl::NotFoundError(method_name);
    absl::StatusOr<std::string> request = Encode(*method->input_type(), json);
    if (!request.ok()) return request.status();
    grpc::CompletionQueue queue;
    auto context = ContextWithDeadline();
    auto call =
        generic_.PrepareUnaryCall(context.get(), Path(*method), FromBytes(*request), &queue);
    call->StartCall();
    grpc::ByteBuffer response;
    grpc::Status status;
    call->Finish(&response, &status, this);
    void* tag;
    bool ok;
    queue.Next(&tag, &ok);
    CloseQueue(queue);
    if (!status.ok()) return ToAbsl(status);
    return Decode(*method->output_type(), ToBytes(response));
  }

  // A server-streaming call: every message, as JSON, until the stream ends.
  absl::StatusOr<std::vector<std::string>> Stream(const std::string& method_name,
                                                  const std::string& json) {
    const pb::MethodDescriptor* method = service_->FindMethodByName(method_name);
    if (method == nullptr) return absl::NotFoundError(method_name);
    absl::StatusOr<std::string> request = Encode(*method->input_type(), json);
    if (!request.ok()) return request.status();
    grpc::CompletionQueue queue;
    auto context = ContextWithDeadline(30s);
    auto call = generic_.PrepareCall(context.get(), Path(*method), &queue);
    void* tag;
    bool ok = false;
    auto step = [&] { return queue.Next(&tag, &ok) && ok; };
    call->StartCall(this);
    if (!step()) return absl::UnavailableError("the call did not start");
    call->WriteLast(FromBytes(*request), grpc::WriteOptions(), this);
    if (!step()) return absl::UnavailableError("the request was not sent");
    std::vector<std::string> messages;
    grpc::ByteBuffer message;
    while (true) {
      call->Read(&message, this);
      if (!step()) break;
      absl::StatusOr<std::string> decoded = Decode(*method->output_type(), ToBytes(message));
      if (!decoded.ok()) return decoded.status();
      messages.push_back(*decoded);
    }
    grpc::Status status;
    call->Finish(&status, this);
    queue.Next(&tag, &ok);
    CloseQueue(queue);
    if (!status.ok()) return ToAbsl(status);
    return messages;
  }

 private:
  static std::string Path(const pb::MethodDescriptor& method) {
    return absl::StrCat("/", method.service()->full_name(), "/", method.name());
  }
  absl::StatusOr<std::string> Encode(const pb::Descriptor& type, const std::string& json) {
    std::unique_ptr<pb::Message> message(factory_.GetPrototype(&type)->New());
    auto status = pb::util::JsonStringToMessage(json, message.get());
    if (!status.ok()) return absl::InvalidArgumentError(status.ToString());
    return message->SerializeAsString();
  }
  absl::StatusOr<std::string> Decode(const pb::Descriptor& type, const std::string& bytes) {
    std::unique_ptr<pb::Message> message(factory_.GetPrototype(&type)->New());
    if (!message->ParseFromString(bytes)) return absl::InternalError("bad answer");
    std::string json;
    auto status = pb::util::MessageToJsonString(*message, &json);
    if (!status.ok()) return absl::InternalError(status.ToString());
    return json;
  }

  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub generic_;
  pb::SimpleDescriptorDatabase database_;
  pb::DescriptorPool pool_{&database_};
  pb::DynamicMessageFactory factory_{&pool_};
  const pb::ServiceDescriptor* service_ = nullptr;
};

TEST(ReflectionClientTest, RunsAGroupOfSleepTasksAndAnExecTaskKnowingNoProtoFile) {
  auto daemon = testing::StartDaemon({"--address=127.0.0.1:0", "--exec_allow=/bin/echo"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ReflectionClient client(daemon->address);
  const absl::Status loaded = client.Load("cotask.v1.Scheduler");
  ASSERT_TRUE(loaded.ok()) << loaded;

  auto group = client.Call("CreateGroup", R"({"name": "first"})");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_THAT(*group, HasSubstr(R"("state":"OPEN")"));
  for (const char* duration : {"0.05s", "0.1s"}) {
    auto task = client.Call("CreateTask", absl::StrCat(R"({"group": "first", "spec": {"sleep": )",
                                                       R"({"duration": ")", duration, R"("}}})"));
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_THAT(*task, HasSubstr(R"("state":"PENDING")"));
  }
  auto exec = client.Call(
      "CreateTask",
      R"({"group": "first", "spec": {"exec": {"argv": ["/bin/echo", "hello", "world"]}}})");
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto closed = client.Call("CloseGroup", R"({"name": "first"})");
  ASSERT_TRUE(closed.ok()) << closed.status();

  auto events = client.Stream("Watch", R"({"group": "first"})");
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_FALSE(events->empty());
  EXPECT_THAT(events->back(), HasSubstr(R"("groupState":{"state":"SUCCEEDED"})"));

  auto listed = client.Call("ListTasks", R"({"group": "first", "state": "SUCCEEDED"})");
  ASSERT_TRUE(listed.ok()) << listed.status();
  // The exec task's result: "hello world\n", base64 in JSON.
  EXPECT_THAT(*listed, HasSubstr(R"("output":"aGVsbG8gd29ybGQK")"));
  EXPECT_THAT(*listed, HasSubstr(R"("argv":["/bin/echo","hello","world"])"));
}

}  // namespace
}  // namespace cotask
