// Starting a run's process inside a session's jail: used by levain-harness
// (PID 1 of the jail, jail root with CAP_SETUID/CAP_SETGID/CAP_KILL).
//
// The process is created with CLONE_VM|CLONE_VFORK on its own stack, as
// posix_spawn does; between the clone and the exec it makes only system
// calls, and reports a failure as an lv_error_record over a close-on-exec
// pipe. The harness is single-threaded and sleeps until the exec.
#define _GNU_SOURCE
#include "lv_spawn.h"
#include "lv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LV_RUN_STACK (128 * 1024)

struct lv_run_child {
    const struct lv_run_spec *s;
    int errfd;
};

static _Noreturn void lv_run_fail(int errfd, uint32_t step, int32_t detail, int err) {
    struct lv_error_record r = {LV_RECORD_MAGIC, step, detail, err};
    (void)lv_write_all(errfd, &r, sizeof r);
    _exit(125);
}

static int lv_run_child_main(void *arg) {
    const struct lv_run_child *a = arg;
    const struct lv_run_spec *s = a->s;
    int errfd = a->errfd;

    // Its own session and process group: run.signal reaches the whole group.
    if (setsid() < 0) lv_run_fail(errfd, LV_STEP_SETSID, 0, errno);

    // Into the run's cgroup before anything else can fork: write "0" to each
    // descriptor (v1: `tasks` of each hierarchy; v2: `cgroup.procs`).
    for (size_t i = 0; i < s->cgroup_fd_count; i++) {
        if (lv_write_all(s->cgroup_fds[i], "0", 1) != 0) lv_run_fail(errfd, LV_STEP_CGROUP_PLACE, (int32_t)i, errno);
    }

    int in = s->stdin_fd, out = s->stdout_fd, err = s->stderr_fd;
    if (in < 0 || out < 0 || err < 0) {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) lv_run_fail(errfd, LV_STEP_STDIO, -1, errno);
        if (in < 0) in = devnull;
        if (out < 0) out = devnull;
        if (err < 0) err = devnull;
    }
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) lv_run_fail(errfd, LV_STEP_STDIO, 0, errno);
    // A terminal run: its slave becomes the new session's controlling terminal.
    if (s->controlling_tty && ioctl(0, TIOCSCTTY, 0) != 0) lv_run_fail(errfd, LV_STEP_STDIO, 1, errno);

    for (size_t i = 0; i < s->rlimit_count; i++) {
        struct rlimit rl = {(rlim_t)s->rlimits[i].soft, (rlim_t)s->rlimits[i].hard};
        if (setrlimit(s->rlimits[i].resource, &rl) != 0)
            lv_run_fail(errfd, LV_STEP_RLIMIT, s->rlimits[i].resource, errno);
    }

    // The jail user, with no capabilities (leaving uid 0 clears the
    // permitted and effective sets; ambient goes explicitly).
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (syscall(SYS_setgroups, 0, NULL) != 0) lv_run_fail(errfd, LV_STEP_SETGROUPS, 0, errno);
    if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) != 0) lv_run_fail(errfd, LV_STEP_SETGID, (int32_t)s->gid, errno);
    if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) != 0) lv_run_fail(errfd, LV_STEP_SETUID, (int32_t)s->uid, errno);
    if (s->caps_empty && cap_set_proc((cap_t)s->caps_empty) != 0) lv_run_fail(errfd, LV_STEP_CAPS, 0, errno);
    // As the jail user: the working directory is checked with its rights
    // (the harness's root has no CAP_DAC_OVERRIDE to enter it anyway).
    if (s->cwd && chdir(s->cwd) != 0) lv_run_fail(errfd, LV_STEP_CHDIR, 0, errno);

    {
        int keep[1] = {errfd};
        lv_close_all_but(keep, 1);
    }
    if (lv_default_signals() != 0) lv_run_fail(errfd, LV_STEP_SIGNALS, 0, errno);

    int e = lv_exec_search(s->argv, s->envp, s->search_path);
    struct lv_error_record r = {LV_RECORD_MAGIC, LV_STEP_EXEC, 0, e};
    (void)lv_write_all(errfd, &r, sizeof r);
    _exit((e == ENOENT || e == ENOTDIR) ? 127 : 126);
}

int lv_run_spawn(const struct lv_run_spec *spec, pid_t *pid, struct lv_error_record *error) {
    memset(error, 0, sizeof *error);
    *pid = -1;
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0) {
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_PIPES, 0, errno};
        return -1;
    }
    void *stack = mmap(NULL, LV_RUN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int e = errno;
        close(errp[0]);
        close(errp[1]);
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_FORK, 1, e};
        return -1;
    }
    struct lv_run_child args = {spec, errp[1]};
    pid_t child = clone(lv_run_child_main, (char *)stack + LV_RUN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    int clone_errno = errno;
    (void)munmap(stack, LV_RUN_STACK);
    close(errp[1]);
    if (child < 0) {
        close(errp[0]);
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_FORK, 0, clone_errno};
        return -1;
    }
    // The vfork is over: the child exec'd (EOF) or failed (a record).
    struct lv_error_record rec;
    ssize_t n = lv_read_full(errp[0], &rec, sizeof rec);
    close(errp[0]);
    *pid = child;
    if (n == (ssize_t)sizeof rec && rec.magic == LV_RECORD_MAGIC) {
        *error = rec;
        // The child exits 125/126/127; the caller reaps it like any other.
        return rec.step == LV_STEP_EXEC ? 1 : -1;
    }
    return 0;
}

int lv_pty_open(unsigned short rows, unsigned short cols, int *master, int *slave) {
    *master = *slave = -1;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int n = 0;
    char name[64];
    // unlockpt; the slave's name from the master (devpts of this namespace).
    if (ioctl(m, TIOCSPTLCK, &n) != 0 || ptsname_r(m, name, sizeof name) != 0) goto fail;
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (ioctl(m, TIOCSWINSZ, &ws) != 0 || fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK) != 0) {
        int e = errno;
        close(s);
        errno = e;
        goto fail;
    }
    *master = m;
    *slave = s;
    return 0;
fail:;
    int e = errno;
    close(m);
    errno = e;
    return -1;
}

int lv_pty_resize(int master, unsigned short rows, unsigned short cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(master, TIOCSWINSZ, &ws);
}
