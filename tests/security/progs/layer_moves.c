/* Moves out of the copy-on-write layer, run INSIDE a sandbox (never as root outside one).
 *
 * usage: layer_moves W O
 *   W: the workdir as the sandbox names it; for every way below it holds the
 *      file W/f-<way> (and, for the directory ways, W/d-<way>/g), made by the test.
 *   O: a writable directory (outside the layer for the probe, inside it for the
 *      control).
 *
 * Each way moves or links W's entry to O (rename, renameat, renameat2 with
 * every flag, RENAME_EXCHANGE both ways, link, linkat with and without
 * AT_SYMLINK_FOLLOW, through a symlink, AT_EMPTY_PATH, /proc/self/fd), then
 * appends "TAMPERED" to what arrived in O.  One line per way:
 *   "MOVED <way>"          the call succeeded and the append worked
 *   "MOVED-NOWRITE <way> <ERRNO>"   the call succeeded, the append did not
 *   "REFUSED <way> <ERRNO>"          the call failed
 * then "DONE".  Exit status 0 unless the probe could not run (2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#define RENAME_WHITEOUT 4
#endif

static const char *W, *O;
static char src[4096], dst[4096], extra[4096];

static const char *ename(int e) {
    static char buf[16];
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EXDEV: return "EXDEV";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EEXIST: return "EEXIST";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    case EBADF: return "EBADF";
    }
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static long renameat2_(int a, const char *p, int b, const char *q, unsigned flags) {
    return syscall(SYS_renameat2, a, p, b, q, flags);
}

/* Append TAMPERED to path (a file, or the file g in a directory). */
static int tamper(const char *path, int is_dir) {
    char buf[4200];
    snprintf(buf, sizeof buf, is_dir ? "%s/g" : "%s", path);
    int fd = open(buf, O_WRONLY | O_APPEND);
    if (fd < 0)
        return errno;
    int ok = write(fd, "TAMPERED\n", 9) == 9;
    close(fd);
    return ok ? 0 : EIO;
}

static void verdict(const char *way, long rc, int err, const char *arrived, int is_dir) {
    if (rc < 0) {
        printf("REFUSED %s %s\n", way, ename(err));
        return;
    }
    int t = tamper(arrived, is_dir);
    if (t)
        printf("MOVED-NOWRITE %s %s\n", way, ename(t));
    else
        printf("MOVED %s\n", way);
}

static void names(const char *way, int is_dir) {
    snprintf(src, sizeof src, "%s/%c-%s", W, is_dir ? 'd' : 'f', way);
    snprintf(dst, sizeof dst, "%s/m-%s", O, way);
    snprintf(extra, sizeof extra, "%s/x-%s", O, way);
}

