/* The memory limit of the process's cgroup (containers, systemd units, batch
 * schedulers), for out-of-memory messages: on such machines the cgroup, not
 * the machine's free memory, is usually what bites. */
#ifndef LOOM_CORE_HOST_LIMIT_H
#define LOOM_CORE_HOST_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the limit and the current usage of the memory cgroup named in
 * proc_cgroup (the format of /proc/self/cgroup) under the cgroup mount
 * sysfs (normally /sys/fs/cgroup): cgroup v2 (memory.max, memory.current)
 * or v1 (memory/memory.limit_in_bytes, memory.usage_in_bytes): the smallest
 * limit of the process's cgroup and its ancestors up to the mount's root (in
 * a container the root is the container's own cgroup). False when there is
 * no limit or nothing can be read. */
bool core_cgroup_memory_limit(const char *sysfs, const char *proc_cgroup, uint64_t *limit, uint64_t *usage);

#ifdef __cplusplus
}
#endif

#endif
