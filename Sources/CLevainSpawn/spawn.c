// The post-clone child path of a Levain jail. See lv_spawn.h.
//
// Rules for everything below that runs in a child: no allocation, no stdio,
// no locks, no atfork handlers (children are made with the raw clone/clone3
// system calls, never fork(3)), only system calls and plain memory copies.
// Every buffer is on the stack or was prepared by the parent. Credentials
// change through raw system calls: glibc's set*id wrappers broadcast the
// change to every thread they believe the process has (the parent's, in a
// child cloned from a multi-threaded supervisor), which would hang here.
#define _GNU_SOURCE
#include "lv_spawn.h"

#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lv_kernel.h"
#include "lv_internal.h"

// ---------------------------------------------------------------------------
// Small helpers, safe in a child.

// "/proc/self/fd/N" for the magic-link form of mount(2) targets.
static void lv_fd_path(char *buf, int fd) {
    static const char prefix[] = "/proc/self/fd/";
    memcpy(buf, prefix, sizeof prefix - 1);
    lv_utoa(buf + sizeof prefix - 1, (unsigned long long)fd);
}

// Set in the jail's init before it forks the command (each child has its own copy).
static int lv_init_oom_protected;

static _Noreturn void lv_fail(int errfd, uint32_t step, int32_t detail, int err) {
    struct lv_error_record r = {LV_RECORD_MAGIC, step, detail, err};
    (void)lv_write_all(errfd, &r, sizeof r);
    _exit(125);
}

