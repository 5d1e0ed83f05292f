// Hostile payloads for the jail tests: one program, one attack per name.
//
//   payloads NAME attack    try the attack; print "RESULT <what happened>"
//   payloads NAME control   do the same kind of thing that is allowed;
//                           print "RESULT ok ..." (a control must succeed)
//
// Each prints exactly one RESULT line (unless it is killed, which some
// attacks must be). The tests compile this with gcc during the test run and
// bind it read-only into the jail.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/capability.h>

static int control;

static void result_errno(const char *what, long r) {
    if (r < 0) {
        int e = errno;
        const char *name = strerrorname_np(e);
        printf("RESULT %s denied %s\n", what, name ? name : "?");
    } else {
        printf("RESULT %s allowed %ld\n", what, r);
    }
}

static pid_t sleeper(void) {
    pid_t p = fork();
    if (p == 0) {
        pause();
        _exit(0);
    }
    usleep(20000);
    return p;
}

typedef void (*payload_fn)(void);

// ---- escaping the root
static void p_chroot(void) {
    if (control) {
        result_errno("chdir", chdir("/tmp"));
        return;
    }
    mkdir("/tmp/x", 0755);
    long r = chroot("/tmp/x");
    if (r == 0) {
        for (int i = 0; i < 64; i++) chdir("..");
        chroot(".");
    }
    result_errno("chroot", r);
}

static void p_dotdot(void) {
    // Walk up from / and see where we are: the jail's root has /workspace.
    chdir("/");
    for (int i = 0; i < 64; i++) chdir("..");
    struct stat st;
    int jail = stat("workspace", &st) == 0;
    int host = stat("root", &st) == 0 || stat("home", &st) == 0 || stat("boot", &st) == 0;
    if (control) { printf("RESULT %s\n", jail ? "ok jail-root" : "bad"); return; }
    printf("RESULT dotdot %s\n", (jail && !host) ? "stayed-in-jail" : "ESCAPED");
}

static void p_open_by_handle(void) {
    if (control) { result_errno("open", open("/etc/hostname", O_RDONLY)); return; }
    struct { unsigned int bytes; int type; unsigned char h[8]; } fh = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
    result_errno("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
}

static void p_fds(void) {
    // Nothing but stdio may be open: try every fd from 3 to 1023.
    int open_fds = 0, first = -1;
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1) { open_fds++; if (first < 0) first = fd; }
    }
    if (control) { printf("RESULT %s\n", fcntl(1, F_GETFD) != -1 ? "ok stdout-open" : "bad"); return; }
    if (open_fds == 0) printf("RESULT fds none-leaked\n");
    else printf("RESULT fds LEAKED %d first=%d\n", open_fds, first);
}

// ---- mounts and namespaces
static void p_mount(void) {
    if (control) { result_errno("mkdir", mkdir("/tmp/m", 0755)); return; }
    mkdir("/tmp/m", 0755);
    result_errno("mount", mount("none", "/tmp/m", "tmpfs", 0, NULL));
}

static void p_umount(void) {
    if (control) { result_errno("stat", access("/proc/self", F_OK)); return; }
    result_errno("umount2", umount2("/proc", MNT_DETACH));
}

static void p_unshare_user(void) {
    if (control) { result_errno("getuid", getuid()); return; }
    result_errno("unshare", unshare(CLONE_NEWUSER));
}

static void p_unshare_mnt(void) {
    if (control) { result_errno("getpid", getpid()); return; }
    result_errno("unshare", unshare(CLONE_NEWNS));
}

static void p_setns(void) {
    int fd = open("/proc/self/ns/net", O_RDONLY);
    if (control) { result_errno("open-own-ns", fd); return; }
    result_errno("setns", syscall(SYS_setns, fd, 0));
}

static void p_clone_ns(void) {
    long flags = control ? SIGCHLD : (SIGCHLD | CLONE_NEWUSER | CLONE_NEWNS);
    long r = syscall(SYS_clone, flags, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    result_errno("clone", r);
}

static void p_clone3(void) {
    if (control) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        result_errno("fork", p);
        return;
    }
    struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) _exit(0);
    result_errno("clone3", r);
}

