// The cgroup sentinel: a small process that removes cgroups when the
// process that made them dies without doing it (kill -9 of levain run or of
// the supervisor). See lv_spawn.h.
//
// It is forked from a multi-threaded process, so it runs only system calls:
// its table of paths lives in memory it maps itself.
#define _GNU_SOURCE
#include "lv_spawn.h"
#include "lv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LV_SENTINEL_SLOTS 8192
#define LV_SENTINEL_PATH 512

static void lv_kill_procs(const char *dir) {
    char path[LV_SENTINEL_PATH + 32];
    size_t n = lv_strlen(dir);
    memcpy(path, dir, n);
    memcpy(path + n, "/cgroup.procs", 14);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[4096];
    long cur = -1;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            char ch = buf[i];
            if (ch >= '0' && ch <= '9') {
                cur = (cur < 0 ? 0 : cur) * 10 + (ch - '0');
            } else {
                if (cur > 0) (void)kill((pid_t)cur, SIGKILL);
                cur = -1;
            }
        }
    }
    if (cur > 0) (void)kill((pid_t)cur, SIGKILL);
    close(fd);
}

static _Noreturn void lv_sentinel_main(int fd, int timeout_ms) {
    // Out of the caller's session and signals, holding nothing but the pipe.
    (void)setsid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    for (int sig = 1; sig < 32; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) continue;
        (void)sigaction(sig, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    int keep[1] = {fd};
    lv_close_all_but(keep, 1);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2) close(devnull);
    }
    (void)chdir("/");

    char (*table)[LV_SENTINEL_PATH] = mmap(NULL, (size_t)LV_SENTINEL_SLOTS * LV_SENTINEL_PATH,
                                           PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED) _exit(1);
    size_t used = 0;  // slots [0, used) hold paths; "" = forgotten

    // Read "+PATH\n" / "-PATH\n" lines until EOF.
    char line[LV_SENTINEL_PATH + 2];
    size_t llen = 0;
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            char ch = buf[i];
            if (ch != '\n') {
                if (llen < sizeof line - 1) line[llen++] = ch;
                continue;
            }
            line[llen] = 0;
            if (llen >= 2 && llen - 1 < LV_SENTINEL_PATH && line[1] == '/') {
                const char *p = line + 1;
                if (line[0] == '+' && used < LV_SENTINEL_SLOTS) {
                    memcpy(table[used++], p, llen);
                } else if (line[0] == '-') {
                    for (size_t k = used; k > 0; k--) {
                        if (strcmp(table[k - 1], p) == 0) {
                            table[k - 1][0] = 0;
                            break;
                        }
                    }
                }
            }
            llen = 0;
        }
    }

    // The caller is gone: empty and remove what it left, newest first (runs
    // before their session).
    struct timespec nap = {0, 10 * 1000 * 1000};
    int rounds = timeout_ms / 10 + 1;
    for (int round = 0; round < rounds; round++) {
        size_t left = 0;
        for (size_t k = used; k > 0; k--) {
            char *p = table[k - 1];
            if (p[0] == 0) continue;
            if (rmdir(p) == 0 || errno == ENOENT) {
                p[0] = 0;
                continue;
            }
            left++;
            lv_kill_procs(p);
        }
        if (left == 0) break;
        nanosleep(&nap, NULL);
    }
    _exit(0);
}

int lv_sentinel_start(int timeout_ms, pid_t *sentinel_pid) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) lv_sentinel_main(fds[0], timeout_ms);
    close(fds[0]);
    if (sentinel_pid) *sentinel_pid = pid;
    return fds[1];
}