// Developer timing trace (config->trace_fd), async-signal-safe.
static void lv_trace(const struct lv_spawn_config *c, const char *label) {
    if (c->trace_fd < 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char buf[96];
    size_t n = lv_strlen(label);
    if (n > 60) n = 60;
    memcpy(buf, label, n);
    buf[n++] = ' ';
    n += lv_utoa(buf + n, (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    buf[n++] = '\n';
    (void)write(c->trace_fd, buf, n);
}

// ---------------------------------------------------------------------------
// Path handling below the new root. Targets are resolved beneath the root fd
// without following any symlink, so nothing planted in a bind source (a
// workspace a jail wrote to before, say) can redirect a mount.

#define LV_RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int lv_openat2_child(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// Copies the jail path without its leading slashes into buf; "" means the root.
static int lv_relpath(char *buf, size_t size, const char *path) {
    while (*path == '/') path++;
    size_t n = lv_strlen(path);
    if (n + 1 > size) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, n + 1);
    // strip trailing slashes
    while (n > 0 && buf[n - 1] == '/') buf[--n] = 0;
    return 0;
}

// mkdir -p of the parent directories of rel (or of rel itself when
// include_last), beneath rootfd; returns an O_PATH fd of the deepest directory.
static int lv_mkdirs(int rootfd, char *rel, int include_last, mode_t mode) {
    int dirfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    if (dirfd < 0) return -1;
    char *p = rel;
    while (*p) {
        char *slash = p;
        while (*slash && *slash != '/') slash++;
        int last = (*slash == 0);
        if (last && !include_last) break;
        char saved = *slash;
        *slash = 0;
        if (p[0] == '.' && (p[1] == 0 || (p[1] == '.' && p[2] == 0))) {
            *slash = saved;
            close(dirfd);
            errno = EINVAL;
            return -1;
        }
        if (p[0] != 0) {
            if (mkdirat(dirfd, p, mode) != 0 && errno != EEXIST) {
                int e = errno;
                *slash = saved;
                close(dirfd);
                errno = e;
                return -1;
            }
            int next = lv_openat2_child(dirfd, p, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW, LV_RESOLVE_STRICT);
            int e = errno;
            *slash = saved;
            close(dirfd);
            if (next < 0) { errno = e; return -1; }
            dirfd = next;
        } else {
            *slash = saved;
        }
        if (last) break;
        p = slash + 1;
    }
    return dirfd;
}

static const char *lv_basename(const char *rel) {
    const char *b = rel;
    for (const char *p = rel; *p; p++) if (*p == '/') b = p + 1;
    return b;
}

// Creates (if missing) and opens the mount point for target beneath rootfd:
// a directory when dir, else an empty file. Returns an O_PATH fd.
static int lv_mountpoint(int rootfd, const char *target, int dir, mode_t mode) {
    char rel[4096];
    if (lv_relpath(rel, sizeof rel, target) != 0) return -1;
    if (rel[0] == 0) return fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    if (dir) {
        int fd = lv_mkdirs(rootfd, rel, 1, mode ? mode : 0755);
        return fd;
    }
    int parent = lv_mkdirs(rootfd, rel, 0, 0755);
    if (parent < 0) return -1;
    const char *base = lv_basename(rel);
    int f = openat(parent, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode ? mode : 0644);
    if (f < 0 && errno != EEXIST && errno != EISDIR && errno != EACCES && errno != EROFS && errno != ETXTBSY) {
        int e = errno;
        close(parent);
        errno = e;
        return -1;
    }
    if (f >= 0) close(f);
    int fd = lv_openat2_child(parent, base, O_PATH | O_CLOEXEC | O_NOFOLLOW, LV_RESOLVE_STRICT);
    int e = errno;
    close(parent);
    errno = e;
    return fd;
}

// Opens an existing target beneath rootfd (no symlinks). -1/ENOENT if absent.
static int lv_open_existing(int rootfd, const char *target) {
    char rel[4096];
    if (lv_relpath(rel, sizeof rel, target) != 0) return -1;
    if (rel[0] == 0) return fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    return lv_openat2_child(rootfd, rel, O_PATH | O_CLOEXEC | O_NOFOLLOW, LV_RESOLVE_STRICT);
}

static int lv_set_attrs(int treefd, uint64_t set, uint64_t clear) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = set;
    attr.attr_clr = clear;
    return (int)syscall(SYS_mount_setattr, treefd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

static int lv_attach(int treefd, int targetfd) {
    return (int)syscall(SYS_move_mount, treefd, "", targetfd, "",
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

// A recursive bind of srcfd (an fd in this mount namespace) onto targetfd.
static int lv_bind_fd(int srcfd, int targetfd, uint32_t flags) {
    int tree = (int)syscall(SYS_open_tree, srcfd, "",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (tree < 0) return -1;
    uint64_t set = MOUNT_ATTR_NOSUID;
    if (!(flags & LV_MF_DEVICES)) set |= MOUNT_ATTR_NODEV;
    if (flags & LV_MF_RDONLY) set |= MOUNT_ATTR_RDONLY;
    if (flags & LV_MF_NOEXEC) set |= MOUNT_ATTR_NOEXEC;
    if (lv_set_attrs(tree, set, 0) != 0) { int e = errno; close(tree); errno = e; return -1; }
    int r = lv_attach(tree, targetfd);
    int e = errno;
    close(tree);
    errno = e;
    return r;
}

static int lv_fs_mount(const char *fstype, int targetfd, unsigned long flags, const char *data) {
    char path[40];
    lv_fd_path(path, targetfd);
    return mount(fstype, path, fstype, flags, data);
}

// Applies one operation of the mount plan. Returns 0, or -1 with errno.
static int lv_apply_mount(int rootfd, const struct lv_mount *m) {
    int optional = (m->flags & LV_MF_OPTIONAL) != 0;
    switch (m->kind) {
    case LV_MOUNT_BIND: {
        // The parent canonicalised the source; any symlink met now was planted
        // since, so refuse it.
        int src = lv_openat2_child(AT_FDCWD, m->source, O_PATH | O_CLOEXEC | O_NOFOLLOW,
                             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (src < 0) {
            if (optional && errno == ENOENT) return 0;
            return -1;
        }
        struct stat st;
        if (fstat(src, &st) != 0) { int e = errno; close(src); errno = e; return -1; }
        int tgt = lv_mountpoint(rootfd, m->target, S_ISDIR(st.st_mode), 0755);
        if (tgt < 0) { int e = errno; close(src); errno = e; return -1; }
        int r = lv_bind_fd(src, tgt, m->flags);
        int e = errno;
        close(src);
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_TMPFS: {
        int tgt = lv_mountpoint(rootfd, m->target, 1, 0755);
        if (tgt < 0) return -1;
        unsigned long fl = MS_NOSUID | MS_NODEV;
        if (m->flags & LV_MF_NOEXEC) fl |= MS_NOEXEC;
        if (m->flags & LV_MF_RDONLY) fl |= MS_RDONLY;
        int r = lv_fs_mount("tmpfs", tgt, fl, m->data);
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_EXT4: {
        // The parent attached the loop device and holds it open until the
        // jail runs; anything else at that path is refused.
        struct stat st;
        if (stat(m->source, &st) != 0) return -1;
        if (!S_ISBLK(st.st_mode)) { errno = ENOTBLK; return -1; }
        int tgt = lv_mountpoint(rootfd, m->target, 1, 0755);
        if (tgt < 0) return -1;
        char path[40];
        lv_fd_path(path, tgt);
        unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOATIME;
        if (m->flags & LV_MF_NOEXEC) fl |= MS_NOEXEC;
        int r = mount(m->source, path, "ext4", fl, m->data);
        int e = errno;
        close(tgt);
        if (r != 0) { errno = e; return -1; }
        // mkfs made lost+found (root's, mode 0700): a jail user sees it as an
        // unreadable entry of nobody's. Remove it while it is empty.
        int top = lv_open_existing(rootfd, m->target);
        if (top >= 0) {
            int dir = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dir >= 0) { (void)unlinkat(dir, "lost+found", AT_REMOVEDIR); close(dir); }
            close(top);
        }
        return 0;
    }
    case LV_MOUNT_PROC: {
        int tgt = lv_mountpoint(rootfd, m->target, 1, 0555);
        if (tgt < 0) return -1;
        int r = lv_fs_mount("proc", tgt, MS_NOSUID | MS_NODEV | MS_NOEXEC, m->data);
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_DEVPTS: {
        int tgt = lv_mountpoint(rootfd, m->target, 1, 0755);
        if (tgt < 0) return -1;
        int r = lv_fs_mount("devpts", tgt, MS_NOSUID | MS_NOEXEC, m->data);
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_DIR: {
        int fd = lv_mountpoint(rootfd, m->target, 1, m->mode ? m->mode : 0755);
        if (fd < 0) return -1;
        // mkdir honours the umask; set the mode exactly.
        char rel[4096];
        if (lv_relpath(rel, sizeof rel, m->target) == 0 && rel[0] && m->mode)
            (void)fchmodat(rootfd, rel, m->mode, 0);
        close(fd);
        return 0;
    }
    case LV_MOUNT_SYMLINK: {
        char rel[4096];
        if (lv_relpath(rel, sizeof rel, m->target) != 0) return -1;
        int parent = lv_mkdirs(rootfd, rel, 0, 0755);
        if (parent < 0) return -1;
        int r = symlinkat(m->source, parent, lv_basename(rel));
        int e = errno;
        close(parent);
        if (r != 0 && e == EEXIST && optional) return 0;
        errno = e;
        return r;
    }
    case LV_MOUNT_FILE: {
        char rel[4096];
        if (lv_relpath(rel, sizeof rel, m->target) != 0) return -1;
        int parent = lv_mkdirs(rootfd, rel, 0, 0755);
        if (parent < 0) return -1;
        int fd = openat(parent, lv_basename(rel), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        m->mode ? m->mode : 0644);
        int e = errno;
        close(parent);
        if (fd < 0) { errno = e; return -1; }
        int r = 0;
        if (m->data_len > 0) r = lv_write_all(fd, m->data, m->data_len);
        if (r == 0 && m->mode) r = fchmod(fd, m->mode);
        e = errno;
        close(fd);
        errno = e;
        return r;
    }
    case LV_MOUNT_MASK: {
        int tgt = lv_open_existing(rootfd, m->target);
        if (tgt < 0) return (errno == ENOENT) ? 0 : -1;
        struct stat st;
        if (fstat(tgt, &st) != 0) { int e = errno; close(tgt); errno = e; return -1; }
        int r;
        if (S_ISDIR(st.st_mode)) {
            r = lv_fs_mount("tmpfs", tgt, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555");
        } else {
            int null = lv_open_existing(rootfd, "/dev/null");
            if (null < 0) { int e = errno; close(tgt); errno = e; return -1; }
            r = lv_bind_fd(null, tgt, LV_MF_RDONLY | LV_MF_DEVICES);
            int e = errno;
            close(null);
            errno = e;
        }
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_READONLY: {
        int tgt = lv_open_existing(rootfd, m->target);
        if (tgt < 0) return (errno == ENOENT) ? 0 : -1;
        int r = lv_bind_fd(tgt, tgt, LV_MF_RDONLY | (m->flags & LV_MF_DEVICES));
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    case LV_MOUNT_REMOUNT_RO: {
        int tgt = lv_open_existing(rootfd, m->target);
        if (tgt < 0) return -1;
        char path[40];
        lv_fd_path(path, tgt);
        unsigned long fl = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID;
        if (!(m->flags & LV_MF_DEVICES)) fl |= MS_NODEV;
        if (m->flags & LV_MF_NOEXEC) fl |= MS_NOEXEC;
        int r = mount(NULL, path, NULL, fl, NULL);
        int e = errno;
        close(tgt);
        errno = e;
        return r;
    }
    default:
        errno = EINVAL;
        return -1;
    }
}

// ---------------------------------------------------------------------------
// Landlock.

static int lv_apply_landlock(const struct lv_spawn_config *c, int errfd) {
    struct lv_landlock_ruleset_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = c->landlock_handled_fs;
    attr.handled_access_net = c->landlock_abi >= 4 ? c->landlock_handled_net : 0;
    attr.scoped = c->landlock_abi >= 6 ? c->landlock_scoped : 0;
    size_t size = c->landlock_abi >= 6 ? sizeof attr
                : c->landlock_abi >= 4 ? 16 : 8;
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) lv_fail(errfd, LV_STEP_LANDLOCK, -1, errno);
    for (size_t i = 0; i < c->landlock_rule_count; i++) {
        const struct lv_landlock_rule *r = &c->landlock_rules[i];
        int fd = open(r->path, O_PATH | O_CLOEXEC);
        if (fd < 0) {
            if (r->optional && errno == ENOENT) continue;
            lv_fail(errfd, LV_STEP_LANDLOCK, (int32_t)i, errno);
        }
        struct stat st;
        uint64_t access = r->access & c->landlock_handled_fs;
        if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) access &= LV_LANDLOCK_FILE_ACCESS;
        struct lv_landlock_path_beneath_attr pb;
        memset(&pb, 0, sizeof pb);
        pb.allowed_access = access;
        pb.parent_fd = fd;
        if (access != 0 && syscall(SYS_landlock_add_rule, ruleset, LV_LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
            lv_fail(errfd, LV_STEP_LANDLOCK, (int32_t)i, errno);
        close(fd);
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) lv_fail(errfd, LV_STEP_LANDLOCK, -1, errno);
    close(ruleset);
    return 0;
}

// ---------------------------------------------------------------------------
// The command (the jail's first process, or PID 1 itself in exec_as_init mode).

static void lv_install_filters(const struct lv_spawn_config *c, int errfd) {
    for (size_t i = 0; i < c->filter_count; i++) {
        struct sock_fprog_lv {
            unsigned short len;
            const void *filter;
        } prog = {(unsigned short)c->filters[i].len, c->filters[i].code};
        if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, &prog) != 0)
            lv_fail(errfd, LV_STEP_SECCOMP, (int32_t)i, errno);
    }
}

// The audit layer: its filter with a new listener, the listener sent to the
// supervisor and closed. The command never has it; a second listener
// anywhere in the jail is refused by the kernel (EBUSY).
static void lv_install_audit(const struct lv_spawn_config *c, int errfd, int audit_sock) {
    struct sock_fprog prog = {(unsigned short)c->audit_filter->len, (struct sock_filter *)c->audit_filter->code};
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) lv_fail(errfd, LV_STEP_AUDIT, 0, errno);
    if (lv_send_descriptors(audit_sock, "audit", &listener, 1) != 0) lv_fail(errfd, LV_STEP_AUDIT, 1, errno);
    close(listener);
    close(audit_sock);
}

static _Noreturn void lv_run_command(const struct lv_spawn_config *c, int errfd, int sync_r, int keep_init_fds) {
    lv_trace(c, "cmd-entry");
    // The audit socket, out of the way of the fds an init command keeps.
    int audit_sock = -1;
    if (c->audit_filter) {
        audit_sock = fcntl(c->audit_sock, F_DUPFD_CLOEXEC, 64);
        if (audit_sock < 0) lv_fail(errfd, LV_STEP_AUDIT, 1, errno);
    }
    // Standard streams.
    if (c->stdin_fd >= 0 && dup2(c->stdin_fd, 0) < 0) lv_fail(errfd, LV_STEP_STDIO, 0, errno);
    if (c->stdout_fd >= 0 && dup2(c->stdout_fd, 1) < 0) lv_fail(errfd, LV_STEP_STDIO, 1, errno);
    if (c->stderr_fd >= 0 && dup2(c->stderr_fd, 2) < 0) lv_fail(errfd, LV_STEP_STDIO, 2, errno);

    // An init command (the harness) finds the fds it keeps at 3, 4, ... in
    // order: move everything we still need out of that range first.
    if (keep_init_fds && c->keep_fd_count > 0) {
        if (c->keep_fd_count > 16) lv_fail(errfd, LV_STEP_STDIO, 3, E2BIG);
        int moved = fcntl(errfd, F_DUPFD_CLOEXEC, 64);
        if (moved < 0) lv_fail(errfd, LV_STEP_STDIO, 4, errno);
        errfd = moved;
        int tmp[16];
        for (size_t i = 0; i < c->keep_fd_count; i++) {
            tmp[i] = fcntl(c->keep_fds[i], F_DUPFD_CLOEXEC, 64);
            if (tmp[i] < 0) lv_fail(errfd, LV_STEP_STDIO, 5, errno);
        }
        for (size_t i = 0; i < c->keep_fd_count; i++) {
            // dup2 clears close-on-exec on the new fd: it survives the exec.
            if (dup2(tmp[i], 3 + (int)i) < 0) lv_fail(errfd, LV_STEP_STDIO, 6, errno);
            close(tmp[i]);
        }
    }

    // See lv_child: the command must not inherit the init's protection, or
    // it is the preferred victim when the init could not be protected.
    if (!c->exec_as_init) {
        // Changing ids left us non-dumpable, which makes our /proc files
        // root's (the host's): become dumpable again to write our own. Exec
        // sets it anew for the command either way.
        (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        const char *adj = lv_init_oom_protected ? "0" : "500";
        if (fd < 0 || lv_write_all(fd, adj, lv_strlen(adj)) != 0) lv_fail(errfd, LV_STEP_OOM_ADJ, 0, errno);
        close(fd);
    }

    lv_trace(c, "cmd-oom-done");
    if (c->cwd && chdir(c->cwd) != 0) lv_fail(errfd, LV_STEP_CHDIR, 0, errno);

    for (size_t i = 0; i < c->rlimit_count; i++) {
        struct rlimit rl = {(rlim_t)c->rlimits[i].soft, (rlim_t)c->rlimits[i].hard};
        if (setrlimit(c->rlimits[i].resource, &rl) != 0)
            lv_fail(errfd, LV_STEP_RLIMIT, c->rlimits[i].resource, errno);
    }

    lv_trace(c, "cmd-rlimits-done");
    // Capabilities: bounding set and ambient set first (they need CAP_SETPCAP),
    // then the ids, then the process sets.
    for (int cap = 0; cap <= c->cap_last; cap++) {
        if (cap < 64 && (c->command_keep_caps & (1ull << cap))) continue;
        if (cap_drop_bound((cap_value_t)cap) != 0 && errno != EINVAL)
            lv_fail(errfd, LV_STEP_CAP_BOUNDING, cap, errno);
    }
    if (cap_reset_ambient() != 0 && errno != EINVAL) lv_fail(errfd, LV_STEP_CAP_AMBIENT, 0, errno);
    lv_trace(c, "cmd-bounding-dropped");
    if (syscall(SYS_setgroups, 0, NULL) != 0) lv_fail(errfd, LV_STEP_SETGROUPS, 0, errno);
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) != 0) lv_fail(errfd, LV_STEP_SETGID, (int32_t)c->gid, errno);
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) != 0) lv_fail(errfd, LV_STEP_SETUID, (int32_t)c->uid, errno);
    if (c->caps_command && cap_set_proc((cap_t)c->caps_command) != 0) lv_fail(errfd, LV_STEP_CAPS, 0, errno);

    lv_trace(c, "cmd-ids-set");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_NO_NEW_PRIVS, 0, errno);

    if (c->exec_as_init) {
        // Changing ids cleared the parent-death signal: set it again and make
        // sure the parent did not die in between (its end of sync_r is open
        // for as long as it lives).
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_PDEATHSIG, 1, errno);
        struct pollfd pfd = {sync_r, POLLIN, 0};
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLIN))) _exit(125);
    }

    lv_trace(c, "command-ids-caps");
    if (c->landlock_abi > 0) lv_apply_landlock(c, errfd);
    lv_trace(c, "command-landlock");

    lv_trace(c, "cmd-landlock-done2");
    // Every inherited fd but stdio and the error pipe (close-on-exec) goes;
    // an init command keeps 3, 4, ... (see above).
    {
        int keep[67];
        size_t n = 0;
        keep[n++] = errfd;
        if (audit_sock >= 0) keep[n++] = audit_sock;
        if (c->trace_fd >= 0 && !keep_init_fds) keep[n++] = c->trace_fd;
        if (keep_init_fds) {
            for (size_t i = 0; i < c->keep_fd_count && n < 64; i++) keep[n++] = 3 + (int)i;
        }
        lv_close_all_but(keep, n);
    }

    lv_trace(c, "cmd-fds-closed");
    // Default dispositions and an empty mask for the command.
    if (lv_default_signals() != 0) lv_fail(errfd, LV_STEP_SIGNALS, 0, errno);

    lv_trace(c, "command-ready");
    lv_trace(c, "cmd-signals-done");
    lv_install_filters(c, errfd);
    if (audit_sock >= 0) lv_install_audit(c, errfd, audit_sock);

    int e = lv_exec_search(c->argv, c->envp, c->search_path);
    struct lv_error_record r = {LV_RECORD_MAGIC, LV_STEP_EXEC, 0, e};
    (void)lv_write_all(errfd, &r, sizeof r);
    _exit((e == ENOENT || e == ENOTDIR) ? 127 : 126);
}

#define LV_COMMAND_STACK (256 * 1024)

struct lv_command_args {
    const struct lv_spawn_config *c;
    int errfd;
    int sync_r;
    int report_w;
};

static int lv_command_entry(void *p) {
    struct lv_command_args *a = p;
    close(a->report_w);
    lv_run_command(a->c, a->errfd, a->sync_r, 0);
}

// ---------------------------------------------------------------------------
// The built-in init: PID 1 of the jail when the command is not an init itself.

static void lv_noop_handler(int sig) { (void)sig; }

#if defined(__x86_64__)
#define LV_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define LV_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "unsupported architecture"
#endif

#define LV_ALLOW_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

// The init's seccomp filter: exactly the calls of lv_init_loop.
static const struct sock_filter lv_init_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LV_AUDIT_ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    LV_ALLOW_NR(__NR_wait4),
    LV_ALLOW_NR(__NR_rt_sigtimedwait),
    LV_ALLOW_NR(__NR_kill),
    LV_ALLOW_NR(__NR_getrusage),
    LV_ALLOW_NR(__NR_write),
    LV_ALLOW_NR(__NR_exit_group),
    LV_ALLOW_NR(__NR_exit),
    LV_ALLOW_NR(__NR_rt_sigreturn),
    LV_ALLOW_NR(__NR_restart_syscall),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
};

static const int lv_forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,
                                   SIGWINCH, SIGCONT, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU};

