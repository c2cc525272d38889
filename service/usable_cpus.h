// UsableCpus: how many CPUs this process may use at once: the CPUs its affinity mask allows
// (taskset, a cpuset), bounded by its cgroup's CPU quota (a container's CPU limit, a systemd
// unit's CPUQuota: cgroup v2's cpu.max of its cgroup or the tightest of its ancestors', or
// v1's cpu.cfs_quota_us / cpu.cfs_period_us), rounded up. cotaskd sizes its
// default threads by it (--io_threads).
#ifndef COTASK_SERVICE_USABLE_CPUS_H_
#define COTASK_SERVICE_USABLE_CPUS_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace cotask::service {

int UsableCpus();

// A cgroup CPU quota in CPUs, from cgroup v2's cpu.max ("150000 100000": 1.5; "max 100000":
// none) or from v1's quota and period files' contents ("-1": none). Nullopt if there is no
// quota or the text is not one.
std::optional<double> CpuQuotaFromCpuMax(absl::string_view cpu_max);
std::optional<double> CpuQuotaFromCfs(absl::string_view quota_us, absl::string_view period_us);

// The process's cgroup v2 path from /proc/self/cgroup's text ("0::/system.slice/a.service"),
// without a trailing '/': "" for the root (as inside a container's cgroup namespace) or when
// there is no v2 line.
std::string CgroupV2Path(absl::string_view proc_self_cgroup);
// The tightest cpu.max quota of the cgroup at root + path and of its ancestors up to root's.
std::optional<double> CpuQuotaOfCgroupV2(const std::string& root, std::string path);

}  // namespace cotask::service

#endif  // COTASK_SERVICE_USABLE_CPUS_H_
