#include "scheduler/engine/event_log.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "scheduler/runtime/check.h"

namespace cotask::engine {

int64_t EventLog::Append(v1::Event event, bool last) {
  COTASK_CHECK(!ended_, "appending to an event log that has ended");
  event.set_sequence(next_sequence());
  const size_t bytes = event.ByteSizeLong();
  events_.push_back({std::move(event), bytes});
  bytes_ += bytes;
  ended_ = last;
  int64_t dropped = 0;
  // Keep the newest event whatever its size: a reader must always find the terminal one.
  while (bytes_ > max_bytes_ && size() > 1) {
    bytes_ -= events_[head_].bytes;
    events_[head_].event = v1::Event();
    ++head_;
    ++first_sequence_;
    ++dropped;
  }
  if (head_ > 0 && head_ >= size()) {
    events_.erase(events_.begin(), events_.begin() + static_cast<ptrdiff_t>(head_));
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
    if (size() > 0) *marker.mutable_time() = events_[head_].event.time();
    from = first_sequence_;
  }
  size_t taken = 0;
  while (from < next_sequence()) {
    const Entry& entry = events_[head_ + static_cast<size_t>(from - first_sequence_)];
    if (taken > 0 && taken + entry.bytes > max_bytes) break;
    out->push_back(entry.event);
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
