/* TOCTOU racer, run INSIDE a sandbox: a second thread flips a path buffer
 * between an allowed path and a forbidden one while the main thread uses the
 * buffer in one syscall, again and again.
 *
 * usage: race_flip OP ALLOWED FORBIDDEN SECRET DEV:INO N SECONDS STOP_EARLY
 *   OP         open | stat | rename | rename_dst | exec | exec_inplace | connect
 *   ALLOWED    open/stat/rename: a file the policy allows (not SECRET inside);
 *              rename_dst: ALLOWED.p is the allowed destination, ALLOWED.s the
 *              source (created here); exec: a program printing something else
 *              than SECRET; exec_inplace: a program this racer keeps open for
 *              writing, so that executing it fails with ETXTBSY *after* the
 *              kernel opened it; connect: a unix socket path this program binds.
 *   FORBIDDEN  the same length as ALLOWED: the canary (holds SECRET), a
 *              program printing SECRET, a listening socket that sends SECRET, or
 *              (exec_inplace) an executable file of garbage: ENOEXEC from execve
 *              means the kernel opened it for execution, past the policy.
 *   DEV:INO    of FORBIDDEN (stat verdicts).
 *   N SECONDS  stop after N attempts (once both sides were hit) or SECONDS seconds;
 *   STOP_EARLY 1: stop as soon as both sides were reached (control runs).
 * prints "ESCAPED race-OP attempt=I ..." for the first leaks, then
 *        "RESULT race-OP attempts=A allowed=B leaked=L failed=F top=ERRNO secs=S"
 *        and "HELD race-OP ERRNO" when nothing leaked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char pathbuf[4096];
static char *path = pathbuf;  /* the flipped buffer (sun_path for connect) */
static char flip[2][4096];    /* [0] allowed, [1] forbidden */
static size_t flen;
static atomic_int stop;
static atomic_long flips;  /* half-cycles done: the exec child waits for its flipper to run */
static struct sockaddr_un caddr;
static const char *secret;

static unsigned hold_every;  /* exec_inplace: now and then leave the allowed path alone for 50 us */

static void *flipper(void *arg) {
    (void)arg;
    unsigned n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        memcpy(path, flip[1], flen);
        atomic_fetch_add_explicit(&flips, 1, memory_order_relaxed);
        for (volatile unsigned i = 0; i < 20 + (n % 61); i++) {}
        memcpy(path, flip[0], flen);
        atomic_fetch_add_explicit(&flips, 1, memory_order_relaxed);
        for (volatile unsigned i = 0; i < 20 + (n * 7 % 53); i++) {}
        if (hold_every && n % hold_every == 0) usleep(50);
        n++;
    }
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* outcome of one attempt: 1 allowed side, 2 forbidden side (a leak), -errno on failure */
static int classify(const char *buf) {
    if (strstr(buf, secret)) return 2;
    return 1;
}

static int read_file(const char *p, char *buf, size_t size) {
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, buf, size - 1);
    int e = errno;
    close(fd);
    if (n < 0) return -e;
    buf[n] = 0;
    return 0;
}

static int write_file(const char *p, const char *data) {
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, data, strlen(data));
    close(fd);
    return n < 0 ? -1 : 0;
}

static unsigned long long want_dev, want_ino;
static char allowed_copy[4096], forbidden_copy[4096], moved[4096], src[4096], dst_ok[4096], dst_bad[4096];

static int try_open(void) {
    char buf[512];
    int rc = read_file(path, buf, sizeof buf);
    return rc < 0 ? rc : classify(buf);
}

static int try_stat(void) {
    struct stat st;
    if (stat(path, &st) != 0) return -errno;
    return ((unsigned long long)st.st_dev == want_dev && (unsigned long long)st.st_ino == want_ino) ? 2 : 1;
}