static _Noreturn void lv_init_loop(const struct lv_spawn_config *c, pid_t command, int reportfd) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof lv_forwarded / sizeof lv_forwarded[0]; i++) sigaddset(&set, lv_forwarded[i]);

    struct lv_exit_record rec;
    memset(&rec, 0, sizeof rec);
    rec.magic = LV_EXIT_MAGIC;
    int command_done = 0;

    for (;;) {
        // Reap whatever has ended.
        for (;;) {
            int st;
            pid_t p = waitpid(-1, &st, WNOHANG | __WALL);
            if (p <= 0) break;
            if (WIFSIGNALED(st)) {
                if (WTERMSIG(st) == SIGXCPU) rec.xcpu_deaths++;
                if (WTERMSIG(st) == SIGXFSZ) rec.xfsz_deaths++;
            }
            if (p == command) {
                rec.status = st;
                command_done = 1;
            }
        }
        if (command_done) break;
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) continue;
        if (sig == SIGCHLD) continue;
        (void)kill(command, sig);
    }

    // The command ended: nothing else in the jail outlives it.
    (void)kill(-1, SIGKILL);
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, __WALL);
        if (p < 0 && errno == EINTR) continue;
        if (p < 0) break;
        if (WIFSIGNALED(st)) {
            if (WTERMSIG(st) == SIGXCPU) rec.xcpu_deaths++;
            if (WTERMSIG(st) == SIGXFSZ) rec.xfsz_deaths++;
        }
    }
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) == 0) {
        rec.utime_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
        rec.stime_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
        rec.maxrss_kb = ru.ru_maxrss;
    }
    (void)c;
    (void)lv_write_all(reportfd, &rec, sizeof rec);
    _exit(0);
}

