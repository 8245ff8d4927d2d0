/* legacy.c: exercise the LEGACY x86_64 path syscalls directly (syscall(2)).
 *
 * Usage: legacy DIR   (DIR must exist and be empty; everything happens inside it)
 *
 * Prints one line per call, in a fixed order:  NAME RC ERRNO
 *   RC    the raw return value, except: open/creat report 0 for a new fd (it is
 *         closed right away, fd numbers are not part of the contract) and
 *         getdents64 reports the number of entries read from open(".");
 *   ERRNO 0 on success, else errno.
 * The last line, open_enoent, is an expected failure (-1 2).  Always exits 0.
 * Built static with musl-gcc by tests/rootfs.py (musl_programs()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long rc)
{
    printf("%s %ld %d\n", name, rc, rc < 0 ? errno : 0);
}

static long fd_call(long fd)
{
    if (fd >= 0) {
        syscall(SYS_close, fd);
        return 0;
    }
    return fd;
}

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static long count_entries(void)
{
    char buf[4096];
    long fd = syscall(SYS_open, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long n, count = 0;
    if (fd < 0)
        return fd;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
        for (long off = 0; off < n; off += ((struct linux_dirent64 *)(buf + off))->d_reclen)
            count++;
    if (n < 0) {
        int saved = errno;
        syscall(SYS_close, fd);
        errno = saved;
        return -1;
    }
    syscall(SYS_close, fd);
    return count;
}

int main(int argc, char **argv)
{
    char buf[4096];
    char st[256]; /* struct stat of the kernel; 144 bytes on x86_64 */

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    report("chdir", syscall(SYS_chdir, argv[1]));
    report("getcwd", syscall(SYS_getcwd, buf, sizeof buf));
    report("mkdir", syscall(SYS_mkdir, "d", 0755));
    report("creat", fd_call(syscall(SYS_creat, "f", 0644)));
    report("open", fd_call(syscall(SYS_open, "f", O_RDONLY | O_CLOEXEC)));
    report("stat", syscall(SYS_stat, "f", st));
    report("access", syscall(SYS_access, "f", R_OK));
    report("chmod", syscall(SYS_chmod, "f", 0600));
    report("chown", syscall(SYS_chown, "f", -1, -1));
    report("symlink", syscall(SYS_symlink, "f", "s"));
    report("lstat", syscall(SYS_lstat, "s", st));
    report("readlink", syscall(SYS_readlink, "s", buf, sizeof buf));
    report("lchown", syscall(SYS_lchown, "s", -1, -1));
    report("link", syscall(SYS_link, "f", "h"));
    report("rename", syscall(SYS_rename, "h", "h2"));
    report("utimes", syscall(SYS_utimes, "f", NULL));
    report("mknod", syscall(SYS_mknod, "p", S_IFIFO | 0644, 0));
    report("getdents64", count_entries());
    report("unlink", syscall(SYS_unlink, "h2"));
    report("rmdir", syscall(SYS_rmdir, "d"));
    report("open_enoent", syscall(SYS_open, "missing", O_RDONLY | O_CLOEXEC));
    return 0;
}
