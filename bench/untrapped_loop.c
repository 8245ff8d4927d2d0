/* Untrapped syscalls in a tight loop, for bench/bench_untrapped.py.
 *
 *   cc -O2 -o /tmp/untrapped_loop bench/untrapped_loop.c
 *   /tmp/untrapped_loop none|allow|run N
 *
 * "allow" first loads a seccomp filter that allows everything (NO_NEW_PRIVS,
 * then prctl(PR_SET_SECCOMP)): the cost of the kernel's seccomp entry alone,
 * the floor for a sandboxed process (the kernel's action cache learns that
 * it allows every number, so it never runs it).  "run" loads one that reads
 * an argument first, so the kernel must run it for every call: the floor of
 * a syscall decided on its arguments.  "none" loads nothing (bare, or
 * whatever filter the process runs under, e.g. sandlock's).  Prints one line per
 * syscall, "name nanoseconds-per-call", the median of 7 loops of N calls:
 * getpid, read of 1 byte of /dev/zero, write of 1 byte to /dev/null, a
 * futex wake nobody waits for, an mmap+munmap pair (counted as one), and
 * two calls sandlock's filter decides on their arguments (fcntl F_GETFL,
 * ioctl TCGETS on /dev/null, which fails with ENOTTY).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int zero, null;
static int word;
static char byte;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void c_getpid(void) { syscall(SYS_getpid); }
static void c_read(void) { if (read(zero, &byte, 1) != 1) exit(2); }
static void c_write(void) { if (write(null, &byte, 1) != 1) exit(2); }
static void c_futex(void) { syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }
static void c_mmap(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(2);
    munmap(p, 4096);
}
static void c_fcntl(void) { if (fcntl(null, F_GETFL) < 0) exit(2); }
static void c_ioctl(void) { struct termios t; ioctl(null, TCGETS, &t); }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s none|allow N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int run = strcmp(argv[1], "run") == 0;
    if (strcmp(argv[1], "allow") == 0 || run) {
        struct sock_filter allow[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {run ? 2 : 1, run ? allow : allow + 1};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
            perror("seccomp");
            return 1;
        }
    } else if (strcmp(argv[1], "none") != 0) {
        fprintf(stderr, "mode: none, allow or run\n");
        return 2;
    }
    zero = open("/dev/zero", O_RDONLY);
    null = open("/dev/null", O_WRONLY);
    if (zero < 0 || null < 0) {
        perror("open");
        return 1;
    }
    struct { const char *name; void (*fn)(void); } calls[] = {
        {"getpid", c_getpid}, {"read", c_read}, {"write", c_write}, {"futex", c_futex},
        {"mmap+munmap", c_mmap}, {"fcntl", c_fcntl}, {"ioctl", c_ioctl},
    };
    for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
        double runs[7];
        for (int r = 0; r < 7; r++) {
            double t = now();
            for (long i = 0; i < n; i++)
                calls[c].fn();
            runs[r] = (now() - t) / n;
        }
        qsort(runs, 7, sizeof runs[0], cmp);
        printf("%s %.1f\n", calls[c].name, runs[3]);
    }
    return 0;
}
