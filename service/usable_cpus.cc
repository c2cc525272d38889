#include "service/usable_cpus.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cotask::service {
namespace {

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<double> Quota(double quota, double period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return quota / period;
}

}  // namespace

std::optional<double> CpuQuotaFromCpuMax(absl::string_view cpu_max) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  double quota = 0;
  double period = 0;
  if (fields.size() != 2 || !absl::SimpleAtod(fields[0], &quota) ||
      !absl::SimpleAtod(fields[1], &period)) {
    return std::nullopt;  // "max ...": no quota
  }
  return Quota(quota, period);
}

std::optional<double> CpuQuotaFromCfs(absl::string_view quota_us, absl::string_view period_us) {
  double quota = 0;
  double period = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(quota_us), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(period_us), &period)) {
    return std::nullopt;
  }
  return Quota(quota, period);  // (-1: none)
}

std::string CgroupV2Path(absl::string_view proc_self_cgroup) {
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) {
      line = absl::StripAsciiWhitespace(line);
      while (absl::ConsumeSuffix(&line, "/")) {
      }
      return std::string(line);
    }
  }
  return "";
}

std::optional<double> CpuQuotaOfCgroupV2(const std::string& root, std::string path) {
  std::optional<double> tightest;
  while (true) {
    const std::optional<double> quota =
        CpuQuotaFromCpuMax(ReadFile((root + path + "/cpu.max").c_str()));
    if (quota.has_value() && (!tightest.has_value() || *quota < *tightest)) tightest = quota;
    if (path.empty()) return tightest;
    path.resize(path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  }
}

int UsableCpus() {
  int cpus = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  std::optional<double> quota =
      CpuQuotaOfCgroupV2("/sys/fs/cgroup", CgroupV2Path(ReadFile("/proc/self/cgroup")));
  if (!quota.has_value()) {
    quota = CpuQuotaFromCfs(ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                            ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  }
  if (quota.has_value()) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*quota))));
  return cpus;
}

}  // namespace cotask::service
