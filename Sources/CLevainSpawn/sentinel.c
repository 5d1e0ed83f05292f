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

// Paths registered at once. A supervisor holds at most a few per live run
// (a session's cgroup, its harness's, one per run and one made ahead, in
// each v1 hierarchy), and a slot is reused as soon as its path is
// forgotten, so this bounds live cgroups, never how many were ever made.
// The memory is mapped with MAP_NORESERVE: only slots in use cost pages.
#define LV_SENTINEL_SLOTS 65536
#define LV_SENTINEL_BUCKETS 16384
#define LV_SENTINEL_PATH 512
#define LV_NIL 0xffffffffu

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

    // A hash table: paths in slots, chained per bucket through next[];
    // free slots on a stack. Register and forget cost O(1) whatever the
    // number of live paths.
    size_t table_bytes = (size_t)LV_SENTINEL_SLOTS * LV_SENTINEL_PATH;
    size_t index_bytes = sizeof(unsigned) * ((size_t)LV_SENTINEL_SLOTS * 2 + LV_SENTINEL_BUCKETS);
    char (*table)[LV_SENTINEL_PATH] = mmap(NULL, table_bytes, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    unsigned *index = mmap(NULL, index_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (table == MAP_FAILED || index == MAP_FAILED) _exit(1);
    unsigned *next = index;                          // chain link of each slot
    unsigned *free_stack = index + LV_SENTINEL_SLOTS;  // free slot numbers
    unsigned *bucket = index + 2 * LV_SENTINEL_SLOTS;  // first slot of each bucket
    for (unsigned b = 0; b < LV_SENTINEL_BUCKETS; b++) bucket[b] = LV_NIL;
    size_t free_count = 0;
    size_t high = 0;  // slots [0, high) have been used at some point

    // Read "+PATH\n" / "-PATH\n" lines until EOF.
    char line[LV_SENTINEL_PATH + 2];
    size_t llen = 0;
    int overlong = 0;
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            char ch = buf[i];
            if (ch != '\n') {
                if (llen < sizeof line - 1) line[llen++] = ch;
                else overlong = 1;
                continue;
            }
            line[llen] = 0;
            if (!overlong && llen >= 2 && llen - 1 < LV_SENTINEL_PATH && line[1] == '/') {
                const char *p = line + 1;
                // FNV-1a of the path.
                unsigned h = 2166136261u;
                for (const char *q = p; *q; q++) h = (h ^ (unsigned char)*q) * 16777619u;
                unsigned *link = &bucket[h % LV_SENTINEL_BUCKETS];
                while (*link != LV_NIL && strcmp(table[*link], p) != 0) link = &next[*link];
                if (line[0] == '+' && *link == LV_NIL) {
                    unsigned slot;
                    if (free_count > 0) slot = free_stack[--free_count];
                    else if (high < LV_SENTINEL_SLOTS) slot = (unsigned)high++;
                    else slot = LV_NIL;  // full: the supervisor's start-up sweep is the backstop
                    if (slot != LV_NIL) {
                        memcpy(table[slot], p, llen);
                        next[slot] = LV_NIL;
                        *link = slot;
                    }
                } else if (line[0] == '-' && *link != LV_NIL) {
                    unsigned slot = *link;
                    *link = next[slot];
                    table[slot][0] = 0;
                    free_stack[free_count++] = slot;
                }
            }
            llen = 0;
            overlong = 0;
        }
    }
    size_t used = high;  // slots [0, used) hold paths; "" = forgotten

    // The caller is gone: empty and remove what it left. Slots are reused,
    // so their order says nothing of nesting: each round removes what it
    // can until nothing more goes (children before their parents), then
    // kills what is still inside the rest and waits a little.
    struct timespec nap = {0, 10 * 1000 * 1000};
    int rounds = timeout_ms / 10 + 1;
    for (int round = 0; round < rounds; round++) {
        size_t removed;
        do {
            removed = 0;
            for (size_t k = used; k > 0; k--) {
                char *p = table[k - 1];
                if (p[0] == 0) continue;
                if (rmdir(p) == 0 || errno == ENOENT) {
                    p[0] = 0;
                    removed++;
                }
            }
        } while (removed > 0);
        size_t left = 0;
        for (size_t k = used; k > 0; k--) {
            char *p = table[k - 1];
            if (p[0] == 0) continue;
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
