#include "service/usable_cpus.h"

#include <sched.h>

#include <optional>

#include "gtest/gtest.h"

namespace cotask::service {
namespace {

TEST(UsableCpusTest, ACgroupV2QuotaIsItsShareOfThePeriod) {
  EXPECT_EQ(CpuQuotaFromCpuMax("150000 100000\n"), 1.5);
  EXPECT_EQ(CpuQuotaFromCpuMax("200000 100000"), 2.0);
  EXPECT_EQ(CpuQuotaFromCpuMax("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpuQuotaFromCpuMax(""), std::nullopt);  // no such file
  EXPECT_EQ(CpuQuotaFromCpuMax("0 100000"), std::nullopt);
}

TEST(UsableCpusTest, ACgroupV1QuotaOfMinusOneIsNone) {
  EXPECT_EQ(CpuQuotaFromCfs("50000\n", "100000\n"), 0.5);
  EXPECT_EQ(CpuQuotaFromCfs("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(CpuQuotaFromCfs("", ""), std::nullopt);
}

TEST(UsableCpusTest, AtLeastOneAndNoMoreThanTheAffinityMaskAllows) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int cpus = UsableCpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, CPU_COUNT(&set));
}

}  // namespace
}  // namespace cotask::service
