/* Open names relative to a directory fd (docs/design.md "Filesystem policy":
 * --fs-deny holds against dirfd-relative paths).
 *
 * usage: dirfd DIR REL...
 * prints per REL: "openat REL rc errno FIRSTWORD" (FIRSTWORD of the content, or -)
 *                 "fstatat REL rc errno"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: dirfd DIR REL...\n");
        return 2;
    }
    int dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
    printf("open %s %d %d\n", argv[1], dfd, dfd < 0 ? errno : 0);
    if (dfd < 0) return 1;
    for (int i = 2; i < argc; i++) {
        char word[128] = "-";
        errno = 0;
        int fd = openat(dfd, argv[i], O_RDONLY);
        int err = fd < 0 ? errno : 0;
        if (fd >= 0) {
            char buf[128];
            ssize_t r = read(fd, buf, sizeof buf - 1);
            if (r > 0) {
                buf[r] = 0;
                sscanf(buf, "%127s", word);
            }
            close(fd);
        }
        printf("openat %s %d %d %s\n", argv[i], fd, err, word);
        struct stat st;
        errno = 0;
        int rc = fstatat(dfd, argv[i], &st, 0);
        printf("fstatat %s %d %d\n", argv[i], rc, rc < 0 ? errno : 0);
    }
    return 0;
}
