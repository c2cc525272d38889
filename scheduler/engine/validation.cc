#include "scheduler/engine/validation.h"

#include <algorithm>
#include <cstdint>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask::engine {
namespace {

bool IsLabelKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
         c == '/';
}

// A stable fingerprint of a query (FNV-1a over its deterministic serialization): the same
// query gives the same value in every process, unlike absl::Hash.
uint64_t Fingerprint(const google::protobuf::Message& query) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    query.SerializeToCodedStream(&coded);
  }
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            absl::string_view field, const LabelBounds& bounds) {
  if (labels.size() > bounds.max_labels) {
    return InvalidField(field, absl::StrCat(labels.size(), " labels, more than the limit"),
                        absl::StrCat(bounds.max_labels, " labels"));
  }
  for (const auto& [key, value] : labels) {
    const std::string key_field = absl::StrCat(field, "[\"", absl::CHexEscape(key), "\"]");
    if (key.empty() || key.size() > bounds.max_key_bytes) {
      return InvalidField(key_field, "a label key must have 1 to the limit of bytes",
                          absl::StrCat(bounds.max_key_bytes, " bytes"));
    }
    for (char c : key) {
      if (!IsLabelKeyChar(c)) {
        return InvalidField(key_field, "a label key may only have [A-Za-z0-9._/-]");
      }
    }
    if (value.size() > bounds.max_value_bytes) {
      return InvalidField(
          key_field, absl::StrCat("a label value of ", value.size(), " bytes, more than the limit"),
          absl::StrCat(bounds.max_value_bytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> ValidateDuration(const google::protobuf::Duration& duration,
                                                absl::string_view field, absl::Duration max) {
  const int64_t seconds = duration.seconds();
  const int32_t nanos = duration.nanos();
  if (nanos <= -1'000'000'000 || nanos >= 1'000'000'000 || (seconds > 0 && nanos < 0) ||
      (seconds < 0 && nanos > 0)) {
    return InvalidField(field, "not a valid google.protobuf.Duration (nanos out of range)");
  }
  if (seconds < 0 || nanos < 0) return InvalidField(field, "must not be negative", "0s");
  if (seconds > absl::ToInt64Seconds(max)) {
    return InvalidField(field, "longer than the limit", absl::FormatDuration(max));
  }
  absl::Duration d = absl::Seconds(seconds) + absl::Nanoseconds(nanos);
  if (d > max) return InvalidField(field, "longer than the limit", absl::FormatDuration(max));
  return d;
}

absl::Status ValidateTimestamp(const google::protobuf::Timestamp& timestamp,
                               absl::string_view field, absl::Duration max_ahead) {
  // google.protobuf.Timestamp's range: 0001-01-01 to 9999-12-31.
  if (timestamp.seconds() < -62135596800 || timestamp.seconds() > 253402300799 ||
      timestamp.nanos() < 0 || timestamp.nanos() >= 1'000'000'000) {
    return InvalidField(field, "not a valid google.protobuf.Timestamp");
  }
  const absl::Time at =
      absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
  if (at - absl::Now() > max_ahead) {
    return InvalidField(field, "further away than the limit", absl::FormatDuration(max_ahead));
  }
  return absl::OkStatus();
}

absl::Status ValidateBytes(size_t size, absl::string_view field, size_t max) {
  if (size <= max) return absl::OkStatus();
  return InvalidField(field, absl::StrCat(size, " bytes, more than the limit"),
                      absl::StrCat(max, " bytes"));
}

std::chrono::nanoseconds ToChrono(absl::Duration duration) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(duration));
}

absl::StatusOr<int> PageSize(int requested, int default_size, int max_size) {
  if (requested < 0) return InvalidField("page_size", "must not be negative", "0");
  if (requested == 0) return default_size;
  return std::min(requested, max_size);
}

std::string EncodePageToken(const google::protobuf::Message& query, absl::string_view last_key) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(absl::StrFormat("%016x", Fingerprint(query)), last_key));
}

absl::StatusOr<std::string> DecodePageToken(const google::protobuf::Message& query,
                                            absl::string_view token) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() < 16) {
    return InvalidField("page_token", "not a token this server made");
  }
  if (raw.substr(0, 16) != absl::StrFormat("%016x", Fingerprint(query))) {
    return InvalidField("page_token",
                        "the token belongs to another query (the filters must not change "
                        "between pages)");
  }
  return raw.substr(16);
}

bool IsEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

absl::Status ValidateName(absl::string_view name, absl::string_view field) {
  constexpr size_t kMaxNameBytes = 128;
  if (name.empty()) return InvalidField(field, "required");
  if (name.size() > kMaxNameBytes) {
    return InvalidField(field, absl::StrCat(name.size(), " bytes, more than the limit"),
                        absl::StrCat(kMaxNameBytes, " bytes"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return InvalidField(field, "a name may only have [A-Za-z0-9._-]");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseSemaphores(
    absl::string_view flag) {
  std::vector<std::pair<std::string, int64_t>> out;
  if (flag.empty()) return out;
  for (absl::string_view entry : absl::StrSplit(flag, ',')) {
    const std::string field = absl::StrCat("--semaphores entry \"", entry, "\"");
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(entry, '=');
    COTASK_RETURN_IF_ERROR(ValidateName(parts.first, field));
    int64_t limit = 0;
    if (!absl::SimpleAtoi(parts.second, &limit) || limit < 1 || limit > kMaxSemaphoreLimit) {
      return InvalidField(field, "must be name=limit, the limit 1 to 1000000",
                          absl::StrCat(kMaxSemaphoreLimit));
    }
    for (const auto& [name, unused] : out) {
      if (name == parts.first) return InvalidField(field, "declares a semaphore a second time");
    }
    out.emplace_back(std::string(parts.first), limit);
  }
  return out;
}

}  // namespace cotask::engine
