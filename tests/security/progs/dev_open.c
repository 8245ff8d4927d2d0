/* Opens each PATH of argv every way a program can, and prints one line per way:
 *     <way> <path> ok <bytes read>      or      <way> <path> err <errno>
 * Ways: open, open_wait (blocking, no read), openat_root (relative to an fd of
 * "/"), openat2, rdwr (char devices only: never opens a block device for
 * writing), o_path, reopen (/proc/self/fd/N of the O_PATH fd), exec.
 * Reads are non-blocking and at most 16 bytes; nothing is ever written.
 * The argument "+pty" stands for a pseudo-terminal this program allocates
 * first (posix_openpt, then the ways above on the name ptsname gives).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct how { uint64_t flags, mode, resolve; };

static void report(const char *way, const char *path, int fd, int err) {
    if (fd < 0) {
        printf("%s %s err %d\n", way, path, err);
    } else {
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf);
        printf("%s %s ok %zd\n", way, path, n < 0 ? (ssize_t)0 : n);
        close(fd);
    }
    fflush(stdout);
}

#define TRY(way, path, call) do { errno = 0; int fd_ = (call); report(way, path, fd_, errno); } while (0)

int main(int argc, char **argv) {
    const int rd = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (int i = 1; i < argc; i++) {
        const char *path = argv[i];
        if (strcmp(path, "+pty") == 0) {
            int master = posix_openpt(O_RDWR | O_NOCTTY);
            if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !ptsname(master)) {
                printf("openpty - err %d\n", errno);
                continue;
            }
            path = strdup(ptsname(master));
            printf("openpty %s ok 0\n", path);
        }
        struct stat st;
        int is_block = stat(path, &st) == 0 && S_ISBLK(st.st_mode);
        TRY("open", path, open(path, rd));
        errno = 0;
        int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
        printf("open_wait %s %s %d\n", path, fd < 0 ? "err" : "ok", fd < 0 ? errno : 0);
        if (fd >= 0)
            close(fd);
        TRY("openat_root", path, openat(root, path[0] == '/' ? path + 1 : path, rd));
        struct how how = { rd, 0, 0 };
        TRY("openat2", path, (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how));
        if (!is_block)
            TRY("rdwr", path, open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
        errno = 0;
        int opath = open(path, O_PATH | O_CLOEXEC);
        printf("o_path %s %s %d\n", path, opath < 0 ? "err" : "ok", opath < 0 ? errno : 0);
        if (opath >= 0) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", opath);
            TRY("reopen", path, open(proc, rd));
            close(opath);
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            char *args[] = { (char *)path, NULL };
            execv(path, args);
            _exit(errno);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        printf("exec %s err %d\n", path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        fflush(stdout);
    }
    return 0;
}