// ---------------------------------------------------------------------------
// The cloned child: PID 1 of the new pid namespace, still host root.

struct lv_child_fds {
    int sync;       // socketpair end: 'G', 'C' (+ fds) and 'M' in, 'U' out
    int err_w;
    int report_w;
};

#define LV_MAX_CGROUP_FDS 8

// Receives one byte and up to LV_MAX_CGROUP_FDS fds (SCM_RIGHTS).
static ssize_t lv_recv_fds(int sock, char *byte, int *fds, size_t *count) {
    return lv_recvmsg_fds(sock, byte, 1, fds, LV_MAX_CGROUP_FDS, count);
}

static int lv_send_fds(int sock, char byte, const int *fds, size_t count) {
    if (count > LV_MAX_CGROUP_FDS) { errno = E2BIG; return -1; }
    return lv_sendmsg_fds(sock, &byte, 1, fds, count);
}

// Waits for the parent's 'C': the run's cgroups (and workspace) exist. It
// comes with an fd of each cgroup v1 hierarchy's `tasks` file (none on v2,
// where clone3 put us in already). Still one thread, we move ourselves by
// writing "0": a thread moving itself skips the global lock whose RCU grace
// period makes moving another process cost milliseconds on v1.
static void lv_await_placement(const struct lv_spawn_config *c, int sync, int errfd) {
    int fds[LV_MAX_CGROUP_FDS];
    size_t n = 0;
    char cmd = 0;
    if (lv_recv_fds(sync, &cmd, fds, &n) != 1 || cmd != 'C') _exit(125);
    for (size_t i = 0; i < n; i++) {
        if (lv_write_all(fds[i], "0", 1) != 0) lv_fail(errfd, LV_STEP_CGROUP_PLACE, (int32_t)i, errno);
        close(fds[i]);
    }
    lv_trace(c, "cgroup-placed");
}

