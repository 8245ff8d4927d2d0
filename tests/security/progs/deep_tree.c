/* Make a directory tree N levels deep, run INSIDE a sandbox (or as the test's identity).
 *
 * usage: deep_tree DIR N
 *   makes DIR/d/d/.../d (N levels below DIR/d) without ever naming a long path:
 *   mkdir n; rename d -> n/d; rename n -> d, N times, all in DIR.
 *   Prints "DEEP N" when done; exit 1 with the failing step otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: deep_tree DIR N\n");
        return 2;
    }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    long n = atol(argv[2]);
    if (dir < 0 || mkdirat(dir, "d", 0755) < 0) {
        fprintf(stderr, "deep_tree: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (long i = 0; i < n; i++) {
        if (mkdirat(dir, "n", 0755) < 0 || renameat(dir, "d", dir, "n/d") < 0 || renameat(dir, "n", dir, "d") < 0) {
            fprintf(stderr, "deep_tree: level %ld: %s\n", i, strerror(errno));
            return 1;
        }
    }
    printf("DEEP %ld\n", n);
    return 0;
}
