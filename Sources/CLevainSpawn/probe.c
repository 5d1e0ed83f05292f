// Kernel feature probes and raw system calls Swift cannot make (syscall(2)
// is variadic, which Swift does not import). Parent-side only.
#define _GNU_SOURCE
#include "lv_spawn.h"
#include "lv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int lv_exists(long r) {
    if (r >= 0) return 1;
    return errno != ENOSYS;
}

int lv_probe_landlock_abi(void) {
    long r = syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
    return r > 0 ? (int)r : 0;
}

int lv_probe_clone3(void) {
    // A NULL argument: EFAULT/EINVAL where clone3 exists, ENOSYS where not.
    return lv_exists(syscall(SYS_clone3, NULL, 0));
}

int lv_probe_openat2(void) {
    long r = syscall(SYS_openat2, -1, NULL, NULL, 0);
    if (r >= 0) close((int)r);
    return lv_exists(r);
}

int lv_probe_new_mount_api(void) {
    long a = syscall(SYS_open_tree, -1, NULL, 0);
    if (a >= 0) close((int)a);
    if (!lv_exists(a)) return 0;
    long b = syscall(SYS_move_mount, -1, NULL, -1, NULL, 0);
    if (!lv_exists(b)) return 0;
    long c = syscall(SYS_mount_setattr, -1, NULL, 0, NULL, 0);
    return lv_exists(c);
}

int lv_probe_close_range(void) {
    // An empty range (first > last) is EINVAL where close_range exists.
    return lv_exists(syscall(SYS_close_range, 2, 1, 0));
}

int lv_probe_pidfd(void) {
    long fd = syscall(SYS_pidfd_open, getpid(), 0);
    if (fd >= 0) {
        close((int)fd);
        return 1;
    }
    return 0;
}

int lv_probe_seccomp_filter(void) {
    // SECCOMP_GET_ACTION_AVAIL for ALLOW succeeds where filters exist.
    unsigned int action = SECCOMP_RET_ALLOW;
    long r = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action);
    if (r == 0) return 1;
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 && errno != EINVAL;
}

// ---------------------------------------------------------------------------
// Parent-side helpers Glibc's Swift module does not export.

#include <signal.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <pthread.h>

int lv_block_signals_fd(const int *sigs, size_t count) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < count; i++) sigaddset(&set, sigs[i]);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int lv_read_signal(int fd) {
    struct signalfd_siginfo info;
    for (;;) {
        ssize_t n = read(fd, &info, sizeof info);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof info) return -1;
        return (int)info.ssi_signo;
    }
}

int lv_random_bytes(void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

#include <sys/vfs.h>

int lv_is_cgroup2_mount(const char *path) {
    struct statfs st;
    if (statfs(path, &st) != 0) return 0;
    return (unsigned long)st.f_type == 0x63677270UL;  // CGROUP2_SUPER_MAGIC
}

#include <linux/openat2.h>
#include <sys/fsuid.h>

int lv_openat2(int dirfd, const char *path, int flags, unsigned mode, unsigned long long resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

void lv_set_fs_ids(unsigned uid, unsigned gid) {
    (void)setfsgid(gid);
    (void)setfsuid(uid);
}

#include <sys/socket.h>
#include <sys/capability.h>

int lv_set_dumpable(int value) { return prctl(PR_SET_DUMPABLE, value, 0, 0, 0); }

void *lv_caps_empty(void) { return (void *)cap_init(); }

int lv_send_descriptors(int sock, const char *label, const int *fds, size_t count) {
    if (count == 0) { errno = EINVAL; return -1; }
    return lv_sendmsg_fds(sock, label, strlen(label), fds, count);
}

int lv_recv_descriptors(int sock, char *label, size_t label_size, int *fds, size_t max_fds) {
    size_t got = 0;
    ssize_t n = lv_recvmsg_fds(sock, label, label_size - 1, fds, max_fds, &got);
    if (n < 0) return -1;
    label[n] = 0;
    return (int)got;
}
