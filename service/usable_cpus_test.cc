#include "service/usable_cpus.h"

#include <sched.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

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

TEST(UsableCpusTest, TheCgroupV2PathIsTheUnifiedLine) {
  EXPECT_EQ(CgroupV2Path("0::/system.slice/cotaskd.service\n"), "/system.slice/cotaskd.service");
  EXPECT_EQ(CgroupV2Path("12:cpu,cpuacct:/x\n0::/\n"), "");  // a container's namespace: root
  EXPECT_EQ(CgroupV2Path("12:cpu,cpuacct:/x\n"), "");        // cgroup v1 only
  EXPECT_EQ(CgroupV2Path(""), "");
}

// A quota set on a parent (a systemd slice, a pod) bounds the cgroups below it.
TEST(UsableCpusTest, TheTightestCpuMaxOnTheWayToTheRootCounts) {
  const std::filesystem::path root =
      std::filesystem::path(::testing::TempDir()) / "usable_cpus_cgroup";
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root / "slice" / "unit");
  auto write = [](const std::filesystem::path& file, const std::string& text) {
    std::ofstream(file) << text;
  };
  write(root / "slice" / "unit" / "cpu.max", "max 100000\n");
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), "/slice/unit"), std::nullopt);
  write(root / "slice" / "cpu.max", "300000 100000\n");
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), "/slice/unit"), 3.0);
  write(root / "slice" / "unit" / "cpu.max", "400000 100000\n");
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), "/slice/unit"), 3.0);
  write(root / "cpu.max", "150000 100000\n");  // the root's own (a container's, namespaced)
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), "/slice/unit"), 1.5);
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), ""), 1.5);
  EXPECT_EQ(CpuQuotaOfCgroupV2(root.string(), "/not/there"), 1.5);
  std::filesystem::remove_all(root);
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
