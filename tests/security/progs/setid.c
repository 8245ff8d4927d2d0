/* Tries every way to make a set-user-id or set-group-id file in DIR (argv[1]),
 * one line per way:   <way> ok   or   <way> err <errno>
 * Controls (which must work): chmod_755, chmod_sticky_dir, chmod_keep_sgid_dir
 * (argv[2], if given, is a directory that is set-gid already), mkdir_in_sgid.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

struct how { uint64_t flags, mode, resolve; };
static char dir[4096];

static void report(const char *way, long rc) {
    if (rc < 0)
        printf("%s err %d\n", way, errno);
    else
        printf("%s ok\n", way);
    fflush(stdout);
}

static const char *at(const char *name) {
    static char buf[2][4200];
    static int turn;
    char *out = buf[turn++ & 1];
    snprintf(out, 4200, "%s/%s", dir, name);
    return out;
}

static int plain(const char *name) {  /* a plain 0755 file to change */
    int fd = open(at(name), O_CREAT | O_WRONLY | O_CLOEXEC, 0755);
    if (fd < 0) {
        printf("%s setup-failed %d\n", name, errno);
        return -1;
    }
    return fd;
}

#define TRY(way, call) do { errno = 0; report(way, (long)(call)); } while (0)

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    umask(022);
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd;

    if ((fd = plain("chmod_suid")) >= 0) { close(fd); TRY("chmod_suid", chmod(at("chmod_suid"), 04755)); }
    if ((fd = plain("chmod_sgid")) >= 0) { close(fd); TRY("chmod_sgid", chmod(at("chmod_sgid"), 02755)); }
    if ((fd = plain("fchmod")) >= 0) { TRY("fchmod", fchmod(fd, 06755)); close(fd); }
    if ((fd = plain("fchmodat")) >= 0) { close(fd); TRY("fchmodat", fchmodat(dfd, "fchmodat", 04755, 0)); }
    if ((fd = plain("fchmodat2")) >= 0) {
        close(fd);
        TRY("fchmodat2", syscall(SYS_fchmodat2, dfd, "fchmodat2", 02755, 0));
    }
    if ((fd = plain("fchmod_procfd")) >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        TRY("fchmod_procfd", chmod(proc, 04755));
        close(fd);
    }
    TRY("open_creat", fd = open(at("open_creat"), O_CREAT | O_WRONLY | O_CLOEXEC, 04755));
    if (fd >= 0) close(fd);
    TRY("openat_creat", fd = openat(dfd, "openat_creat", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 02755));
    if (fd >= 0) close(fd);
    TRY("creat", fd = creat(at("creat"), 06755));
    if (fd >= 0) close(fd);
    struct how how = { O_CREAT | O_WRONLY | O_CLOEXEC, 04755, 0 };
    TRY("openat2_creat", fd = (int)syscall(SYS_openat2, dfd, "openat2_creat", &how, sizeof how));
    if (fd >= 0) close(fd);
    errno = 0;
    fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 04755);
    if (fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        TRY("tmpfile", linkat(AT_FDCWD, proc, AT_FDCWD, at("tmpfile"), AT_SYMLINK_FOLLOW));
        close(fd);
    } else {
        report("tmpfile", -1);
    }
    TRY("mknod", mknod(at("mknod"), S_IFREG | 04755, 0));
    TRY("mknodat", mknodat(dfd, "mknodat", S_IFREG | 02755, 0));
    TRY("mknod_fifo", mknodat(dfd, "mknod_fifo", S_IFIFO | 04644, 0));
    if (mkdir(at("dir_sgid"), 0755) == 0)
        TRY("chmod_dir_sgid", chmod(at("dir_sgid"), 02755));
    if ((fd = plain("setcap")) >= 0) {
        close(fd);
        /* struct vfs_cap_data, revision 2, effective: CAP_NET_RAW permitted */
        uint32_t cap[5] = { 0x02000000 | 1, 1u << 13, 0, 0, 0 };
        TRY("setcap", setxattr(at("setcap"), "security.capability", cap, sizeof cap, 0));
    }
    /* controls */
    if ((fd = plain("chmod_755")) >= 0) { close(fd); TRY("chmod_755", chmod(at("chmod_755"), 0700) == 0 ? chmod(at("chmod_755"), 0755) : -1); }
    if (mkdir(at("sticky"), 0755) == 0)
        TRY("chmod_sticky_dir", chmod(at("sticky"), 01777));
    if (argc > 2) {
        TRY("chmod_keep_sgid_dir", chmod(argv[2], 02775));
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/sub", argv[2]);
        struct stat st;
        if (mkdir(sub, 0755) == 0 && stat(sub, &st) == 0)
            printf("mkdir_in_sgid %s\n", (st.st_mode & S_ISGID) ? "ok" : "err 0");
        else
            report("mkdir_in_sgid", -1);
    }
    return 0;
}