static _Noreturn void lv_child(const struct lv_spawn_config *c, struct lv_child_fds f) {
    int errfd = f.err_w;
    int placed = 0;

    lv_trace(c, "child-start");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_PDEATHSIG, 0, errno);
    // The jail's mount points and its processes get the usual umask, not
    // whatever the supervisor's is at this instant (levain serve narrows it
    // to 0177 while it binds its socket: a jail made then had mount points
    // without search permission, and its harness's exec failed, EACCES).
    umask(022);

    // Only what the jail needs stays open; among what goes is our copy of the
    // parent's end of sync_r, so a parent that is already gone reads as EOF.
    {
        int keep[80];
        size_t n = 0;
        keep[n++] = f.sync;
        keep[n++] = f.err_w;
        keep[n++] = f.report_w;
        if (c->trace_fd >= 0) keep[n++] = c->trace_fd;
        if (c->stdin_fd >= 0) keep[n++] = c->stdin_fd;
        if (c->stdout_fd >= 0) keep[n++] = c->stdout_fd;
        if (c->stderr_fd >= 0) keep[n++] = c->stderr_fd;
        for (size_t i = 0; i < c->keep_fd_count && n < 63; i++) keep[n++] = c->keep_fds[i];
        if (c->audit_filter) keep[n++] = c->audit_sock;
        lv_close_all_but(keep, n);
    }

    char go = 0;
    if (lv_read_full(f.sync, &go, 1) != 1 || go != 'G') _exit(125);

    lv_trace(c, "go-received");
    if (setsid() < 0) lv_fail(errfd, LV_STEP_SETSID, 0, errno);

    // Keep the init out of the OOM killer's choice. It shares the parent's
    // resident pages, so by size it could look like the best victim. With
    // CAP_SYS_RESOURCE it gets -1000 and the command resets itself to 0;
    // without it (some hosts drop that capability even for root) the
    // command raises itself instead, so its processes are picked first.
    if (!c->exec_as_init) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            lv_init_oom_protected = lv_write_all(fd, "-1000", 5) == 0;
            close(fd);
        }
    }

    if (c->namespaces & LV_NS_MOUNT) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            lv_fail(errfd, LV_STEP_MOUNT_PRIVATE, 0, errno);
        if (mount("tmpfs", c->stage_dir, "tmpfs", MS_NOSUID | MS_NODEV, c->root_tmpfs_data) != 0)
            lv_fail(errfd, LV_STEP_ROOT_TMPFS, 0, errno);
    lv_trace(c, "root-tmpfs");
        int rootfd = open(c->stage_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0) lv_fail(errfd, LV_STEP_ROOT_TMPFS, 1, errno);
        size_t split = c->mounts_after_placement < c->mount_count ? c->mounts_after_placement : c->mount_count;
        for (size_t i = 0; i < split; i++) {
            if (lv_apply_mount(rootfd, &c->mounts[i]) != 0) lv_fail(errfd, LV_STEP_MOUNT, (int32_t)i, errno);
        }
        // The rest binds what the parent makes meanwhile (the workspace).
        lv_await_placement(c, f.sync, errfd);
        placed = 1;
        for (size_t i = split; i < c->mount_count; i++) {
            if (lv_apply_mount(rootfd, &c->mounts[i]) != 0) lv_fail(errfd, LV_STEP_MOUNT, (int32_t)i, errno);
        }
    lv_trace(c, "mounts-done");
        if (c->root_readonly) {
            char path[40];
            lv_fd_path(path, rootfd);
            if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
                lv_fail(errfd, LV_STEP_ROOT_READONLY, 0, errno);
        }
        if (fchdir(rootfd) != 0) lv_fail(errfd, LV_STEP_PIVOT_ROOT, 0, errno);
        close(rootfd);
        if (syscall(SYS_pivot_root, ".", ".") != 0) lv_fail(errfd, LV_STEP_PIVOT_ROOT, 1, errno);
        if (umount2(".", MNT_DETACH) != 0) lv_fail(errfd, LV_STEP_PIVOT_ROOT, 2, errno);
        if (chdir("/") != 0) lv_fail(errfd, LV_STEP_PIVOT_ROOT, 3, errno);
    }

    lv_trace(c, "pivoted");
    if ((c->namespaces & LV_NS_UTS) && c->hostname) {
        if (sethostname(c->hostname, lv_strlen(c->hostname)) != 0) lv_fail(errfd, LV_STEP_HOSTNAME, 0, errno);
    }

    if ((c->namespaces & LV_NS_NET) && c->loopback_up) {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) lv_fail(errfd, LV_STEP_LOOPBACK, 0, errno);
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        memcpy(ifr.ifr_name, "lo", 3);
        ifr.ifr_flags = IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) lv_fail(errfd, LV_STEP_LOOPBACK, 1, errno);
        close(s);
    }

    if (!placed) lv_await_placement(c, f.sync, errfd);

    // In its cgroup now: make that the root of the jail's cgroup view.
    if (c->namespaces & LV_NS_CGROUP) {
        if (unshare(CLONE_NEWCGROUP) != 0) lv_fail(errfd, LV_STEP_CGROUP_NS, 0, errno);
    }

    // The user namespace comes last, so every other namespace stays owned by
    // the host's user namespace: jail root can reconfigure none of them.
    lv_trace(c, "before-userns");
    if (c->namespaces & LV_NS_USER) {
        if (unshare(CLONE_NEWUSER) != 0) lv_fail(errfd, LV_STEP_USER_NS, 0, errno);
        char u = 'U';
        if (lv_write_all(f.sync, &u, 1) != 0) lv_fail(errfd, LV_STEP_USER_NS, 1, errno);
        char m = 0;
        if (lv_read_full(f.sync, &m, 1) != 1 || m != 'M') _exit(125);
        // The maps are written: become root of the new namespace for real.
        if (syscall(SYS_setresgid, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_ID_MAPS, 0, errno);
        if (syscall(SYS_setresuid, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_ID_MAPS, 1, errno);
        // Changing the effective uid cleared the parent-death signal: arm it
        // again, then make sure the parent did not die in between (its end
        // of sync_r stays open for as long as it lives).
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) lv_fail(errfd, LV_STEP_PDEATHSIG, 1, errno);
        struct pollfd pfd = {f.sync, POLLIN, 0};
        if (poll(&pfd, 1, 0) != 0) _exit(125);
    }
    lv_trace(c, "userns-mapped");

    if (c->exec_as_init) {
        close(f.report_w);
        lv_run_command(c, errfd, f.sync, 1);
    }

    // Block the signals init handles before the fork, so none is lost; the
    // command unblocks them. PID 1 receives only signals it has a handler
    // for, hence the no-op handlers.
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = lv_noop_handler;
        sigfillset(&sa.sa_mask);
        for (size_t i = 0; i < sizeof lv_forwarded / sizeof lv_forwarded[0]; i++)
            (void)sigaction(lv_forwarded[i], &sa, NULL);
        (void)sigaction(SIGCHLD, &sa, NULL);
        sigset_t all;
        sigfillset(&all);
        if (sigprocmask(SIG_SETMASK, &all, NULL) != 0) lv_fail(errfd, LV_STEP_SIGNALS, 1, errno);
    }

    lv_trace(c, "before-fork-command");
    // The command shares the init's memory until it execs (CLONE_VM |
    // CLONE_VFORK, as posix_spawn does): no page tables to copy now, no
    // copied address space to tear down at exec. The init sleeps meanwhile,
    // so the two never run on that memory at once; the command runs on its
    // own stack, and all it changes that is not its own (files, signals,
    // credentials, limits, filters stay per task) is the dumpable flag of
    // the shared mm, which the init resets below.
    void *stack = mmap(NULL, LV_COMMAND_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) lv_fail(errfd, LV_STEP_FORK, 1, errno);
    struct lv_command_args args = {c, errfd, f.sync, f.report_w};
    pid_t command = clone(lv_command_entry, (char *)stack + LV_COMMAND_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    if (command < 0) lv_fail(errfd, LV_STEP_FORK, 0, errno);
    lv_trace(c, "init-resumed");
    (void)munmap(stack, LV_COMMAND_STACK);

    // The init: nothing but the report pipe stays open.
    {
        int keep[2] = {f.report_w, c->trace_fd};
        lv_close_all_but(keep, c->trace_fd >= 0 ? 2 : 1);
        lv_trace(c, "init-closed-fds");
        close(0);
        close(1);
        close(2);
    }
    // It keeps CAP_KILL alone, to end the jail's processes, and nobody in the
    // jail can read or trace it.
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (int cap = 0; cap <= c->cap_last; cap++) {
        if (cap == c->init_keep_cap) continue;
        (void)cap_drop_bound((cap_value_t)cap);
    }
    (void)cap_reset_ambient();
    if (c->caps_init) (void)cap_set_proc((cap_t)c->caps_init);
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    // Its own filter, much tighter than the command's: the loop below needs
    // seven system calls; anything else kills the init (and so the jail).
    if (c->filter_count > 0) {
        struct sock_fprog prog = {(unsigned short)(sizeof lv_init_filter / sizeof lv_init_filter[0]),
                                  (struct sock_filter *)lv_init_filter};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) _exit(125);
    }
    lv_init_loop(c, command, f.report_w);
}