static void make_extra(int is_dir) {
    if (is_dir) {
        char g[4200];
        mkdir(extra, 0755);
        snprintf(g, sizeof g, "%s/g", extra);
        close(open(g, O_WRONLY | O_CREAT, 0644));
    } else {
        close(open(extra, O_WRONLY | O_CREAT, 0644));
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: layer_moves W O\n");
        return 2;
    }
    W = argv[1], O = argv[2];
    long rc;
    int fd;

#ifdef SYS_rename
    names("rename", 0);
    rc = syscall(SYS_rename, src, dst);
    verdict("rename", rc, errno, dst, 0);
#else  /* no legacy rename on this architecture: renameat stands in */
    names("rename", 0);
    rc = syscall(SYS_renameat, AT_FDCWD, src, AT_FDCWD, dst);
    verdict("rename", rc, errno, dst, 0);
#endif

    names("renameat", 0);
    rc = syscall(SYS_renameat, AT_FDCWD, src, AT_FDCWD, dst);
    verdict("renameat", rc, errno, dst, 0);

    names("renameat-dirfd", 0);
    {
        int wd = open(W, O_RDONLY | O_DIRECTORY), od = open(O, O_RDONLY | O_DIRECTORY);
        rc = syscall(SYS_renameat, wd, "f-renameat-dirfd", od, "m-renameat-dirfd");
        int e = errno;
        close(wd), close(od);
        verdict("renameat-dirfd", rc, e, dst, 0);
    }

    names("renameat2", 0);
    rc = renameat2_(AT_FDCWD, src, AT_FDCWD, dst, 0);
    verdict("renameat2", rc, errno, dst, 0);

    names("noreplace", 0);
    rc = renameat2_(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE);
    verdict("noreplace", rc, errno, dst, 0);

    names("exchange-out", 0);
    make_extra(0);
    rc = renameat2_(AT_FDCWD, src, AT_FDCWD, extra, RENAME_EXCHANGE);
    verdict("exchange-out", rc, errno, extra, 0);

    names("exchange-in", 0);
    make_extra(0);
    rc = renameat2_(AT_FDCWD, extra, AT_FDCWD, src, RENAME_EXCHANGE);
    verdict("exchange-in", rc, errno, extra, 0);

    names("whiteout", 0);
    rc = renameat2_(AT_FDCWD, src, AT_FDCWD, dst, RENAME_WHITEOUT);
    verdict("whiteout", rc, errno, dst, 0);

    names("moved-twice", 0);
    snprintf(extra, sizeof extra, "%s/f-moved-twice.inside", W);
    rc = rename(src, extra);
    if (rc == 0)
        rc = rename(extra, dst);
    verdict("moved-twice", rc, errno, dst, 0);

#ifdef SYS_link
    names("link", 0);
    rc = syscall(SYS_link, src, dst);
    verdict("link", rc, errno, dst, 0);
#else
    names("link", 0);
    rc = syscall(SYS_linkat, AT_FDCWD, src, AT_FDCWD, dst, 0);
    verdict("link", rc, errno, dst, 0);
#endif

    names("linkat", 0);
    rc = syscall(SYS_linkat, AT_FDCWD, src, AT_FDCWD, dst, 0);
    verdict("linkat", rc, errno, dst, 0);

    names("linkat-follow", 0);
    rc = syscall(SYS_linkat, AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW);
    verdict("linkat-follow", rc, errno, dst, 0);

    names("linkat-symlink", 0);  /* a symlink in W to W's file, followed */
    snprintf(extra, sizeof extra, "%s/l-linkat-symlink", W);
    symlink("f-linkat-symlink", extra);
    rc = syscall(SYS_linkat, AT_FDCWD, extra, AT_FDCWD, dst, AT_SYMLINK_FOLLOW);
    verdict("linkat-symlink", rc, errno, dst, 0);

    names("linkat-empty-path", 0);
    fd = open(src, O_RDONLY);
    rc = syscall(SYS_linkat, fd, "", AT_FDCWD, dst, AT_EMPTY_PATH);
    verdict("linkat-empty-path", rc, errno, dst, 0);
    close(fd);

    names("linkat-proc-fd", 0);
    fd = open(src, O_RDONLY);
    snprintf(extra, sizeof extra, "/proc/self/fd/%d", fd);
    rc = syscall(SYS_linkat, AT_FDCWD, extra, AT_FDCWD, dst, AT_SYMLINK_FOLLOW);
    verdict("linkat-proc-fd", rc, errno, dst, 0);
    close(fd);

    names("rename-dir", 1);
    rc = syscall(SYS_renameat, AT_FDCWD, src, AT_FDCWD, dst);
    verdict("rename-dir", rc, errno, dst, 1);

    names("exchange-dir-out", 1);
    make_extra(1);
    rc = renameat2_(AT_FDCWD, src, AT_FDCWD, extra, RENAME_EXCHANGE);
    verdict("exchange-dir-out", rc, errno, extra, 1);

    names("exchange-dir-in", 1);
    make_extra(1);
    rc = renameat2_(AT_FDCWD, extra, AT_FDCWD, src, RENAME_EXCHANGE);
    verdict("exchange-dir-in", rc, errno, extra, 1);

    printf("DONE\n");
    return 0;
}
