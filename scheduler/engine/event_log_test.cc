#include "scheduler/engine/event_log.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace cotask::engine {
namespace {

google::protobuf::Timestamp Time(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp time;
  time.set_seconds(seconds);
  time.set_nanos(nanos);
  return time;
}

struct Change {
  TaskKey task;  // 0: none
  google::protobuf::Timestamp time;
  v1::Task::State state;
  int32_t attempt;
  bool empty_result;
};

v1::Event WholeEvent(const Change& change) {
  v1::Event event;
  if (change.task != 0) event.set_task(TaskIdOf(change.task));
  *event.mutable_time() = change.time;
  event.mutable_task_state()->set_state(change.state);
  event.mutable_task_state()->set_attempt(change.attempt);
  if (change.empty_result) event.mutable_task_state()->mutable_result();
  return event;
}

// Every field zero or not, small and large (multi-byte varints, negative nanos are not valid
// Timestamps but are still counted right), keys from the smallest to the largest, and sequence
// numbers past one byte.
std::vector<Change> Changes() {
  std::vector<Change> changes = {
      {0, Time(0, 0), v1::Task::PENDING, 1, false},
      {0x5f1c2a3b4c5, Time(1'790'000'000, 123'456'789), v1::Task::RUNNING, 1, false},
      {0, Time(1'790'000'000, 0), v1::Task::SUCCEEDED, 1, true},
      {1, Time(1, 999'999'999), v1::Task::STATE_UNSPECIFIED, 0, false},
      {0xffffffffffffff, Time(-62'135'596'800, 1), v1::Task::CANCELLED, 300'000, true},
      {0x5f1c2a3b4c6, Time(253'402'300'799, 999'999'999), v1::Task::TIMED_OUT, 1, false},
  };
  for (int i = 0; i < 300; ++i) {
    changes.push_back(
        {0x5f1c2a3b4c5, Time(1'790'000'000 + i, i * 1000), v1::Task::QUEUED, i + 1, i % 2 == 0});
  }
  return changes;
}

TEST(EventLogTest, ACompactStateChangeReadsAndCountsAsTheWholeEventWould) {
  EventLog whole(1 << 30);
  EventLog compact(1 << 30);
  for (const Change& change : Changes()) {
    whole.Append(WholeEvent(change));
    compact.AppendStateChange(change.task, change.time, change.state, change.attempt,
                              change.empty_result);
    ASSERT_EQ(compact.bytes(), whole.bytes()) << "after " << TaskIdOf(change.task);
  }
  std::vector<v1::Event> from_whole;
  std::vector<v1::Event> from_compact;
  EXPECT_EQ(whole.Read(1, 1 << 30, &from_whole), compact.Read(1, 1 << 30, &from_compact));
  ASSERT_EQ(from_compact.size(), Changes().size());
  for (size_t i = 0; i < from_whole.size(); ++i) {
    EXPECT_EQ(from_compact[i].SerializeAsString(), from_whole[i].SerializeAsString())
        << from_compact[i].DebugString() << " vs " << from_whole[i].DebugString();
    EXPECT_EQ(from_compact[i].sequence(), static_cast<int64_t>(i) + 1);
  }
}

TEST(EventLogTest, CompactAndWholeEventsMixInOneLogInOrder) {
  EventLog log(1 << 20);
  log.AppendStateChange(0, Time(10, 0), v1::Task::PENDING, 1, false);
  v1::Event output;
  *output.mutable_time() = Time(11, 0);
  output.mutable_output()->set_data("hello");
  log.Append(output);
  log.AppendStateChange(0, Time(12, 0), v1::Task::SUCCEEDED, 1, true, /*last=*/true);
  EXPECT_TRUE(log.ended());
  std::vector<v1::Event> events;
  EXPECT_EQ(log.Read(2, 1 << 20, &events), 4);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].sequence(), 2);
  EXPECT_EQ(events[0].output().data(), "hello");
  EXPECT_EQ(events[1].sequence(), 3);
  EXPECT_EQ(events[1].task_state().state(), v1::Task::SUCCEEDED);
  EXPECT_TRUE(events[1].task_state().has_result());
}

TEST(EventLogTest, DroppedCompactEventsReadAsOneTruncatedMarkerTimedAtTheFirstKept) {
  // Room for about two of these events: the oldest go.
  EventLog log(60);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_GE(log.AppendStateChange(0x5f1c2a3b4c5, Time(100 + i, 0), v1::Task::RUNNING, i, false),
              0);
  }
  std::vector<v1::Event> events;
  EXPECT_EQ(log.Read(1, 1 << 20, &events), 6);
  ASSERT_GE(events.size(), 2u);
  ASSERT_TRUE(events[0].has_truncated());
  EXPECT_EQ(events[0].truncated().first_sequence(), 1);
  const int64_t first_kept = events[0].truncated().last_sequence() + 1;
  EXPECT_EQ(events[1].sequence(), first_kept);
  EXPECT_EQ(events[0].time().seconds(), events[1].time().seconds());
  EXPECT_EQ(events[1].time().seconds(), 100 + first_kept);
  EXPECT_LE(log.bytes(), 60u);
}

// A long log (a big group's) is kept in chunks: read across their edges, with whole events
// among the compact ones, while its oldest chunks are dropped and freed.
TEST(EventLogTest, ALongLogReadsInOrderAcrossItsChunksAsItsOldestAreDropped) {
  EventLog whole_log(1 << 30);
  constexpr int kEvents = 5000;
  for (int i = 1; i <= kEvents; ++i) {
    if (i % 700 == 0) {
      v1::Event output;
      *output.mutable_time() = Time(i, 0);
      output.mutable_output()->set_data(std::to_string(i));
      whole_log.Append(output);
    } else {
      whole_log.AppendStateChange(0x5f1c2a3b4c5 + i, Time(i, 0), v1::Task::PENDING, 1, false);
    }
  }
  std::vector<v1::Event> all;
  EXPECT_EQ(whole_log.Read(1, 1 << 30, &all), kEvents + 1);
  ASSERT_EQ(all.size(), static_cast<size_t>(kEvents));
  for (int i = 1; i <= kEvents; ++i) {
    const v1::Event& event = all[i - 1];
    ASSERT_EQ(event.sequence(), i);
    ASSERT_EQ(event.time().seconds(), i);
    if (i % 700 == 0) {
      EXPECT_EQ(event.output().data(), std::to_string(i));
    } else {
      EXPECT_EQ(event.task(), TaskIdOf(0x5f1c2a3b4c5 + i));
    }
  }
  // Room for about 300 of them: after 5000, the last ~300 are kept, the rest read as one gap.
  const size_t one = whole_log.bytes() / kEvents + 1;
  EventLog small(300 * one);
  int64_t dropped = 0;
  for (int i = 1; i <= kEvents; ++i) {
    dropped += small.AppendStateChange(0x5f1c2a3b4c5 + i, Time(i, 0), v1::Task::QUEUED, 1, false);
  }
  EXPECT_LE(small.bytes(), 300 * one);
  std::vector<v1::Event> kept;
  EXPECT_EQ(small.Read(1, 1 << 30, &kept), kEvents + 1);
  ASSERT_GE(kept.size(), 200u);
  ASSERT_TRUE(kept[0].has_truncated());
  EXPECT_EQ(kept[0].truncated().last_sequence(), dropped);
  for (size_t k = 1; k < kept.size(); ++k) {
    const int64_t sequence = dropped + static_cast<int64_t>(k);
    ASSERT_EQ(kept[k].sequence(), sequence);
    ASSERT_EQ(kept[k].task(), TaskIdOf(0x5f1c2a3b4c5 + sequence));
  }
  EXPECT_EQ(kept.back().sequence(), kEvents);
}

TEST(EventLogTest, AChildsKeyIsReadAsTheIdItSpells) {
  EventLog log(1 << 20);
  log.AppendStateChange(0x5f1c2a3b4c5, Time(10, 0), v1::Task::PENDING, 1, false);
  std::vector<v1::Event> events;
  log.Read(1, 1 << 20, &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].task(), "t0005f1c2a3b4c5");
  EXPECT_EQ(TaskKeyOf("t0005f1c2a3b4c5"), TaskKey{0x5f1c2a3b4c5});
  EXPECT_EQ(TaskKeyOf("t0005f1c2a3b4cg"), std::nullopt);
  EXPECT_EQ(TaskKeyOf("t0005f1c2a3b4c"), std::nullopt);
}

}  // namespace
}  // namespace cotask::engine