// ---------------------------------------------------------------------------
// The parent side.

static int lv_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

static void lv_close(int *fd) {
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static pid_t lv_clone(uint64_t flags, int cgroup_fd, int *pidfd) {
    struct lv_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid >= 0 || errno != ENOSYS) return pid;
    // Kernels before 5.3: clone with CLONE_PIDFD (5.2); no CLONE_INTO_CGROUP.
    if (cgroup_fd >= 0) { errno = ENOSYS; return -1; }
    return (pid_t)syscall(SYS_clone, (unsigned long)(flags | CLONE_PIDFD | SIGCHLD), 0, pidfd, 0, 0);
}

static int lv_write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = lv_write_all(fd, text, lv_strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static void lv_handle_reset(struct lv_spawn_handle *h) {
    h->pid = -1;
    h->pidfd = -1;
    h->sync_fd = -1;
    h->err_fd = -1;
    h->report_fd = -1;
}

void lv_spawn_abort(struct lv_spawn_handle *h) {
    if (h->pid > 0) {
        if (h->pidfd >= 0) (void)syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0);
        else (void)kill(h->pid, SIGKILL);
        int st;
        while (waitpid(h->pid, &st, __WALL) < 0 && errno == EINTR) {}
    }
    lv_close(&h->sync_fd);
    lv_close(&h->err_fd);
    lv_close(&h->report_fd);
    lv_close(&h->pidfd);
    h->pid = -1;
}

