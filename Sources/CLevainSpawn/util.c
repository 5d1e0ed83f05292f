// Helpers of the spawn path, safe in a child: system calls and memory
// copies only. See spawn.c.
#define _GNU_SOURCE
#include "lv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>

int lv_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t lv_read_full(int fd, void *buf, size_t len) {
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

size_t lv_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

// Formats an unsigned number; returns the length written (buf >= 21 bytes).
size_t lv_utoa(char *buf, unsigned long long v) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (v % 10));
        v /= 10;
    } while (v && n < sizeof tmp);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

// Closes every fd >= 3 that is not in keep (unsorted, n small), without
// allocating: close_range over the gaps, falling back to close(2) in a loop.
void lv_close_all_but(const int *keep, size_t n) {
    int sorted[64];
    size_t m = 0;
    for (size_t i = 0; i < n && m < 64; i++) {
        if (keep[i] < 3) continue;
        // insertion sort, dropping duplicates
        size_t j = m;
        int dup = 0;
        for (size_t k = 0; k < m; k++) if (sorted[k] == keep[i]) dup = 1;
        if (dup) continue;
        while (j > 0 && sorted[j - 1] > keep[i]) { sorted[j] = sorted[j - 1]; j--; }
        sorted[j] = keep[i];
        m++;
    }
    unsigned first = 3;
    for (size_t i = 0; i <= m; i++) {
        unsigned last = (i < m) ? (unsigned)sorted[i] - 1 : ~0u;
        if (i < m && (unsigned)sorted[i] < first) { continue; }
        if (first <= last) {
            if (syscall(SYS_close_range, first, last, 0) != 0) {
                struct rlimit rl;
                unsigned top = 65536;
                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < top)
                    top = (unsigned)rl.rlim_cur;
                for (unsigned fd = first; fd <= last && fd < top; fd++) close((int)fd);
            }
        }
        if (i < m) first = (unsigned)sorted[i] + 1;
    }
}

int lv_exec_search(const char *const *argv_, const char *const *envp_, const char *search_path) {
    const char *file = argv_[0];
    char *const *argv = (char *const *)argv_;
    char *const *envp = (char *const *)envp_;
    for (const char *p = file; *p; p++) {
        if (*p == '/') {
            execve(file, argv, envp);
            return errno;
        }
    }
    const char *path = search_path ? search_path : "/usr/local/bin:/usr/bin:/bin";
    size_t flen = lv_strlen(file);
    int saw_eacces = 0;
    int last = ENOENT;
    const char *p = path;
    for (;;) {
        const char *end = p;
        while (*end && *end != ':') end++;
        size_t dlen = (size_t)(end - p);
        char buf[4096];
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            size_t n = 0;
            if (dlen == 0) { buf[n++] = '.'; }
            else { memcpy(buf, p, dlen); n = dlen; }
            buf[n++] = '/';
            memcpy(buf + n, file, flen + 1);
            execve(buf, argv, envp);
            int e = errno;
            if (e == EACCES) saw_eacces = 1;
            else if (e != ENOENT && e != ENOTDIR && e != ELOOP && e != ENAMETOOLONG) last = e;
            if (e == ENOEXEC || e == E2BIG || e == ENOMEM || e == ETXTBSY) return e;
        }
        if (*end == 0) break;
        p = end + 1;
    }
    return saw_eacces ? EACCES : last;
}


int lv_default_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

int lv_sendmsg_fds(int sock, const void *data, size_t len, const int *fds, size_t count) {
    union {
        char buf[CMSG_SPACE(sizeof(int) * LV_MAX_SEND_FDS)];
        struct cmsghdr align;
    } u;
    if (count > LV_MAX_SEND_FDS || len == 0) { errno = EINVAL; return -1; }
    memset(&u, 0, sizeof u);
    struct iovec iov = {(void *)data, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (count > 0) {
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * count);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * count);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

ssize_t lv_recvmsg_fds(int sock, void *data, size_t len, int *fds, size_t max_fds, size_t *count) {
    union {
        char buf[CMSG_SPACE(sizeof(int) * LV_MAX_SEND_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {data, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    *count = 0;
    if (n < 0) return n;
    // Every descriptor that arrived is either handed out or closed: one
    // past max_fds (or past the control buffer: MSG_CTRUNC) leaks nothing.
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (*count < max_fds) fds[(*count)++] = fd;
            else close(fd);
        }
    }
    return n;
}

int lv_setns_net(int pidfd) {
    return setns(pidfd, CLONE_NEWNET);
}

int lv_spawn_actions_closefrom(posix_spawn_file_actions_t *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowfd);
}