static int try_rename(void) {
    if (rename(path, moved) != 0) return -errno;
    char buf[512] = "";
    read_file(moved, buf, sizeof buf);
    int r = classify(buf);
    /* put it back where it came from (a leak can only be undone by another leak) */
    if (rename(moved, r == 2 ? forbidden_copy : allowed_copy) != 0 && r == 1) return -1000;
    return r;
}

static int try_rename_dst(void) {
    if (rename(src, path) != 0) return -errno;
    if (access(dst_ok, F_OK) == 0) {
        rename(dst_ok, src);
        return 1;
    }
    if (rename(dst_bad, src) != 0) write_file(src, "MOVED\n");
    return 2;
}

static int try_exec(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -errno;
    pid_t child = fork();
    if (child < 0) { close(p[0]); close(p[1]); return -errno; }
    if (child == 0) {
        dup2(p[1], 1);
        pthread_t t;
        pthread_create(&t, NULL, flipper, NULL);
        while (atomic_load(&flips) < 2 + getpid() % 5) {}
        char *av[] = {path, NULL}, *ev[] = {NULL};
        execve(path, av, ev);
        char msg[32];
        int n = snprintf(msg, sizeof msg, "EXECFAIL %d\n", errno);
        write(1, msg, n);
        _exit(127);
    }
    close(p[1]);
    char buf[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(p[0], buf + got, sizeof buf - 1 - got)) > 0) got += n;
    buf[got] = 0;
    close(p[0]);
    waitpid(child, NULL, 0);
    int e;
    if (sscanf(buf, "EXECFAIL %d", &e) == 1) return -e;
    if (got == 0) return -1001;
    return classify(buf);
}

/* exec without a fork, so that 10^4 attempts fit in seconds: no attempt can
 * succeed (ALLOWED is busy, FORBIDDEN is garbage), and the errno says which
 * file the kernel opened for execution: ETXTBSY the allowed one, ENOEXEC the
 * forbidden one (a leak), EACCES/ENOENT neither. */
static int first_free_fd;

static int try_exec_inplace(void) {
    char *av[] = {path, NULL}, *ev[] = {NULL};
    execve(path, av, ev);
    int e = errno;
    /* an emulated root leaves the fd it injected for an exec that failed late */
    for (int fd = first_free_fd; fd < first_free_fd + 16; fd++) close(fd);
    if (e == ETXTBSY) return 1;
    if (e == ENOEXEC) return 2;
    return -e;
}

static void *serve(void *arg) {
    int ls = *(int *)arg;
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        write(c, "ALLOWED\n", 8);
        close(c);
    }
    return NULL;
}