int lv_spawn_start(const struct lv_spawn_config *c, struct lv_spawn_handle *h, struct lv_error_record *error) {
    lv_handle_reset(h);
    memset(error, 0, sizeof *error);

    int sv[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || lv_pipe(errp) || lv_pipe(rep)) {
        int e = errno;
        lv_close(&sv[0]); lv_close(&sv[1]); lv_close(&errp[0]); lv_close(&errp[1]);
        lv_close(&rep[0]); lv_close(&rep[1]);
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_PIPES, 0, e};
        return -1;
    }

    uint64_t flags = 0;
    if (c->namespaces & LV_NS_PID) flags |= CLONE_NEWPID;
    if (c->namespaces & LV_NS_MOUNT) flags |= CLONE_NEWNS;
    if (c->namespaces & LV_NS_NET) flags |= CLONE_NEWNET;
    if (c->namespaces & LV_NS_UTS) flags |= CLONE_NEWUTS;
    if (c->namespaces & LV_NS_IPC) flags |= CLONE_NEWIPC;

    int pidfd = -1;
    pid_t pid = lv_clone(flags, c->cgroup_v2_dirfd, &pidfd);
    if (pid == 0) {
        struct lv_child_fds f = {sv[1], errp[1], rep[1]};
        lv_child(c, f);
    }
    int clone_errno = errno;
    lv_close(&sv[1]);
    lv_close(&errp[1]);
    lv_close(&rep[1]);
    if (pid < 0) {
        lv_close(&sv[0]); lv_close(&errp[0]); lv_close(&rep[0]);
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_CLONE, 0, clone_errno};
        return -1;
    }
    h->pid = pid;
    h->pidfd = pidfd;
    h->sync_fd = sv[0];
    h->err_fd = errp[0];
    h->report_fd = rep[0];

    char go = 'G';
    if (lv_write_all(h->sync_fd, &go, 1) != 0) {
        *error = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_SYNC, 0, errno};
        lv_spawn_abort(h);
        return -1;
    }
    return 0;
}

