// Kernel interfaces newer than some libc headers: defined here once so the
// spawn path builds on any Debian 12 / glibc 2.36 userland.
#ifndef LV_KERNEL_H
#define LV_KERNEL_H

#include <stdint.h>
#include <linux/openat2.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

struct lv_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

// Landlock (linux/landlock.h of 6.1 lacks ABI 3+).
struct lv_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct lv_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

#define LV_LANDLOCK_RULE_PATH_BENEATH 1

#define LV_LL_FS_EXECUTE      (1ULL << 0)
#define LV_LL_FS_WRITE_FILE   (1ULL << 1)
#define LV_LL_FS_READ_FILE    (1ULL << 2)
#define LV_LL_FS_TRUNCATE     (1ULL << 14)
#define LV_LL_FS_IOCTL_DEV    (1ULL << 15)
// Rights that apply to a regular file (others need a directory).
#define LV_LANDLOCK_FILE_ACCESS (LV_LL_FS_EXECUTE | LV_LL_FS_WRITE_FILE | LV_LL_FS_READ_FILE | \
                                 LV_LL_FS_TRUNCATE | LV_LL_FS_IOCTL_DEV)

#endif