static int try_connect(void) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    if (connect(s, (struct sockaddr *)&caddr, sizeof caddr) != 0) {
        int e = errno;
        close(s);
        return -e;
    }
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    ssize_t n = read(s, buf, sizeof buf - 1);
    close(s);
    if (n <= 0) return -1002;
    buf[n] = 0;
    return classify(buf);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 9 || strlen(argv[2]) != strlen(argv[3]) || strlen(argv[2]) + 3 >= sizeof pathbuf) {
        fprintf(stderr, "usage: race_flip OP ALLOWED FORBIDDEN SECRET DEV:INO N SECONDS STOP_EARLY "
                        "(ALLOWED and FORBIDDEN of the same length)\n");
        return 2;
    }
    const char *op = argv[1];
    secret = argv[4];
    if (sscanf(argv[5], "%llu:%llu", &want_dev, &want_ino) != 2) return 2;
    long n = atol(argv[6]);
    double seconds = atof(argv[7]);
    int stop_early = atoi(argv[8]);
    snprintf(allowed_copy, sizeof allowed_copy, "%s", argv[2]);
    snprintf(forbidden_copy, sizeof forbidden_copy, "%s", argv[3]);
    snprintf(flip[0], sizeof flip[0], "%s", argv[2]);
    snprintf(flip[1], sizeof flip[1], "%s", argv[3]);
    int (*attempt)(void);
    if (!strcmp(op, "open")) attempt = try_open;
    else if (!strcmp(op, "stat")) attempt = try_stat;
    else if (!strcmp(op, "rename")) {
        attempt = try_rename;
        snprintf(moved, sizeof moved, "%s.m", argv[2]);
    } else if (!strcmp(op, "rename_dst")) {
        attempt = try_rename_dst;
        snprintf(src, sizeof src, "%s.s", argv[2]);
        snprintf(dst_ok, sizeof dst_ok, "%s.p", argv[2]);
        snprintf(dst_bad, sizeof dst_bad, "%s.p", argv[3]);
        snprintf(flip[0], sizeof flip[0], "%s", dst_ok);
        snprintf(flip[1], sizeof flip[1], "%s", dst_bad);
        if (write_file(src, "MOVED\n") != 0) { perror(src); return 2; }
    } else if (!strcmp(op, "exec")) attempt = try_exec;
    else if (!strcmp(op, "exec_inplace")) {
        attempt = try_exec_inplace;
        /* with --root the supervisor rewrites the path to its own name of the program; a
         * flipper that never pauses overwrites that before the kernel reads it */
        hold_every = 8192;
        if (open(argv[2], O_WRONLY | O_CLOEXEC) < 0) { perror(argv[2]); return 2; }
        first_free_fd = dup(0);
        close(first_free_fd);
    }
    else if (!strcmp(op, "connect")) {
        attempt = try_connect;
        if (strlen(argv[2]) >= sizeof caddr.sun_path) { fprintf(stderr, "socket path too long\n"); return 2; }
        caddr.sun_family = AF_UNIX;
        path = caddr.sun_path;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, argv[2]);
        unlink(argv[2]);
        static int ls;
        ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 128) != 0) {
            perror("bind/listen the allowed socket");
            return 2;
        }
        pthread_t st;
        pthread_create(&st, NULL, serve, &ls);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    flen = strlen(flip[0]) + 1;
    memcpy(path, flip[0], flen);
    pthread_t t;
    int own_flipper = strcmp(op, "exec") != 0;  /* exec: the forked child flips its own copy */
    if (own_flipper && pthread_create(&t, NULL, flipper, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    while (own_flipper && atomic_load(&flips) < 4) {}  /* the flipper runs before the first attempt */
    long attempts = 0, allowed = 0, leaked = 0, failed = 0;
    long errcount[1100] = {0};
    double t0 = now();
    /* past N attempts, go on (within SECONDS) until both sides were hit: a flipper that was
     * never scheduled during a fast loop proves nothing */
    while ((attempts < n || !allowed || !(leaked + failed)) && now() - t0 < seconds) {
        int r = attempt();
        attempts++;
        if (r == 1) allowed++;
        else if (r == 2) {
            if (++leaked <= 3) printf("ESCAPED race-%s attempt=%ld\n", op, attempts);
        } else {
            failed++;
            int e = -r;
            if (e >= 0 && e < 1100) errcount[e]++;
        }
        if (stop_early && allowed && leaked) break;
    }
    double secs = now() - t0;
    if (own_flipper) {
        atomic_store(&stop, 1);
        pthread_join(t, NULL);
    }
    int top = 0;
    for (int e = 1; e < 1100; e++)
        if (errcount[e] > errcount[top]) top = e;
    char errs[256] = "";
    size_t used = 0;
    for (int e = 1; e < 1100 && used < sizeof errs - 24; e++)
        if (errcount[e]) used += snprintf(errs + used, sizeof errs - used, "%s%d:%ld", used ? "," : "", e, errcount[e]);
    printf("RESULT race-%s attempts=%ld allowed=%ld leaked=%ld failed=%ld top=%d secs=%.2f errnos=%s\n", op, attempts,
           allowed, leaked, failed, top, secs, used ? errs : "-");
    if (!leaked) printf("HELD race-%s %d\n", op, top);
    fflush(stdout);
    _exit(0);  /* the server thread of connect may be blocked in accept */
}
