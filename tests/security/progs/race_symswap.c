/* A symlink swapped while the supervisor resolves it, run INSIDE a sandbox.
 *
 * usage: race_symswap LINKDIR GOOD BAD_ABS BAD_REL SECRET DEV:INO N SECONDS STOP_EARLY
 * A thread keeps replacing LINKDIR/link (symlink + rename over it) with a
 * symlink to GOOD, BAD_ABS, GOOD, BAD_REL in turn, while the main thread opens
 * and stats LINKDIR/link, alternately.  BAD_* name the canary (SECRET inside,
 * identified by DEV:INO).
 * prints "ESCAPED symswap-OP attempt=I" for the first leaks, then per op
 *        "RESULT symswap-OP attempts=A allowed=B leaked=L failed=F top=ERRNO secs=S"
 *        and "HELD symswap-OP ERRNO" when nothing leaked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *targets[4];
static char link_path[4096], tmp_path[2][4096];
static atomic_int stop;
static atomic_long swaps, swap_errors;

static void *swapper(void *arg) {
    (void)arg;
    unsigned i = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        const char *tmp = tmp_path[i & 1];
        unlink(tmp);
        if (symlink(targets[i % 4], tmp) != 0 || rename(tmp, link_path) != 0) atomic_fetch_add(&swap_errors, 1);
        else atomic_fetch_add(&swaps, 1);
        i++;
    }
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 10) {
        fprintf(stderr, "usage: race_symswap LINKDIR GOOD BAD_ABS BAD_REL SECRET DEV:INO N SECONDS STOP_EARLY\n");
        return 2;
    }
    snprintf(link_path, sizeof link_path, "%s/link", argv[1]);
    snprintf(tmp_path[0], sizeof tmp_path[0], "%s/link.t0", argv[1]);
    snprintf(tmp_path[1], sizeof tmp_path[1], "%s/link.t1", argv[1]);
    targets[0] = argv[2];
    targets[1] = argv[3];
    targets[2] = argv[2];
    targets[3] = argv[4];
    const char *secret = argv[5];
    unsigned long long dev, ino;
    if (sscanf(argv[6], "%llu:%llu", &dev, &ino) != 2) return 2;
    long n = atol(argv[7]);
    double seconds = atof(argv[8]);
    int stop_early = atoi(argv[9]);
    unlink(link_path);
    if (symlink(targets[0], link_path) != 0) {
        perror(link_path);
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, swapper, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    while (atomic_load(&swaps) + atomic_load(&swap_errors) < 2) {}  /* the swapper runs first */
    const char *ops[2] = {"open", "stat"};
    long attempts[2] = {0}, allowed[2] = {0}, leaked[2] = {0}, failed[2] = {0};
    int lasterr[2] = {0};
    double t0 = now();
    long total = 0;
    while ((total < 2 * n || !allowed[0] || !allowed[1] || !(leaked[0] + failed[0]) || !(leaked[1] + failed[1])) &&
           now() - t0 < seconds) {
        int k = total++ & 1;
        int r;
        if (k == 0) {
            int fd = open(link_path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) r = -errno;
            else {
                char buf[512];
                ssize_t got = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (got < 0) r = -EIO;
                else { buf[got] = 0; r = strstr(buf, secret) ? 2 : 1; }
            }
        } else {
            struct stat st;
            if (stat(link_path, &st) != 0) r = -errno;
            else r = ((unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino) ? 2 : 1;
        }
        attempts[k]++;
        if (r == 1) allowed[k]++;
        else if (r == 2) {
            if (++leaked[k] <= 3) printf("ESCAPED symswap-%s attempt=%ld\n", ops[k], attempts[k]);
        } else {
            failed[k]++;
            if (-r != ENOENT || !lasterr[k]) lasterr[k] = -r;  /* ENOENT: between unlink and rename */
        }
        if (stop_early && allowed[0] && leaked[0] && allowed[1] && leaked[1]) break;
    }
    double secs = now() - t0;
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    for (int k = 0; k < 2; k++) {
        printf("RESULT symswap-%s attempts=%ld allowed=%ld leaked=%ld failed=%ld top=%d secs=%.2f swaps=%ld "
               "swap_errors=%ld\n", ops[k], attempts[k], allowed[k], leaked[k], failed[k], lasterr[k], secs,
               atomic_load(&swaps), atomic_load(&swap_errors));
        if (!leaked[k]) printf("HELD symswap-%s %d\n", ops[k], lasterr[k]);
    }
    return 0;
}
