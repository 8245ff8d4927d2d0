/* The kernel's floor for a seccomp user notification, without Python: what the
 * README's figures for the notification thread and for fd injection rest on.
 *
 *   gcc -O2 -o /tmp/notif_floor bench/notif_floor.c && /tmp/notif_floor [N [DECIDE_US]]
 *
 * A child installs a filter that notifies getppid and openat, and loops N
 * times over one of them; the parent answers every notification.  Printed,
 * in microseconds per trapped call (median of 5 loops):
 *
 *   rt  sync/recv    getppid answered by a SEND; the parent blocks in
 *                    SECCOMP_IOCTL_NOTIF_RECV with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
 *                    (what the notification thread of _supervisor does)
 *   rt  poll+recv    the same, the parent waiting in poll(2) first, no sync flag
 *                    (what a selectors loop over the listener would do)
 *   open addfd+send  openat answered with ADDFD, then SEND of the number
 *   open addfd_send  openat answered with one ADDFD carrying SECCOMP_ADDFD_FLAG_SEND
 *
 * each with both processes on CPU 0 ("same"), on CPUs 0 and 1 ("cross"), and
 * wherever the scheduler puts them ("free", as sandlock runs).
 *
 * DECIDE_US (default 0): the parent spins that long between receiving a call and
 * answering it, as a supervisor deciding in Python does (sandlock's handlers
 * take 10-40 us), to compare "free" with "same" at a realistic decision time
 * (README "How it works": where a Python command's opens move between CPUs).
 * Linux >= 6.6 (SYNC_WAKE_UP); no privilege needed (NO_NEW_PRIVS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

enum { RT_SYNC, RT_POLL, OPEN_TWO, OPEN_ONE, MODES };
static const char *names[MODES] = {"rt  sync/recv  ", "rt  poll+recv  ", "open addfd+send", "open addfd_send"};

static cpu_set_t every_cpu;  /* the affinity the program started with */

/* cpu < 0: wherever the scheduler likes ("free"), as at the start: the parent
 * was pinned by the runs before, and its child would inherit that */
static void pin(int cpu) {
    cpu_set_t set = every_cpu;
    if (cpu >= 0) {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    if (sched_setaffinity(0, sizeof set, &set)) { perror("sched_setaffinity"); exit(1); }
}

static void send_fd(int sock, int fd) {
    char c = 0;
    struct iovec iov = {&c, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(sock, &m, 0) < 0) { perror("sendmsg"); exit(1); }
}

static int recv_fd(int sock) {
    char c;
    struct iovec iov = {&c, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &m, 0) <= 0) { perror("recvmsg"); exit(1); }
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double decide_us;  /* the parent's time to decide, spun (DECIDE_US) */

static void decide(void) {
    if (decide_us <= 0) return;
    double until = now() + decide_us / 1e6;
    while (now() < until) {}
}

/* child: filter, hand the listener over, loop, report the time through the pipe */
static void child(int sock, int out, int mode, int n, int cpu) {
    pin(cpu);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("no_new_privs"); exit(1); }
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) { perror("seccomp"); exit(1); }
    send_fd(sock, listener);
    close(listener);
    char go;
    if (read(sock, &go, 1) != 1) exit(1);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        if (mode <= RT_POLL) {
            if (syscall(SYS_getppid) != 4242) { fprintf(stderr, "bad answer\n"); exit(1); }
        } else {
            int fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
            if (fd < 0) { perror("openat"); exit(1); }
            close(fd);
        }
    }
    double dt = (now() - t0) / n * 1e6;
    if (write(out, &dt, sizeof dt) != sizeof dt) exit(1);
    exit(0);
}

static double one(int mode, int n, int place) {
    int sv[2], p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || pipe(p)) { perror("socketpair"); exit(1); }
    pid_t pid = fork();
    if (pid == 0) { close(sv[0]); close(p[0]); child(sv[1], p[1], mode, n, place == 2 ? -1 : place); }
    close(sv[1]); close(p[1]);
    pin(place == 2 ? -1 : 0);
    int listener = recv_fd(sv[0]);
    if (mode != RT_POLL && ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) {
        perror("SYNC_WAKE_UP"); exit(1);
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    if (write(sv[0], "g", 1) != 1) exit(1);
    for (int i = 0; i < n; i++) {
        if (mode == RT_POLL) {
            struct pollfd pf = {listener, POLLIN, 0};
            if (poll(&pf, 1, -1) < 0) { perror("poll"); exit(1); }
        }
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req)) { if (errno == EINTR) { i--; continue; } perror("RECV"); exit(1); }
        decide();
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        if (mode <= RT_POLL) {
            resp.val = 4242;
        } else {
            struct seccomp_notif_addfd add = {.id = req.id, .srcfd = devnull, .newfd_flags = O_CLOEXEC};
            if (mode == OPEN_ONE) add.flags = SECCOMP_ADDFD_FLAG_SEND;
            int number = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
            if (number < 0) { perror("ADDFD"); exit(1); }
            if (mode == OPEN_ONE) continue;
            resp.val = number;
        }
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp)) { perror("SEND"); exit(1); }
    }
    double dt;
    if (read(p[0], &dt, sizeof dt) != sizeof dt) exit(1);
    waitpid(pid, NULL, 0);
    close(listener); close(devnull); close(sv[0]); close(p[0]);
    return dt;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    decide_us = argc > 2 ? atof(argv[2]) : 0;
    if (sched_getaffinity(0, sizeof every_cpu, &every_cpu)) { perror("sched_getaffinity"); exit(1); }
    static const char *places[] = {"same", "cross", "free"};
    for (int place = 0; place < 3; place++)
        for (int mode = 0; mode < MODES; mode++) {
            double r[5];
            for (int k = 0; k < 5; k++) r[k] = one(mode, n, place);
            qsort(r, 5, sizeof r[0], cmp);
            printf("%s %-5s %6.2f us  (min %.2f, max %.2f)\n", names[mode], places[place], r[2], r[0], r[4]);
            fflush(stdout);
        }
    return 0;
}
