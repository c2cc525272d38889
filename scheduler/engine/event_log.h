// EventLog: the ordered, bounded event log of one task or group.
//
// Sequence numbers start at 1 and have no gaps. The log keeps at most `max_bytes` of events
// (their serialized size), dropping the oldest first; a reader asking for dropped events gets
// one Truncated event in their place (numbered as the last dropped one), never a silent gap. The
// last event appended may end the log (a terminal state): readers then know nothing follows.
//
// A task's plain state change (no result, no error: most events of most logs) is kept compact,
// its fields without a message (a group's child by its TaskKey, not its id), and made into a
// v1::Event when it is read: a task that nobody watches never makes one, and a group's log
// takes 40 bytes a child's event. Its size counts as the event's would.
//
// Watchers wait with `co_await log.Changed()->Wait()`: the event is set, once, by the next
// Append. Loop thread only.
#ifndef COTASK_SCHEDULER_ENGINE_EVENT_LOG_H_
#define COTASK_SCHEDULER_ENGINE_EVENT_LOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "cotask/v1/scheduler.pb.h"
#include "scheduler/engine/task_key.h"
#include "scheduler/runtime/event.h"

namespace cotask::engine {

class EventLog {
 public:
  explicit EventLog(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Stamps the event with the next sequence number and appends it; `last` ends the log.
  // Returns the number of events dropped to stay within the bound.
  int64_t Append(v1::Event event, bool last = false);
  // Appends what Append(event) would of an event with only these fields: `task` (the id of
  // this key; 0: none), `time`, and task_state's `state`, `attempt` and, if `empty_result`, an
  // empty result (a sleep task's success).
  int64_t AppendStateChange(TaskKey task, const google::protobuf::Timestamp& time,
                            v1::Task::State state, int32_t attempt, bool empty_result,
                            bool last = false);

  // Appends to `out` the events from `from` on (a Truncated first for any that were
  // dropped), stopping after `max_bytes` of them (at least one event is returned if any is
  // there). Returns the sequence number to read from next.
  int64_t Read(int64_t from, size_t max_bytes, std::vector<v1::Event>* out) const;

  // Set by the next Append (and never cleared).
  std::shared_ptr<runtime::Event> Changed();

  bool ended() const { return ended_; }
  // The sequence number the next event will get.
  int64_t next_sequence() const { return first_sequence_ + static_cast<int64_t>(size()); }
  size_t bytes() const { return bytes_; }

 private:
  // A compact state change, or (`whole` set) any other event.
  struct Entry {
    TaskKey task = 0;
    int64_t seconds = 0;
    int32_t nanos = 0;
    int32_t attempt = 0;
    uint32_t bytes = 0;  // the event's serialized size (events are far below 4 GiB)
    uint8_t state = 0;   // a v1::Task::State
    bool empty_result = false;
    std::unique_ptr<v1::Event> whole;
  };

  // Entries per chunk (see chunks_).
  static constexpr size_t kChunk = 1024;

  size_t size() const {
    return chunks_.empty() ? 0 : (chunks_.size() - 1) * kChunk + chunks_.back().size() - head_;
  }
  // The i-th entry kept (0: the oldest).
  const Entry& At(size_t i) const {
    const size_t n = head_ + i;
    return chunks_[n / kChunk][n % kChunk];
  }
  int64_t Push(Entry entry, bool last);
  static google::protobuf::Timestamp TimeOf(const Entry& entry);
  // The event as readers see it, numbered `sequence`.
  static v1::Event Whole(const Entry& entry, int64_t sequence);

  size_t max_bytes_;
  // The entries, in chunks of kChunk (the last one filling; the first grows as a vector until
  // it is whole, so a task's few events take one small block). A long log, a big group's,
  // grows by a chunk at a time: no copy of what it holds, and no block twice the size to
  // touch. The kept entries start at chunks_[0][head_]; a chunk is freed once all of its
  // entries are dropped (a lone first chunk is compacted when half of it is). (Not a
  // std::deque: an empty one allocates 512 bytes.)
  absl::InlinedVector<std::vector<Entry>, 1> chunks_;
  size_t head_ = 0;
  int64_t first_sequence_ = 1;  // of the oldest entry kept
  size_t bytes_ = 0;
  bool ended_ = false;
  std::shared_ptr<runtime::Event> changed_;
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_EVENT_LOG_H_
