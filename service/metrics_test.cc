// The task figures the engine's observer feeds, as a scrape and StreamStats show them: the
// exact samples (tests/metrics_test.py scrapes a real cotaskd end to end).
#include "service/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace cotask::service {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::Task SleepTask() {
  v1::Task task;
  task.mutable_spec()->mutable_sleep();
  task.set_attempt(1);
  return task;
}

// Created at 1000 s (Unix nanoseconds, as the engine keeps them).
constexpr int64_t kCreated = 1'000'000'000'000;

v1::Task DispatchTask(const std::string& queue) {
  v1::Task task = SleepTask();
  task.mutable_spec()->mutable_dispatch()->set_queue(queue);
  return task;
}

TEST(MetricsTest, ATasksLifeMovesItsKindsFiguresAndItsHistogramsBuckets) {
  std::unique_ptr<Metrics> metrics = Metrics::Unserved();
  v1::Task task = SleepTask();
  engine::TaskTimes times{.create = kCreated};
  metrics->OnTaskState({task, 0, times, "", v1::Task::STATE_UNSPECIFIED, v1::Task::PENDING});
  std::string text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("cotask_tasks_created_total{kind=\"sleep\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_pending{kind=\"sleep\",queue=\"\"} 1\n"));

  // Started 300us after its creation (bucket le=0.0005), ran 2s (bucket le=5).
  times.start = kCreated + 300'000;
  metrics->OnTaskState({task, 0, times, "", v1::Task::PENDING, v1::Task::RUNNING});
  text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("cotask_tasks_pending{kind=\"sleep\",queue=\"\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_running{kind=\"sleep\",queue=\"\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_bucket{kind=\"sleep\",le=\"0.0001\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_bucket{kind=\"sleep\",le=\"0.0005\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_bucket{kind=\"sleep\",le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_count{kind=\"sleep\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_sum{kind=\"sleep\"} 0.0003\n"));

  times.end = times.start + 2'000'000'000;
  metrics->OnTaskState({task, 0, times, "", v1::Task::RUNNING, v1::Task::CANCELLED});
  text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("cotask_tasks_running{kind=\"sleep\",queue=\"\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("cotask_tasks_finished_total{kind=\"sleep\",state=\"CANCELLED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_cancellations_total{kind=\"sleep\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_run_seconds_bucket{kind=\"sleep\",le=\"1\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_run_seconds_bucket{kind=\"sleep\",le=\"5\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_run_seconds_sum{kind=\"sleep\"} 2\n"));
  // A bound is its own bucket's (le: less than or equal).
  v1::Task second = SleepTask();
  engine::TaskTimes second_times{.create = kCreated};
  metrics->OnTaskState(
      {second, 0, second_times, "", v1::Task::STATE_UNSPECIFIED, v1::Task::PENDING});
  second_times.start = kCreated + 100'000;
  metrics->OnTaskState({second, 0, second_times, "", v1::Task::PENDING, v1::Task::RUNNING});
  EXPECT_THAT(metrics->Scrape(),
              HasSubstr("cotask_task_wait_seconds_bucket{kind=\"sleep\",le=\"0.0001\"} 1\n"));

  const v1::Stats stats = metrics->Snapshot();
  ASSERT_EQ(stats.kinds_size(), 3);
  EXPECT_EQ(stats.kinds(0).kind(), "sleep");
  EXPECT_EQ(stats.kinds(0).created(), 2);
  EXPECT_EQ(stats.kinds(0).running(), 1);
  EXPECT_EQ(stats.kinds(0).pending(), 0);
  EXPECT_EQ(stats.kinds(0).finished().at("CANCELLED"), 1);
  EXPECT_EQ(stats.kinds(0).finished().at("SUCCEEDED"), 0);
}

