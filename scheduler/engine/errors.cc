#include "scheduler/engine/errors.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace cotask::engine {
namespace {

bool ReadErrorInfo(const absl::Status& status, google::rpc::ErrorInfo* info) {
  auto payload = status.GetPayload(kErrorInfoTypeUrl);
  return payload.has_value() && info->ParseFromString(std::string(*payload));
}

}  // namespace

absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                   const ErrorMetadata& metadata) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : metadata) (*info.mutable_metadata())[key] = value;
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status InvalidField(absl::string_view field, absl::string_view problem,
                          absl::string_view bound) {
  ErrorMetadata metadata = {{"field", std::string(field)}};
  if (!bound.empty()) metadata.emplace_back("bound", std::string(bound));
  return Error(absl::StatusCode::kInvalidArgument, "INVALID_FIELD",
               absl::StrCat(field, ": ", problem), metadata);
}

absl::Status PrefixField(const absl::Status& status, absl::string_view prefix) {
  google::rpc::ErrorInfo info;
  if (!ReadErrorInfo(status, &info) || !info.metadata().contains("field")) {
    return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
  }
  std::string& field = (*info.mutable_metadata())["field"];
  field = absl::StrCat(prefix, field);
  absl::Status prefixed(status.code(), absl::StrCat(prefix, status.message()));
  prefixed.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return prefixed;
}

std::string ErrorReason(const absl::Status& status) {
  google::rpc::ErrorInfo info;
  return ReadErrorInfo(status, &info) ? info.reason() : std::string();
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status rpc;
  rpc.set_code(static_cast<int>(status.code()));
  rpc.set_message(std::string(status.message()));
  if (status.ok()) return rpc;
  google::rpc::ErrorInfo info;
  if (!ReadErrorInfo(status, &info)) {
    info.set_reason(absl::StatusCodeToString(status.code()));  // "NOT_FOUND"
    info.set_domain(std::string(kErrorDomain));
  }
  google::protobuf::Any* detail = rpc.add_details();
  detail->set_type_url(std::string(kErrorInfoTypeUrl));
  detail->set_value(info.SerializeAsString());
  return rpc;
}

absl::Status FromRpcStatus(const google::rpc::Status& rpc) {
  absl::Status status(static_cast<absl::StatusCode>(rpc.code()), rpc.message());
  if (status.ok()) return status;
  for (const google::protobuf::Any& detail : rpc.details()) {
    if (detail.type_url() == kErrorInfoTypeUrl) {
      status.SetPayload(kErrorInfoTypeUrl, absl::Cord(detail.value()));
      break;
    }
  }
  return status;
}

}  // namespace cotask::engine