static void p_pivot_root(void) {
    if (control) { result_errno("chdir", chdir("/")); return; }
    result_errno("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
}

static void p_fsopen(void) {
    if (control) { result_errno("getppid", getppid()); return; }
    result_errno("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
}

// ---- ptrace
static void p_ptrace_attach(void) {
    pid_t p = sleeper();
    long r = control ? kill(p, 0) : ptrace(PTRACE_ATTACH, p, 0, 0);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    result_errno(control ? "kill0" : "ptrace", r);
}

static void p_ptrace_traceme(void) {
    if (control) { result_errno("getpid", getpid()); return; }
    result_errno("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
}

static void p_process_vm(void) {
    pid_t p = sleeper();
    char buf[16];
    static char src[16] = "secret";
    struct iovec local = {buf, sizeof buf}, remote = {src, sizeof src};
    long r = control ? (long)sizeof buf : syscall(SYS_process_vm_readv, p, &local, 1, &remote, 1, 0);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    result_errno("process_vm_readv", r);
}

static void p_init_mem(void) {
    // PID 1 is the jail's init: nobody in the jail may read its memory.
    int fd = open(control ? "/proc/self/status" : "/proc/1/mem", O_RDONLY);
    result_errno(control ? "open-self-status" : "open-init-mem", fd);
}

// ---- seccomp ABI tricks
static void p_int80(void) {
    long r;
    if (control) {
        r = syscall(SYS_getpid);
    } else {
        // getpid through the i386 ABI: a foreign architecture, killed.
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
    }
    printf("RESULT int80 survived %ld\n", r);
}

static void p_x32(void) {
    long r;
    long nr = control ? 39 : (0x40000000 | 39);
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
    printf("RESULT x32 survived %ld\n", r);
}

static void p_tiocsti(void) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) { result_errno("posix_openpt", master); return; }
    grantpt(master);
    unlockpt(master);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (control) {
        struct termios t;
        result_errno("tcgetattr", tcgetattr(slave, &t));
        return;
    }
    char c = 'x';
    long r1 = ioctl(slave, TIOCSTI, &c);
    int e1 = errno;
    // The same request with high bits set must not slip past a 64-bit compare.
    long r2 = syscall(SYS_ioctl, slave, 0x100000000UL | TIOCSTI, &c);
    if (r1 < 0 && r2 < 0 && e1 == EPERM && errno == EPERM) printf("RESULT tiocsti denied EPERM\n");
    else printf("RESULT tiocsti ALLOWED %ld/%ld\n", r1, r2);
}

static void p_tioclinux(void) {
    if (control) { int n = 0; result_errno("fionread", ioctl(STDOUT_FILENO, FIONREAD, &n)); return; }
    char sub = 6;
    result_errno("tioclinux", ioctl(0, TIOCLINUX, &sub));
}

static void p_io_uring(void) {
    if (control) { result_errno("epoll_create1", syscall(SYS_epoll_create1, 0)); return; }
    char params[120];
    memset(params, 0, sizeof params);
    result_errno("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
}

static void p_bpf(void) {
    if (control) { result_errno("getrandom", syscall(SYS_getrandom, (char[8]){0}, 8, 0)); return; }
    char attr[128];
    memset(attr, 0, sizeof attr);
    result_errno("bpf", syscall(SYS_bpf, 0, attr, sizeof attr));
}

static void p_perf(void) {
    if (control) { result_errno("times", syscall(SYS_times, NULL)); return; }
    char attr[128];
    memset(attr, 0, sizeof attr);
    result_errno("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
}

static void p_keyctl(void) {
    if (control) { result_errno("uname", syscall(SYS_uname, (char[400]){0})); return; }
    result_errno("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */));
}

static void p_userfaultfd(void) {
    if (control) { result_errno("eventfd", syscall(SYS_eventfd2, 0, 0)); return; }
    result_errno("userfaultfd", syscall(SYS_userfaultfd, 0));
}

static void p_modules(void) {
    if (control) { result_errno("sysinfo", syscall(SYS_sysinfo, (char[128]){0})); return; }
    result_errno("init_module", syscall(SYS_init_module, "", 0, ""));
}

static void p_kexec(void) {
    if (control) { result_errno("getcpu", syscall(SYS_getcpu, NULL, NULL, NULL)); return; }
    result_errno("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
}

static void p_personality(void) {
    long r = personality(control ? 0 : READ_IMPLIES_EXEC);
    result_errno("personality", r);
}

static void p_af_packet(void) {
    result_errno("socket", socket(control ? AF_INET : AF_PACKET, SOCK_DGRAM, 0));
}

static void p_af_alg(void) {
    result_errno("socket", socket(control ? AF_UNIX : AF_ALG, SOCK_SEQPACKET, 0));
}

static void p_af_vsock(void) {
    result_errno("socket", socket(control ? AF_INET6 : AF_VSOCK, SOCK_STREAM, 0));
}

static void p_netlink_audit(void) {
    result_errno("socket", socket(AF_NETLINK, SOCK_RAW, control ? 0 /* ROUTE */ : 9 /* AUDIT */));
}

// ---- privileges
static void p_setuid(void) {
    result_errno("setuid", setuid(control ? getuid() : 0));
}

static void p_capset(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (control) { result_errno("capget", syscall(SYS_capget, &h, d)); return; }
    d[0].effective = d[0].permitted = 1u << CAP_SYS_ADMIN;
    result_errno("capset", syscall(SYS_capset, &h, d));
}

static void p_ambient(void) {
    if (control) { result_errno("prctl-get-nnp", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)); return; }
    result_errno("ambient-raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0));
}

static void p_nnp(void) {
    // no_new_privs cannot be cleared.
    if (control) { result_errno("get-nnp", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)); return; }
    long r = prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0);
    result_errno("clear-nnp", r);
}

static void p_mknod(void) {
    if (control) { result_errno("mkfifo", mknod("/tmp/fifo", S_IFIFO | 0600, 0)); return; }
    result_errno("mknod", mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
}

// ---- signals
static void p_kill_all(void) {
    // kill(-1) reaches only the jail's own processes (and never init).
    pid_t p = sleeper();
    long r = control ? kill(p, SIGKILL) : kill(-1, SIGKILL);
    if (control) waitpid(p, NULL, 0);
    result_errno("kill", r);
}

static void p_kill_init(void) {
    if (control) { result_errno("kill-self-0", kill(getpid(), 0)); return; }
    result_errno("kill-init", kill(1, SIGKILL));
}

struct payload { const char *name; payload_fn fn; };

static const struct payload payloads[] = {
    {"chroot", p_chroot}, {"dotdot", p_dotdot}, {"open_by_handle", p_open_by_handle}, {"fds", p_fds},
    {"mount", p_mount}, {"umount", p_umount}, {"unshare_user", p_unshare_user}, {"unshare_mnt", p_unshare_mnt},
    {"setns", p_setns}, {"clone_ns", p_clone_ns}, {"clone3", p_clone3}, {"pivot_root", p_pivot_root},
    {"fsopen", p_fsopen}, {"ptrace_attach", p_ptrace_attach}, {"ptrace_traceme", p_ptrace_traceme},
    {"process_vm", p_process_vm}, {"init_mem", p_init_mem}, {"int80", p_int80}, {"x32", p_x32},
    {"tiocsti", p_tiocsti}, {"tioclinux", p_tioclinux}, {"io_uring", p_io_uring}, {"bpf", p_bpf},
    {"perf", p_perf}, {"keyctl", p_keyctl}, {"userfaultfd", p_userfaultfd}, {"modules", p_modules},
    {"kexec", p_kexec}, {"personality", p_personality}, {"af_packet", p_af_packet}, {"af_alg", p_af_alg},
    {"af_vsock", p_af_vsock}, {"netlink_audit", p_netlink_audit}, {"setuid", p_setuid}, {"capset", p_capset},
    {"ambient", p_ambient}, {"nnp", p_nnp}, {"mknod", p_mknod}, {"kill_all", p_kill_all}, {"kill_init", p_kill_init},
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: payloads NAME attack|control\n");
        return 2;
    }
    control = strcmp(argv[2], "control") == 0;
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        if (strcmp(payloads[i].name, argv[1]) == 0) {
            payloads[i].fn();
            return 0;
        }
    }
    fprintf(stderr, "unknown payload %s\n", argv[1]);
    return 2;
}
