// Internal to CLevainSpawn (not exported to Swift).
#ifndef LV_INTERNAL_H
#define LV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int lv_write_all(int fd, const void *buf, size_t len);
ssize_t lv_read_full(int fd, void *buf, size_t len);
size_t lv_strlen(const char *s);
// Formats an unsigned number; returns the length written (buf >= 21 bytes).
size_t lv_utoa(char *buf, unsigned long long v);
// Closes every fd >= 3 that is not in keep (at most 64 entries).
void lv_close_all_but(const int *keep, size_t n);

// Default dispositions for every signal and an empty mask (before exec).
// Async-signal-safe. 0, or -1 with errno.
int lv_default_signals(void);

// Descriptors sent over a socket (SCM_RIGHTS) with `len` bytes of data.
#define LV_MAX_SEND_FDS 8
int lv_sendmsg_fds(int sock, const void *data, size_t len, const int *fds, size_t count);
// Receives one message of up to `len` bytes and up to `max_fds` descriptors
// (SCM_RIGHTS, close-on-exec); descriptors beyond max_fds are closed.
// Retries EINTR. Returns the bytes received (0 at EOF) or -1 with errno.
// Async-signal-safe: the post-clone child uses it.
ssize_t lv_recvmsg_fds(int sock, void *data, size_t len, int *fds, size_t max_fds, size_t *count);
// execve argv[0], searching search_path when it has no '/'; returns the
// errno of the failure (ENOENT when not found, EACCES when not executable).
int lv_exec_search(const char *const *argv, const char *const *envp, const char *search_path);

#endif