// Reads the error pipe: a record when the child failed (and wrote why); EOF
// when it closed without one (exec'd, or died).
static int lv_read_error(struct lv_spawn_handle *h, struct lv_error_record *rec) {
    ssize_t n = lv_read_full(h->err_fd, rec, sizeof *rec);
    if (n == (ssize_t)sizeof *rec && rec->magic == LV_RECORD_MAGIC) return 1;
    return 0;
}

int lv_spawn_finish(const struct lv_spawn_config *c, struct lv_spawn_handle *h,
                    const int *cgroup_fds, size_t cgroup_fd_count, struct lv_spawn_result *result) {
    memset(result, 0, sizeof *result);
    result->pid = -1;
    result->pidfd = -1;
    result->report_fd = -1;
    result->sync_fd = -1;
    struct lv_error_record failure = {0, 0, 0, 0};
    struct lv_error_record rec;

    if (lv_send_fds(h->sync_fd, 'C', cgroup_fds, cgroup_fd_count) != 0) {
        int e = errno;
        // The child is gone (EPIPE): it says why on the error pipe.
        if (lv_read_error(h, &rec)) failure = rec;
        else failure = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_CGROUP_PLACE, -1, e};
        goto fail;
    }

    if (c->namespaces & LV_NS_USER) {
        char u = 0;
        if (lv_read_full(h->sync_fd, &u, 1) != 1 || u != 'U') {
            // The child failed before its user namespace: it says why.
            if (lv_read_error(h, &rec)) failure = rec;
            else failure = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_SYNC, 1, EPIPE};
            goto fail;
        }
        char path[64];
        static const char proc[] = "/proc/";
        memcpy(path, proc, sizeof proc - 1);
        size_t n = sizeof proc - 1 + lv_utoa(path + sizeof proc - 1, (unsigned long long)h->pid);
        memcpy(path + n, "/uid_map", 9);
        if (lv_write_file(path, c->uid_map) != 0) {
            failure = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_ID_MAPS, 0, errno};
            goto fail;
        }
        memcpy(path + n, "/gid_map", 9);
        if (lv_write_file(path, c->gid_map) != 0) {
            failure = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_ID_MAPS, 1, errno};
            goto fail;
        }
        char m = 'M';
        if (lv_write_all(h->sync_fd, &m, 1) != 0) {
            failure = (struct lv_error_record){LV_RECORD_MAGIC, LV_STEP_SYNC, 2, errno};
            goto fail;
        }
    }

    // EOF on the error pipe: the command was exec'd (its copy closed on
    // exec, the init closed its own). It may well have run and ended
    // already; the init's exit record on the report pipe says how. A record:
    // a step failed.
    if (lv_read_error(h, &rec)) {
        if (rec.step == LV_STEP_EXEC) {
            // The jail runs; its command exits 126/127, which the init reports.
            result->error = rec;
        } else {
            failure = rec;
            goto fail;
        }
    }
    lv_close(&h->err_fd);
    result->pid = h->pid;
    result->pidfd = h->pidfd;
    result->report_fd = h->report_fd;
    result->sync_fd = h->sync_fd;
    lv_handle_reset(h);
    return 0;

fail:
    lv_spawn_abort(h);
    result->error = failure;
    return -1;
}

int lv_spawn(const struct lv_spawn_config *c, struct lv_spawn_result *result) {
    struct lv_spawn_handle h;
    struct lv_error_record error;
    if (lv_spawn_start(c, &h, &error) != 0) {
        memset(result, 0, sizeof *result);
        result->pid = result->pidfd = result->report_fd = result->sync_fd = -1;
        result->error = error;
        return -1;
    }
    return lv_spawn_finish(c, &h, NULL, 0, result);
}

int lv_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int lv_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int lv_close_range(unsigned first, unsigned last) {
    return (int)syscall(SYS_close_range, first, last, 0);
}
