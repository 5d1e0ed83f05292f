// Seccomp user notification: the supervisor's side of the audit layer
// (the ioctls Swift cannot spell: their numbers are function-like macros).
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/seccomp.h>

#include "lv_spawn.h"

int lv_notif_recv(int listener, struct lv_notif *out) {
    struct seccomp_notif n;
    memset(&n, 0, sizeof n);  // the kernel refuses a request that is not zeroed
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &n) != 0) return -1;
    out->id = n.id;
    out->pid = n.pid;
    out->nr = n.data.nr;
    out->arch = n.data.arch;
    for (int i = 0; i < 6; i++) out->args[i] = n.data.args[i];
    return 0;
}

int lv_notif_id_valid(int listener, uint64_t id) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

int lv_notif_answer(int listener, uint64_t id, int error) {
    struct seccomp_notif_resp r;
    memset(&r, 0, sizeof r);
    r.id = id;
    if (error == 0) {
        r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        r.error = -error;
    }
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r) == 0 ? 0 : -1;
}

// epoll, which Swift's Glibc module does not export.
int lv_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int lv_epoll_add(int epfd, int fd) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;  // EPOLLHUP and EPOLLERR are always reported
    e.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
}

int lv_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int lv_epoll_wait(int epfd, int *fds, unsigned *events, int max, int timeout_ms) {
    struct epoll_event e[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, e, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        fds[i] = e[i].data.fd;
        events[i] = (e[i].events & EPOLLIN ? LV_EPOLL_IN : 0) | (e[i].events & (EPOLLHUP | EPOLLERR) ? LV_EPOLL_HUP : 0);
    }
    return n;
}
