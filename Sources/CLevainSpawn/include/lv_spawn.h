// The post-clone child path of a Levain jail.
//
// Everything the child needs is prepared by the parent (Swift) and passed in
// an lv_spawn_config: strings, arrays, the compiled seccomp programs, the
// uid/gid map text. The child only makes async-signal-safe system calls in a
// fixed order and reports a failure as an lv_error_record (step, errno) over a
// close-on-exec pipe before _exit. Nothing here allocates in the child.
#ifndef LV_SPAWN_H
#define LV_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <spawn.h>

#ifdef __cplusplus
extern "C" {
#endif

// Namespaces (lv_spawn_config.namespaces), a bit each.
#define LV_NS_USER    0x01u
#define LV_NS_PID     0x02u
#define LV_NS_MOUNT   0x04u
#define LV_NS_NET     0x08u
#define LV_NS_UTS     0x10u
#define LV_NS_IPC     0x20u
#define LV_NS_CGROUP  0x40u

// Mount plan operations, applied in order below the new root.
enum lv_mount_kind {
    LV_MOUNT_BIND = 1,     // source (canonical host path) -> target
    LV_MOUNT_TMPFS = 2,    // tmpfs at target, data = mount options
    LV_MOUNT_PROC = 3,     // fresh proc for the jail's pid namespace at target
    LV_MOUNT_DEVPTS = 4,   // a new devpts instance at target
    LV_MOUNT_DIR = 5,      // mkdir -p target (mode)
    LV_MOUNT_SYMLINK = 6,  // symlink at target pointing to source
    LV_MOUNT_FILE = 7,     // regular file at target with data[0..data_len) (mode)
    LV_MOUNT_MASK = 8,     // hide target: /dev/null over a file, empty ro tmpfs over a dir
    LV_MOUNT_READONLY = 9, // bind target onto itself read-only (recursive)
    LV_MOUNT_REMOUNT_RO = 10, // make the mount at target read-only (that mount only)
    LV_MOUNT_EXT4 = 11,    // the ext4 filesystem on block device source (a loop device the
                           // parent attached) at target, data = mount options; an empty
                           // lost+found is removed after the mount
};

// lv_mount.flags
#define LV_MF_RDONLY    0x01u  // read-only (recursive, mount_setattr)
#define LV_MF_OPTIONAL  0x02u  // skip silently when the source or target does not exist
#define LV_MF_DEVICES   0x04u  // keep device nodes usable (no MS_NODEV); for /dev/null & co
#define LV_MF_NOEXEC    0x08u

struct lv_mount {
    uint32_t kind;
    uint32_t flags;
    const char *source;
    const char *target;     // absolute path inside the jail
    const char *data;
    size_t data_len;
    uint32_t mode;
};

struct lv_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct lv_landlock_rule {
    const char *path;       // path inside the jail
    uint64_t access;        // LANDLOCK_ACCESS_FS_* allowed beneath path
    uint32_t optional;      // skip when missing
};

// A compiled classic BPF program (struct sock_filter[] as bytes).
struct lv_bpf {
    const void *code;
    size_t len;             // in instructions (8 bytes each)
};

struct lv_spawn_config {
    uint32_t namespaces;

    // Root filesystem.
    const char *stage_dir;          // an existing empty host directory used as mount point
    const char *root_tmpfs_data;    // e.g. "size=16m,mode=0755"
    const struct lv_mount *mounts;
    size_t mount_count;
    // Mounts from this index on are applied only after the parent's 'C'
    // (they bind what the parent creates meanwhile, like the workspace).
    size_t mounts_after_placement;
    int root_readonly;              // remount the root tmpfs read-only after populating

    const char *hostname;
    int loopback_up;

    // Identity. The parent writes these maps into /proc/PID/{uid,gid}_map.
    const char *uid_map;
    const char *gid_map;
    uint32_t uid;                   // jail user the command runs as
    uint32_t gid;

    // Cgroup v2: a directory fd for CLONE_INTO_CGROUP (-1 when unused). On
    // v1 the child moves itself in after lv_spawn_finish sent it the fds of
    // each hierarchy's `tasks` file.
    int cgroup_v2_dirfd;

    const struct lv_rlimit *rlimits;
    size_t rlimit_count;

    // Capabilities (libcap, prepared by the parent): the highest capability
    // number to drop from the bounding set; the (empty) set the command runs
    // with; the set the built-in init keeps (CAP_KILL only, to end the jail).
    int cap_last;
    void *caps_command;
    void *caps_init;
    int init_keep_cap;              // the one capability init keeps in its bounding set
    // Capabilities the command keeps in its bounding set (a bit per
    // capability; 0 for ordinary commands). caps_command must hold them.
    // The harness, an init command, keeps CAP_SETUID, CAP_SETGID, CAP_KILL
    // of the jail's user namespace to start runs as the jail user.
    uint64_t command_keep_caps;

    // Landlock (abi 0 = not applied).
    int landlock_abi;
    uint64_t landlock_handled_fs;
    uint64_t landlock_handled_net;
    uint64_t landlock_scoped;
    const struct lv_landlock_rule *landlock_rules;
    size_t landlock_rule_count;

    // Seccomp programs installed in order, the last step before exec. The
    // built-in init installs the same programs after it forked the command.
    const struct lv_bpf *filters;
    size_t filter_count;
    // The audit layer (NULL: none): installed after `filters` with
    // SECCOMP_FILTER_FLAG_NEW_LISTENER; the listener is sent over
    // audit_sock (SOCK_SEQPACKET, label "audit") and closed before the
    // exec, so the command never holds it.
    const struct lv_bpf *audit_filter;
    int audit_sock;

    // The command.
    const char *cwd;
    const char *const *argv;        // NULL-terminated
    const char *const *envp;        // NULL-terminated
    const char *search_path;        // PATH used to find argv[0] when it has no '/'

    // Standard streams for the command (-1 = inherit the caller's 0/1/2).
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;

    // Further fds for an init command (exec_as_init): they appear as fds 3,
    // 4, ... in this order (at most 16).
    const int *keep_fds;
    size_t keep_fd_count;

    // A developer's aid: when >= 0, the child writes "step nanoseconds\n"
    // lines here as it goes (LEVAIN_TIMINGS; see docs/DEVELOPING.md).
    int trace_fd;

    // Exec the command directly as the jail's PID 1 instead of running the
    // built-in init that forks it (used when the command is itself an init,
    // like levain-harness).
    int exec_as_init;
};

// Steps, reported in lv_error_record.step.
enum lv_step {
    LV_STEP_PIPES = 1,
    LV_STEP_CLONE,
    LV_STEP_CGROUP_PLACE,
    LV_STEP_SYNC,
    LV_STEP_PDEATHSIG,
    LV_STEP_CLOSE_FDS,
    LV_STEP_SETSID,
    LV_STEP_MOUNT_PRIVATE,
    LV_STEP_ROOT_TMPFS,
    LV_STEP_MOUNT,            // detail = index in the mount plan
    LV_STEP_ROOT_READONLY,
    LV_STEP_PIVOT_ROOT,
    LV_STEP_HOSTNAME,
    LV_STEP_LOOPBACK,
    LV_STEP_CGROUP_NS,
    LV_STEP_USER_NS,
    LV_STEP_ID_MAPS,
    LV_STEP_FORK,
    LV_STEP_STDIO,
    LV_STEP_CHDIR,
    LV_STEP_RLIMIT,           // detail = resource
    LV_STEP_OOM_ADJ,
    LV_STEP_CAP_BOUNDING,
    LV_STEP_CAP_AMBIENT,
    LV_STEP_SETGROUPS,
    LV_STEP_SETGID,
    LV_STEP_SETUID,
    LV_STEP_CAPS,
    LV_STEP_NO_NEW_PRIVS,
    LV_STEP_LANDLOCK,         // detail = rule index, or -1 for the ruleset
    LV_STEP_SIGNALS,
    LV_STEP_SECCOMP,          // detail = filter index
    LV_STEP_EXEC,
    LV_STEP_INIT,
    LV_STEP_AUDIT,            // detail: 0 installing the filter, 1 sending its listener
};

#define LV_RECORD_MAGIC 0x4c564552u  // "LVER"

struct lv_error_record {
    uint32_t magic;
    uint32_t step;
    int32_t detail;
    int32_t err;            // errno
};

#define LV_EXIT_MAGIC 0x4c564558u   // "LVEX"

// Written by the jail's init to the report pipe when the command has ended.
struct lv_exit_record {
    uint32_t magic;
    int32_t status;         // wait status of the command (the jail's first process)
    uint32_t xcpu_deaths;   // processes in the jail that died of SIGXCPU
    uint32_t xfsz_deaths;   // ... of SIGXFSZ
    int64_t utime_us;       // rusage of every process init reaped
    int64_t stime_us;
    int64_t maxrss_kb;
};

struct lv_spawn_result {
    pid_t pid;              // host pid of the jail's PID 1
    int pidfd;              // pidfd of it
    int report_fd;          // read end: one lv_exit_record when the command ended
    int sync_fd;            // write end the jail watches for the parent's death; close when done
    struct lv_error_record error;  // step != 0: the spawn failed (or, step == LV_STEP_EXEC, the exec)
};

// A jail between lv_spawn_start and lv_spawn_finish.
struct lv_spawn_handle {
    pid_t pid;
    int pidfd;
    int sync_fd;            // socketpair to the child
    int err_fd;             // error pipe, read end
    int report_fd;          // report pipe, read end
};

// Spawns a jail in two halves, so the caller can make the run's cgroups
// while the child builds its root. lv_spawn_start clones the child and lets
// it start; lv_spawn_finish sends it the cgroup v1 `tasks` fds (it moves
// itself in; none on v2), writes its uid/gid maps, and returns 0 once the
// command was exec'd (result->pid/pidfd/report_fd/sync_fd filled; the
// caller owns them), or -1 with result->error set (the child reaped). Both
// must be called from the same thread, one that outlives the jail: the
// die-with-parent signal is tied to the calling thread.
int lv_spawn_start(const struct lv_spawn_config *config, struct lv_spawn_handle *handle, struct lv_error_record *error);
int lv_spawn_finish(const struct lv_spawn_config *config, struct lv_spawn_handle *handle,
                    const int *cgroup_fds, size_t cgroup_fd_count, struct lv_spawn_result *result);
// Kills and reaps a started jail and closes its fds.
void lv_spawn_abort(struct lv_spawn_handle *handle);
// lv_spawn_start then lv_spawn_finish with no cgroup fds.
int lv_spawn(const struct lv_spawn_config *config, struct lv_spawn_result *result);

// Forks the cgroup sentinel, a small process that removes cgroup
// directories when the caller dies without doing it. Write "+PATH\n" to the
// returned fd to register a directory, "-PATH\n" to forget it (removed by
// the caller). At EOF — the caller closed the fd or died — the sentinel
// kills what is left in each registered directory and removes them, the
// last registered first, retrying for up to timeout_ms. Returns the fd, or
// -1 with errno.
int lv_sentinel_start(int timeout_ms, pid_t *sentinel_pid);

// A run's process inside a session's jail (levain-harness).
struct lv_run_spec {
    const char *const *argv;        // NULL-terminated
    const char *const *envp;        // NULL-terminated
    const char *search_path;
    const char *cwd;
    int stdin_fd, stdout_fd, stderr_fd;   // -1: /dev/null
    const int *cgroup_fds;          // the run's cgroup: "0" is written to each
    size_t cgroup_fd_count;
    uint32_t uid, gid;
    const struct lv_rlimit *rlimits;
    size_t rlimit_count;
    void *caps_empty;               // an empty cap_t
    int controlling_tty;            // 1: stdin is a terminal's slave, made the controlling terminal (TIOCSCTTY)
};

// Starts a run's process: a new session, the run's cgroup, stdio, cwd,
// rlimits, the jail user without capabilities, exec. Returns 0 (exec'd),
// 1 (the exec failed: error->step == LV_STEP_EXEC, the child exits 126/127),
// or -1 (setup failed: error set; the child, if any, exits 125). *pid is set
// whenever a child was made; the caller reaps it.
int lv_run_spawn(const struct lv_run_spec *spec, pid_t *pid, struct lv_error_record *error);

// A new pseudo-terminal for a run: the master (O_RDWR|O_NONBLOCK|O_CLOEXEC)
// and its slave (O_RDWR|O_NOCTTY|O_CLOEXEC) from the jail's own devpts
// (/dev/ptmx), the window size set. Returns 0, or -1 with errno (nothing
// left open).
int lv_pty_open(unsigned short rows, unsigned short cols, int *master, int *slave);

// A terminal's new window size (TIOCSWINSZ: the kernel signals SIGWINCH to
// its foreground process group). Returns 0, or -1 with errno.
int lv_pty_resize(int master, unsigned short rows, unsigned short cols);

// Kernel probes (1 = present, 0 = absent; landlock: the ABI version or 0).
int lv_probe_landlock_abi(void);
int lv_probe_clone3(void);
int lv_probe_openat2(void);
int lv_probe_new_mount_api(void);
int lv_probe_close_range(void);
int lv_probe_pidfd(void);
int lv_probe_seccomp_filter(void);

// Blocks the signals in the calling thread and returns a signalfd for them.
int lv_block_signals_fd(const int *sigs, size_t count);
// Reads one signal from a signalfd; its number, or -1.
int lv_read_signal(int fd);
int lv_random_bytes(void *buf, size_t len);
// openat2(2) (Swift cannot call the variadic syscall). resolve: RESOLVE_*.
int lv_openat2(int dirfd, const char *path, int flags, unsigned mode, unsigned long long resolve);
#define LV_RESOLVE_NO_XDEV 0x01
#define LV_RESOLVE_NO_MAGICLINKS 0x02
#define LV_RESOLVE_NO_SYMLINKS 0x04
#define LV_RESOLVE_BENEATH 0x08
#define LV_RESOLVE_IN_ROOT 0x10
// setfsgid + setfsuid: file operations as another user (the harness acts
// for the jail user).
void lv_set_fs_ids(unsigned uid, unsigned gid);
int lv_set_dumpable(int value);
// An empty libcap cap_t (for callers without libcap's headers).
void *lv_caps_empty(void);
// One message on a SOCK_SEQPACKET socket: `label` as data, `count` (1..8)
// descriptors attached (SCM_RIGHTS).
int lv_send_descriptors(int sock, const char *label, const int *fds, size_t count);
// Receives one such message: the label (NUL-terminated) and up to max_fds
// descriptors (close-on-exec). Returns how many descriptors, or -1.
int lv_recv_descriptors(int sock, char *label, size_t label_size, int *fds, size_t max_fds);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+, not visible to
/// Swift): the spawned program gets no descriptor from `lowfd` up.
int lv_spawn_actions_closefrom(posix_spawn_file_actions_t *actions, int lowfd);
// 1 when path is the root of a cgroup2 mount (statfs).
int lv_is_cgroup2_mount(const char *path);

// Seccomp user notification, the supervisor's side of the audit layer.
struct lv_notif {
    uint64_t id;
    uint32_t pid;             // the calling thread, in the supervisor's pid namespace
    int32_t nr;
    uint32_t arch;
    uint64_t args[6];
};
// SECCOMP_IOCTL_NOTIF_RECV. 0, or -1 with errno (ENOENT: the caller was
// gone before it was read; EINTR).
int lv_notif_recv(int listener, struct lv_notif *out);
// SECCOMP_IOCTL_NOTIF_ID_VALID: 1 while the call still waits for an answer.
int lv_notif_id_valid(int listener, uint64_t id);
// SECCOMP_IOCTL_NOTIF_SEND: the call proceeds (error 0,
// SECCOMP_USER_NOTIF_FLAG_CONTINUE) or fails with -error. 0, or -1 with
// errno (ENOENT: the caller is gone).
int lv_notif_answer(int listener, uint64_t id, int error);

// epoll for the notifier's thread: an epoll fd (close-on-exec); fd added
// for reading; fd removed; up to `max` (<= 64) ready fds with LV_EPOLL_*
// flags. -1 with errno on failure.
#define LV_EPOLL_IN 1u
#define LV_EPOLL_HUP 2u
int lv_epoll_create(void);
int lv_epoll_add(int epfd, int fd);
int lv_epoll_del(int epfd, int fd);
int lv_epoll_wait(int epfd, int *fds, unsigned *events, int max, int timeout_ms);

// Small wrappers the Swift side uses.
int lv_pidfd_send_signal(int pidfd, int sig);
int lv_pidfd_open(pid_t pid);
int lv_close_range(unsigned first, unsigned last);

// setns(2) into the network namespace of the process behind a pidfd, for
// the calling thread only (Glibc's Swift module does not export setns).
int lv_setns_net(int pidfd);

// Attaches the open regular file backing_fd to a free loop device with
// LO_FLAGS_AUTOCLEAR (the device detaches when its last opener closes and no
// mount uses it). Returns the loop device's fd (O_CLOEXEC) and its number in
// *index, or -errno. Parent-side; not for the child.
int lv_loop_attach(int backing_fd, int read_only, int *index);

// The loop device number whose backing file is (dev, ino), or -1 if none is.
// Parent-side: reads /sys/block/loop*/loop/backing_file's device numbers.
int lv_loop_find(uint64_t dev, uint64_t ino);

#ifdef __cplusplus
}
#endif

#endif
