/* LD_PRELOAD shim for the tests: every write to a file whose path contains $DDSR_FAIL_WRITES
 * fails with ENOSPC, as on a full disk. Caffe writes its snapshots through std::ofstream,
 * which ends in write(2) or writev(2); both are replaced here. Built by the test that uses it
 * (tests/test_caffe_runner.py), with the C compiler that builds Caffe. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int doomed(int fd) {
    const char *match = getenv("DDSR_FAIL_WRITES");
    char link[64], path[4096];
    ssize_t n;
    if (match == NULL || *match == '\0') return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    return strstr(path, match) != NULL;
}

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (real == NULL) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (doomed(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (real == NULL) real = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    if (doomed(fd)) { errno = ENOSPC; return -1; }
    return real(fd, iov, iovcnt);
}
