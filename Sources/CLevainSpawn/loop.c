// Loop devices for size-limited workspaces: ioctl(2) is variadic, which Swift
// does not import. Parent-side only.
#define _GNU_SOURCE
#include "lv_spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int lv_loop_attach(int backing_fd, int read_only, int *index) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -errno;
    // Another process may take the free device between GET_FREE and
    // CONFIGURE (EBUSY): ask again, a bounded number of times.
    for (int attempt = 0; attempt < 64; attempt++) {
        int n = ioctl(control, LOOP_CTL_GET_FREE);
        if (n < 0) { int e = errno; close(control); return -e; }
        char path[32];
        snprintf(path, sizeof path, "/dev/loop%d", n);
        int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
            // udev may not have made the node yet on a fresh device.
            if (errno == ENOENT) { usleep(1000); continue; }
            int e = errno; close(control); return -e;
        }
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (uint32_t)backing_fd;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
        if (ioctl(fd, LOOP_CONFIGURE, &config) == 0) {
            close(control);
            *index = n;
            return fd;
        }
        int e = errno;
        close(fd);
        if (e != EBUSY) { close(control); return -e; }
    }
    close(control);
    return -EBUSY;
}

int lv_loop_find(uint64_t dev, uint64_t ino) {
    DIR *d = opendir("/sys/block");
    if (!d) return -1;
    int found = -1;
    struct dirent *e;
    while (found < 0 && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "loop", 4) != 0) continue;
        char *end = NULL;
        long n = strtol(e->d_name + 4, &end, 10);
        if (end == e->d_name + 4 || *end != 0 || n < 0) continue;
        char path[64];
        snprintf(path, sizeof path, "/sys/block/loop%ld/loop", n);
        if (access(path, F_OK) != 0) continue;  // not bound to a file
        snprintf(path, sizeof path, "/dev/loop%ld", n);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct loop_info64 info;
        if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_device == dev && info.lo_inode == ino)
            found = (int)n;
        close(fd);
    }
    closedir(d);
    return found;
}
