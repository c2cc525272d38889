// Checks of what clients send, each naming the field and the bound it breaks, and the AIP-158
// page tokens of the List calls.
#ifndef COTASK_SCHEDULER_ENGINE_VALIDATION_H_
#define COTASK_SCHEDULER_ENGINE_VALIDATION_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace cotask::engine {

struct LabelBounds {
  size_t max_labels;
  size_t max_key_bytes;
  size_t max_value_bytes;
};

// Keys: 1..max_key_bytes of [A-Za-z0-9._/-]; values: up to max_value_bytes of UTF-8.
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            absl::string_view field, const LabelBounds& bounds);

// A well-formed google.protobuf.Duration in [0, max].
absl::StatusOr<absl::Duration> ValidateDuration(const google::protobuf::Duration& duration,
                                                absl::string_view field, absl::Duration max);

// A well-formed google.protobuf.Timestamp at most `max_ahead` from now (the past is fine).
absl::Status ValidateTimestamp(const google::protobuf::Timestamp& timestamp,
                               absl::string_view field, absl::Duration max_ahead);

absl::Status ValidateBytes(size_t size, absl::string_view field, size_t max);

// An environment variable's name: [A-Za-z_][A-Za-z0-9_]*.
bool IsEnvName(absl::string_view name);

// A name of a group, event or semaphore: 1 to 128 of [A-Za-z0-9._-].
absl::Status ValidateName(absl::string_view name, absl::string_view field);

// The --semaphores flag: "name=limit[,name=limit...]", limits 1 to kMaxSemaphoreLimit; the
// error names the entry.
inline constexpr int64_t kMaxSemaphoreLimit = 1'000'000;
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseSemaphores(
    absl::string_view flag);

std::chrono::nanoseconds ToChrono(absl::Duration duration);

// The page size to use: 0 means `default_size`, larger than `max_size` is lowered to it,
// negative is INVALID_ARGUMENT.
absl::StatusOr<int> PageSize(int requested, int default_size, int max_size);

// A page token is tied to its query: the request with page_size and page_token cleared.
// Encode gives an opaque token that resumes after `last_key`; Decode gives that key back, or
// INVALID_ARGUMENT naming page_token if the token is malformed or from another query.
std::string EncodePageToken(const google::protobuf::Message& query, absl::string_view last_key);
absl::StatusOr<std::string> DecodePageToken(const google::protobuf::Message& query,
                                            absl::string_view token);

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_VALIDATION_H_
