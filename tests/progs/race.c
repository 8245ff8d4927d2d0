/* A thread rewrites a path buffer between an allowed file and a denied one while
 * the main thread opens / stats / readlinks / execs through that buffer (docs/design.md
 * "Filesystem policy": --fs-deny must hold against a thread rewriting the path after the check).
 *
 * usage: race ALLOWED DENIED SECRET_MARKER N
 *   ALLOWED and DENIED must have the same length (the flip is then a plain copy).
 * prints: "race open attempts=N allowed=A leaked=L"
 *         "race stat attempts=N allowed=A leaked=L"
 * A leak is reading SECRET_MARKER through open(), or a stat() whose size is the
 * denied file's size (the caller makes the two sizes differ; DENIED's size is
 * passed implicitly as strlen(SECRET_MARKER) + 1, the file holding MARKER\n).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[4096];
static const char *paths[2];
static size_t len;
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        memcpy(path, paths[1], len);
        for (volatile int i = 0; i < 50; i++) {}
        memcpy(path, paths[0], len);
        for (volatile int i = 0; i < 50; i++) {}
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 || strlen(argv[1]) != strlen(argv[2]) || strlen(argv[1]) >= sizeof path) {
        fprintf(stderr, "usage: race ALLOWED DENIED SECRET_MARKER N (same length paths)\n");
        return 2;
    }
    paths[0] = argv[1];
    paths[1] = argv[2];
    len = strlen(argv[1]) + 1;
    const char *marker = argv[3];
    off_t secret_size = (off_t)strlen(marker) + 1;
    long n = atol(argv[4]);
    memcpy(path, paths[0], len);
    pthread_t t;
    if (pthread_create(&t, NULL, flipper, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    long allowed = 0, leaked = 0;
    char buf[256];
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r < 0) continue;
        buf[r] = 0;
        if (strstr(buf, marker)) leaked++;
        else allowed++;
    }
    printf("race open attempts=%ld allowed=%ld leaked=%ld\n", n, allowed, leaked);
    fflush(stdout);
    allowed = leaked = 0;
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (st.st_size == secret_size) leaked++;
        else allowed++;
    }
    printf("race stat attempts=%ld allowed=%ld leaked=%ld\n", n, allowed, leaked);
    fflush(stdout);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    return 0;
}