TEST(MetricsTest, DispatchTasksAreCountedByQueueAndInTheirKindsTotal) {
  std::unique_ptr<Metrics> metrics = Metrics::Unserved();
  v1::Task in_a = DispatchTask("a");
  v1::Task in_b = DispatchTask("b");
  engine::TaskTimes times{.create = kCreated};
  metrics->OnTaskState({in_a, 0, times, "", v1::Task::STATE_UNSPECIFIED, v1::Task::PENDING});
  metrics->OnTaskState({in_a, 0, times, "", v1::Task::PENDING, v1::Task::QUEUED});
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::STATE_UNSPECIFIED, v1::Task::PENDING});
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::PENDING, v1::Task::QUEUED});
  times.start = times.create;
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::QUEUED, v1::Task::RUNNING});
  // A retry: back to PENDING, counted as one.
  in_b.set_attempt(2);
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::RUNNING, v1::Task::PENDING});
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::PENDING, v1::Task::QUEUED});
  metrics->OnTaskState({in_b, 0, times, "", v1::Task::QUEUED, v1::Task::RUNNING});
  const std::string text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("cotask_tasks_pending{kind=\"dispatch\",queue=\"a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_running{kind=\"dispatch\",queue=\"a\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_pending{kind=\"dispatch\",queue=\"b\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_running{kind=\"dispatch\",queue=\"b\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_task_retries_total{kind=\"dispatch\"} 1\n"));
  // Only the first attempt's start is a wait.
  EXPECT_THAT(text, HasSubstr("cotask_task_wait_seconds_count{kind=\"dispatch\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("kind=\"sleep\",queue=\"a\"")));
  const v1::Stats stats = metrics->Snapshot();
  EXPECT_EQ(stats.kinds(2).pending(), 1);
  EXPECT_EQ(stats.kinds(2).running(), 1);
}

TEST(MetricsTest, GroupsLogsAndSpawnsAreCounted) {
  std::unique_ptr<Metrics> metrics = Metrics::Unserved();
  const v1::Group group;
  metrics->OnGroupState(group, v1::Group::OPEN);
  metrics->OnGroupState(group, v1::Group::OPEN);
  metrics->OnGroupState(group, v1::Group::CLOSED);
  metrics->OnGroupState(group, v1::Group::FAILED);
  metrics->OnEventLogs(4096, 0);
  metrics->OnEventLogs(1024, 7);
  metrics->OnSpawn(true);
  metrics->OnSpawn(false);
  metrics->OnSpawn(false);
  const std::string text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("\ncotask_groups_active 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_groups_finished_total{state=\"FAILED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cotask_groups_finished_total{state=\"SUCCEEDED\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("\ncotask_event_log_bytes 1024\n"));
  EXPECT_THAT(text, HasSubstr("\ncotask_event_log_truncated_events_total 7\n"));
  EXPECT_THAT(text, HasSubstr("\ncotask_exec_spawns_total 1\n"));
  EXPECT_THAT(text, HasSubstr("\ncotask_exec_spawn_failures_total 2\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE cotask_task_wait_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE cotask_groups_active gauge\n"));
  const v1::Stats stats = metrics->Snapshot();
  EXPECT_EQ(stats.groups_active(), 1);
  EXPECT_EQ(stats.groups_finished().at("FAILED"), 1);
  EXPECT_EQ(stats.event_log_bytes(), 1024);
  EXPECT_EQ(stats.event_log_truncated_events(), 7);
  EXPECT_EQ(stats.exec_spawn_failures(), 2);
}

// The figures have one writer (the engine's thread) and readers on others: scrapes and
// StreamStats read while it writes (ThreadSanitizer checks this in CI), and see what it wrote.
TEST(MetricsTest, ScrapesReadWhileTheEnginesThreadWrites) {
  std::unique_ptr<Metrics> metrics = Metrics::Unserved();
  std::atomic<bool> done = false;
  std::thread reader([&] {
    while (!done.load()) {
      EXPECT_THAT(metrics->Scrape(), HasSubstr("cotask_tasks_created_total{kind=\"dispatch\"}"));
      EXPECT_EQ(metrics->Snapshot().kinds_size(), 3);
    }
  });
  constexpr int kTasks = 20'000;
  for (int i = 0; i < kTasks; ++i) {
    v1::Task task = DispatchTask(i % 2 == 0 ? "even" : "odd");
    engine::TaskTimes times{.create = kCreated};
    metrics->OnTaskState({task, 0, times, "", v1::Task::STATE_UNSPECIFIED, v1::Task::PENDING});
    times.start = times.create;
    metrics->OnTaskState({task, 0, times, "", v1::Task::PENDING, v1::Task::RUNNING});
    times.end = times.start;
    metrics->OnTaskState({task, 0, times, "", v1::Task::RUNNING, v1::Task::SUCCEEDED});
    metrics->OnEventLogs(i, 1);
  }
  done = true;
  reader.join();
  const std::string text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr("cotask_tasks_created_total{kind=\"dispatch\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("cotask_tasks_running{kind=\"dispatch\",queue=\"odd\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("cotask_task_run_seconds_bucket{kind=\"dispatch\",le=\"0.0001\"} 20000\n"));
  EXPECT_THAT(text, HasSubstr("\ncotask_event_log_truncated_events_total 20000\n"));
}

}  // namespace
}  // namespace cotask::service
