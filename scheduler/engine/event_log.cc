#include "scheduler/engine/event_log.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "google/protobuf/wire_format_lite.h"
#include "scheduler/runtime/check.h"

namespace cotask::engine {

namespace {

using google::protobuf::internal::WireFormatLite;

// The serialized size of a submessage field (its tag is one byte) whose content is `bytes`.
size_t FieldSize(size_t bytes) { return 1 + WireFormatLite::LengthDelimitedSize(bytes); }

uint32_t SizeOf(size_t bytes) {
  COTASK_CHECK(bytes <= UINT32_MAX, "an event of 4 GiB or more");
  return static_cast<uint32_t>(bytes);
}

}  // namespace

int64_t EventLog::Append(v1::Event event, bool last) {
  event.set_sequence(next_sequence());
  Entry entry;
  entry.bytes = SizeOf(event.ByteSizeLong());
  entry.whole = std::make_unique<v1::Event>(std::move(event));
  return Push(std::move(entry), last);
}

int64_t EventLog::AppendStateChange(TaskKey task, const google::protobuf::Timestamp& time,
                                    v1::Task::State state, int32_t attempt, bool empty_result,
                                    bool last) {
  // What v1::Event::ByteSizeLong gives for these fields (one-byte tags; zeros are not sent).
  size_t time_bytes = 0;
  if (time.seconds() != 0) time_bytes += 1 + WireFormatLite::Int64Size(time.seconds());
  if (time.nanos() != 0) time_bytes += 1 + WireFormatLite::Int32Size(time.nanos());
  size_t change_bytes = 0;
  if (state != 0) change_bytes += 1 + WireFormatLite::EnumSize(state);
  if (attempt != 0) change_bytes += 1 + WireFormatLite::Int32Size(attempt);
  if (empty_result) change_bytes += FieldSize(0);
  size_t bytes = 1 + WireFormatLite::Int64Size(next_sequence()) + FieldSize(time_bytes) +
                 FieldSize(change_bytes);
  if (task != 0) bytes += FieldSize(kTaskIdSize);
  Entry entry;
  entry.task = task;
  entry.seconds = time.seconds();
  entry.nanos = time.nanos();
  entry.attempt = attempt;
  entry.bytes = SizeOf(bytes);
  entry.state = static_cast<uint8_t>(state);
  entry.empty_result = empty_result;
  return Push(std::move(entry), last);
}

google::protobuf::Timestamp EventLog::TimeOf(const Entry& entry) {
  if (entry.whole != nullptr) return entry.whole->time();
  google::protobuf::Timestamp time;
  time.set_seconds(entry.seconds);
  time.set_nanos(entry.nanos);
  return time;
}

v1::Event EventLog::Whole(const Entry& entry, int64_t sequence) {
  v1::Event event;
  if (entry.whole != nullptr) {
    event = *entry.whole;
  } else {
    if (entry.task != 0) event.set_task(TaskIdOf(entry.task));
    *event.mutable_time() = TimeOf(entry);
    event.mutable_task_state()->set_state(static_cast<v1::Task::State>(entry.state));
    event.mutable_task_state()->set_attempt(entry.attempt);
    if (entry.empty_result) event.mutable_task_state()->mutable_result();
  }
  event.set_sequence(sequence);
  return event;
}

int64_t EventLog::Push(Entry entry, bool last) {
  COTASK_CHECK(!ended_, "appending to an event log that has ended");
  const size_t bytes = entry.bytes;
  if (chunks_.empty()) {
    // A task's log mostly holds its 3 or 4 state changes: one allocation, not three.
    chunks_.emplace_back().reserve(4);
  } else if (chunks_.back().size() == kChunk) {
    chunks_.emplace_back().reserve(kChunk);
  }
  chunks_.back().push_back(std::move(entry));
  bytes_ += bytes;
  ended_ = last;
  int64_t dropped = 0;
  // Keep the newest event whatever its size: a reader must always find the terminal one.
  while (bytes_ > max_bytes_ && size() > 1) {
    Entry& oldest = chunks_.front()[head_];
    bytes_ -= oldest.bytes;
    oldest.whole.reset();
    ++head_;
    ++first_sequence_;
    ++dropped;
    if (head_ == kChunk) {  // (then a later chunk holds the newest)
      chunks_.erase(chunks_.begin());
      head_ = 0;
    }
  }
  if (chunks_.size() == 1 && head_ > 0 && head_ >= size()) {
    std::vector<Entry>& lone = chunks_.front();
    lone.erase(lone.begin(), lone.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
  if (changed_ != nullptr) {
    changed_->Set();
    changed_.reset();
  }
  return dropped;
}

int64_t EventLog::Read(int64_t from, size_t max_bytes, std::vector<v1::Event>* out) const {
  from = std::max<int64_t>(from, 1);
  if (from < first_sequence_) {
    v1::Event& marker = out->emplace_back();
    marker.set_sequence(first_sequence_ - 1);  // resuming after it skips the gap
    marker.mutable_truncated()->set_first_sequence(from);
    marker.mutable_truncated()->set_last_sequence(first_sequence_ - 1);
    if (size() > 0) *marker.mutable_time() = TimeOf(At(0));
    from = first_sequence_;
  }
  size_t taken = 0;
  while (from < next_sequence()) {
    const Entry& entry = At(static_cast<size_t>(from - first_sequence_));
    if (taken > 0 && taken + entry.bytes > max_bytes) break;
    out->push_back(Whole(entry, from));
    taken += entry.bytes;
    ++from;
  }
  return from;
}

std::shared_ptr<runtime::Event> EventLog::Changed() {
  if (changed_ == nullptr) changed_ = std::make_shared<runtime::Event>();
  return changed_;
}

}  // namespace cotask::engine
