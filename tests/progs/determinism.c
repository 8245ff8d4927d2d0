/* What a run looks like to a program that wants it to differ (tests/test_determinism.py):
 * random bytes every way (getrandom, /dev/urandom, /dev/random, AT_RANDOM), the wall
 * clock every way (time, gettimeofday, clock_gettime REALTIME through libc, so through
 * the vDSO, and as raw syscalls), and addresses (a malloc'd block, a stack variable, a
 * function of the C library, mmap).  One "key value" line each. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *key, const unsigned char *p, size_t n) {
    printf("%s ", key);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

static void device(const char *key, const char *path) {
    unsigned char buf[16] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { printf("%s error\n", key); return; }
    close(fd);
    hex(key, buf, sizeof buf);
}

int main(void) {
    unsigned char buf[16];
    /* the clocks first: a static program reads them before any file is opened */
    struct timespec ts; struct timeval tv;
    time_t t = time(NULL);
    gettimeofday(&tv, NULL);
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("time %lld\n", (long long)t);
    printf("gettimeofday %lld\n", (long long)tv.tv_sec);
    printf("clock_gettime %lld\n", (long long)ts.tv_sec);
    printf("syscall_time %ld\n", (long)syscall(SYS_time, NULL));
    struct timespec raw;
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &raw);
    printf("syscall_clock_gettime %lld\n", (long long)raw.tv_sec);
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    adjtimex(&tx);  /* ntp_gettime's source: the time is in the struct too */
    printf("adjtimex %lld\n", (long long)tx.time.tv_sec);
    unsigned char *at = (unsigned char *)getauxval(AT_RANDOM);
    if (at) hex("at_random", at, 16); else printf("at_random none\n");
    if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf) printf("getrandom error\n");
    else hex("getrandom", buf, sizeof buf);
    device("urandom", "/dev/urandom");
    device("random", "/dev/random");
    int local = 0;
    void *block = malloc(100);
    void *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("malloc %p\n", block);
    printf("stack %p\n", (void *)&local);
    printf("libc_function %p\n", (void *)&strlen);
    printf("mmap %p\n", map);
    return 0;
}
