/* Path-escape probes, run INSIDE a sandbox (never as root outside one).
 *
 * usage: escape_probe paths SECRET DEV:INO W O CANARY
 *          W: a directory the policy lets the probe write; O: the directory of
 *          the canary (O/CANARY holds SECRET); W and O are siblings.
 *          DEV:INO identify the canary file (stat verdicts compare them).
 *        escape_probe shocker SECRET PATH
 *          name_to_handle_at + open_by_handle_at (the "shocker" pattern).
 *        escape_probe moves SECRET DEV:INO W O CANARY
 *          bring the canary into W (hard link, link through W/abs, a symlink
 *          to it, with AT_SYMLINK_FOLLOW, rename, RENAME_EXCHANGE), then read
 *          and stat it there: class "move", one line per way and op.
 *
 * Every probe prints one verdict line:
 *   "ESCAPED <class> <op> <spelling>"       the canary was read / stat'ed
 *   "HELD <class> <op> <spelling> <ERRNO>"  refused (ERRNO) or reached something
 *                                           else (OTHER)
 * plus summary lines for the per-pid class.  Exit status 0 unless the probe
 * itself could not run (2).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10

struct open_how_k {
    uint64_t flags, mode, resolve;
};

static const char *secret;
static unsigned long long want_dev, want_ino;
static char crel[4096];  /* canary path without its leading '/' */
static char cabs[4096];
static char deep[8192];  /* "../" x 24 + crel */

static const char *ename(int e) {
    static char buf[16];
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EXDEV: return "EXDEV";
    case ELOOP: return "ELOOP";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case ESTALE: return "ESTALE";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EAGAIN: return "EAGAIN";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EISDIR: return "EISDIR";
    case EFAULT: return "EFAULT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case E2BIG: return "E2BIG";
    }
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* Verdict on an fd that was opened (or -1 with errno). Closes fd. */
static void read_verdict(const char *cls, const char *label, int fd) {
    if (fd < 0) {
        printf("HELD %s read %s %s\n", cls, label, ename(errno));
        return;
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        printf("HELD %s read %s %s\n", cls, label, ename(e));
        return;
    }
    buf[n] = 0;
    if (strstr(buf, secret))
        printf("ESCAPED %s read %s\n", cls, label);
    else
        printf("HELD %s read %s OTHER\n", cls, label);
}

static void stat_verdict(const char *cls, const char *label, int rc, const struct stat *st) {
    if (rc != 0)
        printf("HELD %s stat %s %s\n", cls, label, ename(errno));
    else if ((unsigned long long)st->st_dev == want_dev && (unsigned long long)st->st_ino == want_ino)
        printf("ESCAPED %s stat %s\n", cls, label);
    else
        printf("HELD %s stat %s OTHER\n", cls, label);
}

static void probe_at(const char *cls, int dirfd, const char *path, const char *label) {
    struct stat st;
    read_verdict(cls, label, openat(dirfd, path, O_RDONLY | O_CLOEXEC));
    int rc = fstatat(dirfd, path, &st, 0);
    stat_verdict(cls, label, rc, &st);
}

static void probe(const char *cls, const char *path) { probe_at(cls, AT_FDCWD, path, path); }

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    static char bufs[64][8192];
    static int next;
    char *b = bufs[next++ % 64];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof bufs[0], f, ap);
    va_end(ap);
    return b;
}

static long openat2_(int dirfd, const char *path, uint64_t resolve) {
    struct open_how_k how = {O_RDONLY | O_CLOEXEC, 0, resolve};
    return syscall(__NR_openat2, dirfd, path, &how, sizeof how);
}

static int send_fd(int sock, int fd) {
    char c = 'x';
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c1 = CMSG_FIRSTHDR(&msg);
    c1->cmsg_level = SOL_SOCKET;
    c1->cmsg_type = SCM_RIGHTS;
    c1->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c1), &fd, sizeof fd);
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock) {
    char c;
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &msg, 0) != 1) return -1;
    struct cmsghdr *c1 = CMSG_FIRSTHDR(&msg);
    if (!c1 || c1->cmsg_type != SCM_RIGHTS) { errno = EPROTO; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(c1), sizeof fd);
    return fd;
}

static void proc_pids(void) {
    DIR *d = opendir("/proc");
    if (!d) {
        printf("HELD proc_pid list /proc %s\n", ename(errno));
        return;
    }
    struct dirent *de;
    long tried = 0, escaped = 0;
    char errs[256] = "";
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        tried++;
        const char *spell[2] = {fmt("/proc/%s/root/%s", de->d_name, crel), fmt("/proc/%s/cwd/%s", de->d_name, deep)};
        const char *kind[2] = {"root", "cwd"};
        for (int k = 0; k < 2; k++) {
            struct stat st;
            int fd = open(spell[k], O_RDONLY | O_CLOEXEC);
            int e = errno;
            int leaked = 0;
            if (fd >= 0) {
                char buf[512];
                ssize_t n = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (n > 0) { buf[n] = 0; leaked = strstr(buf, secret) != NULL; }
            }
            if (leaked) { printf("ESCAPED proc_pid read /proc/PID/%s pid=%s\n", kind[k], de->d_name); escaped++; }
            else if (fd < 0 && !strstr(errs, ename(e)) && strlen(errs) < 200) { strcat(errs, ename(e)); strcat(errs, ","); }
            if (stat(spell[k], &st) == 0 && (unsigned long long)st.st_dev == want_dev &&
                (unsigned long long)st.st_ino == want_ino) {
                printf("ESCAPED proc_pid stat /proc/PID/%s pid=%s\n", kind[k], de->d_name);
                escaped++;
            }
        }
    }
    closedir(d);
    printf("SUMMARY proc_pid pids=%ld escaped=%ld errnos=%s\n", tried, escaped, errs[0] ? errs : "-");
}

static int paths(char **argv) {
    secret = argv[0];
    if (sscanf(argv[1], "%llu:%llu", &want_dev, &want_ino) != 2) return 2;
    const char *w = argv[2], *o = argv[3], *cname = argv[4];
    const char *obase = strrchr(o, '/') ? strrchr(o, '/') + 1 : o;
    snprintf(cabs, sizeof cabs, "%s/%s", o, cname);
    snprintf(crel, sizeof crel, "%s", cabs + 1);
    deep[0] = 0;
    for (int i = 0; i < 24; i++) strcat(deep, "../");
    strcat(deep, crel);
    static char sib[4096];  /* from W to the canary */
    snprintf(sib, sizeof sib, "../%s/%s", obase, cname);

    /* direct: the canary by its own name (the control's baseline) */
    probe("direct", cabs);

    /* '..' chains */
    probe("dotdot", fmt("%s/../%s/%s", w, obase, cname));
    probe("dotdot", fmt("%s/%s", w, deep));
    probe("dotdot", fmt("/../../../../%s", crel));
    if (chdir(w) == 0) {
        probe("dotdot", sib);
        probe("dotdot", deep);
    } else {
        printf("HELD dotdot chdir %s %s\n", w, ename(errno));
    }

    /* symlinks planted by the test before the run: abs, rel, root, up */
    probe("symlink", fmt("%s/abs", w));
    probe("symlink", fmt("%s/rel", w));
    probe("symlink", fmt("%s/root/%s", w, crel));
    probe("symlink", fmt("%s/up/%s", w, crel));
    /* ... and planted by the probe itself inside the sandbox */
    const char *pabs = fmt("%s/pabs", w), *prel = fmt("%s/prel", w), *pdir = fmt("%s/pdir", w);
    unlink(pabs); unlink(prel); unlink(pdir);
    if (symlink(cabs, pabs) != 0) printf("NOTE symlink pabs %s\n", ename(errno));
    if (symlink(sib, prel) != 0) printf("NOTE symlink prel %s\n", ename(errno));
    if (symlink("../../../../../../../../../../../..", pdir) != 0) printf("NOTE symlink pdir %s\n", ename(errno));
    probe("symlink", pabs);
    probe("symlink", prel);
    probe("symlink", fmt("%s/%s", pdir, crel));

    /* dirfd + '..' */
    int wfd = open(w, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wfd < 0) {
        printf("HELD dirfd open-dir %s %s\n", w, ename(errno));
        return 2;
    }
    /* "/" is above every rule: O_PATH (a lookup base), since reading it may be refused */
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) printf("NOTE open / O_PATH %s\n", ename(errno));
    probe_at("dirfd", wfd, sib, fmt("W:%s", sib));
    probe_at("dirfd", wfd, deep, fmt("W:%s", deep));
    probe_at("dirfd", wfd, "abs", "W:abs");
    probe_at("dirfd", wfd, "rel", "W:rel");
    probe_at("dirfd", wfd, fmt("root/%s", crel), fmt("W:root/%s", crel));
    probe_at("dirfd", rootfd, crel, fmt("/:%s", crel));
    probe_at("dirfd", rootfd, fmt("../../../%s", crel), fmt("/:../../../%s", crel));

    /* /proc/self/root, /proc/self/cwd (cwd is W here), /proc/thread-self */
    probe("proc_self", fmt("/proc/self/root%s", cabs));
    probe("proc_self", fmt("/proc/self/root/../../../%s", crel));
    probe("proc_self", fmt("/proc/thread-self/root%s", cabs));
    probe("proc_self", fmt("/proc/self/cwd/%s", sib));
    probe("proc_self", fmt("/proc/self/cwd/%s", deep));
    probe("proc_self", fmt("/proc/%d/root%s", (int)getpid(), cabs));
    probe("proc_self", fmt("/proc/%d/cwd/%s", (int)getpid(), deep));

    /* /proc/<pid>/root and /proc/<pid>/cwd of every pid visible */
    proc_pids();

    /* /proc/self/fd/N re-entry */
    probe("proc_fd", fmt("/proc/self/fd/%d/%s", wfd, sib));
    probe("proc_fd", fmt("/proc/self/fd/%d/../../../../../../%s", wfd, crel));
    probe("proc_fd", fmt("/proc/self/fd/%d/%s", rootfd, crel));
    probe("proc_fd", fmt("/dev/fd/%d/%s", wfd, sib));
    probe_at("proc_fd", AT_FDCWD, fmt("/proc/self/fd/%d/../../..%s", wfd, cabs), "/proc/self/fd/W/../../..CANARY");

    /* openat2 with resolve flags */
    struct { int dirfd; const char *path; uint64_t resolve; const char *label; } o2[] = {
        {AT_FDCWD, cabs, 0, "CWD:canary:0"},
        {AT_FDCWD, cabs, RESOLVE_NO_MAGICLINKS, "CWD:canary:NO_MAGICLINKS"},
        {AT_FDCWD, cabs, RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, "CWD:canary:NO_SYMLINKS|NO_XDEV"},
        {AT_FDCWD, fmt("/proc/self/root%s", cabs), 0, "CWD:/proc/self/root/canary:0"},
        {AT_FDCWD, fmt("/proc/self/root%s", cabs), RESOLVE_NO_MAGICLINKS, "CWD:/proc/self/root/canary:NO_MAGICLINKS"},
        {AT_FDCWD, fmt("/proc/self/fd/%d/%s", wfd, sib), 0, "CWD:/proc/self/fd/W/sib:0"},
        {AT_FDCWD, fmt("/proc/self/fd/%d/%s", wfd, sib), RESOLVE_NO_MAGICLINKS, "CWD:/proc/self/fd/W/sib:NO_MAGICLINKS"},
        {wfd, sib, 0, "W:sib:0"},
        {wfd, sib, RESOLVE_BENEATH, "W:sib:BENEATH"},
        {wfd, sib, RESOLVE_IN_ROOT, "W:sib:IN_ROOT"},
        {wfd, deep, RESOLVE_IN_ROOT, "W:deep:IN_ROOT"},
        {wfd, cabs, RESOLVE_BENEATH, "W:canary:BENEATH"},
        {wfd, cabs, RESOLVE_IN_ROOT, "W:canary:IN_ROOT"},
        {wfd, "abs", 0, "W:abs:0"},
        {wfd, "abs", RESOLVE_BENEATH, "W:abs:BENEATH"},
        {wfd, "abs", RESOLVE_IN_ROOT, "W:abs:IN_ROOT"},
        {wfd, "abs", RESOLVE_NO_SYMLINKS, "W:abs:NO_SYMLINKS"},
        {wfd, "rel", RESOLVE_BENEATH, "W:rel:BENEATH"},
        {wfd, "rel", RESOLVE_IN_ROOT, "W:rel:IN_ROOT"},
        {wfd, fmt("root/%s", crel), RESOLVE_IN_ROOT, "W:root/canary:IN_ROOT"},
        {wfd, fmt("root/%s", crel), RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, "W:root/canary:BENEATH|NO_MAGICLINKS"},
        {rootfd, crel, RESOLVE_IN_ROOT, "/:canary:IN_ROOT"},
        {rootfd, crel, RESOLVE_BENEATH, "/:canary:BENEATH"},
        {rootfd, fmt("../../%s", crel), RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, "/:../../canary:IN_ROOT|NO_MAGICLINKS"},
    };
    for (size_t i = 0; i < sizeof o2 / sizeof o2[0]; i++)
        read_verdict("openat2", o2[i].label, (int)openat2_(o2[i].dirfd, o2[i].path, o2[i].resolve));

    /* a directory fd passed over a unix socket pair by another sandboxed process */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        printf("HELD fdpass socketpair - %s\n", ename(errno));
    } else {
        pid_t child = fork();
        if (child == 0) {
            close(sv[0]);
            int d = open(w, O_RDONLY | O_DIRECTORY);
            int r = open("/", O_PATH | O_DIRECTORY);
            _exit(d < 0 || r < 0 || send_fd(sv[1], d) || send_fd(sv[1], r) ? 1 : 0);
        }
        close(sv[1]);
        int got = recv_fd(sv[0]);
        int gotroot = recv_fd(sv[0]);
        int status = 0;
        waitpid(child, &status, 0);
        if (got < 0 || gotroot < 0) {
            printf("HELD fdpass recv - %s\n", ename(errno));
        } else {
            probe_at("fdpass", got, sib, fmt("W:%s", sib));
            int up = openat(got, "../../../../../../../../..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (up >= 0) probe_at("fdpass", up, crel, "W:../x9 then canary");
            else printf("HELD fdpass open W:../x9 %s\n", ename(errno));
            probe_at("fdpass", got, deep, fmt("W:%s", deep));
            probe_at("fdpass", gotroot, crel, fmt("/:%s", crel));
            probe_at("fdpass", gotroot, fmt("..%s", cabs), fmt("/:..%s", cabs));
            probe("fdpass", fmt("/proc/self/fd/%d/%s", got, sib));
            read_verdict("fdpass", "openat2 W:sib:0", (int)openat2_(got, sib, 0));
            read_verdict("fdpass", "openat2 /:canary:IN_ROOT", (int)openat2_(gotroot, crel, RESOLVE_IN_ROOT));
        }
    }
    printf("DONE\n");
    return 0;
}

/* name_to_handle_at + open_by_handle_at: both must fail (EPERM in a sandbox). */
static int shocker(char **argv) {
    secret = argv[0];
    const char *target = argv[1];
    struct {
        struct file_handle fh;
        unsigned char bytes[128];
    } h;
    int mount_id;
    const char *names[2] = {"/", target};
    for (int i = 0; i < 2; i++) {
        memset(&h, 0, sizeof h);
        h.fh.handle_bytes = sizeof h.bytes;
        if (name_to_handle_at(AT_FDCWD, names[i], &h.fh, &mount_id, 0) != 0) {
            printf("HELD shocker name_to_handle_at %s %s\n", names[i], ename(errno));
            continue;
        }
        printf("GOT shocker name_to_handle_at %s type=%d bytes=%u\n", names[i], h.fh.handle_type, h.fh.handle_bytes);
        int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int fd = open_by_handle_at(mfd < 0 ? AT_FDCWD : mfd, &h.fh, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            printf("ESCAPED shocker open_by_handle_at %s\n", names[i]);
            close(fd);
        } else {
            printf("HELD shocker open_by_handle_at %s %s\n", names[i], ename(errno));
        }
        if (mfd >= 0) close(mfd);
    }
    /* the original exploit: a forged handle (FILEID_INO32_GEN, inode 2 = an ext* root) */
    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = 8;
    h.fh.handle_type = 1;
    uint32_t ino_gen[2] = {2, 0};
    memcpy(h.fh.f_handle, ino_gen, sizeof ino_gen);
    int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = open_by_handle_at(mfd < 0 ? AT_FDCWD : mfd, &h.fh, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        printf("ESCAPED shocker open_by_handle_at forged-ino2\n");
        close(fd);
    } else {
        printf("HELD shocker open_by_handle_at forged-ino2 %s\n", ename(errno));
    }
    printf("DONE\n");
    return 0;
}

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* One way of bringing the canary to `dst` inside W: rc of the call, then the
 * usual read and stat verdicts on dst (class "move", label = the way). */
static void moved(const char *how, const char *dst, int rc) {
    if (rc != 0) {
        const char *e = ename(errno);
        printf("HELD move read %s %s\n", how, e);
        printf("HELD move stat %s %s\n", how, e);
        return;
    }
    struct stat st;
    read_verdict("move", how, open(dst, O_RDONLY | O_CLOEXEC));
    int r = stat(dst, &st);
    stat_verdict("move", how, r, &st);
}

static int moves(char **argv) {
    secret = argv[0];
    if (sscanf(argv[1], "%llu:%llu", &want_dev, &want_ino) != 2) return 2;
    const char *w = argv[2], *o = argv[3], *cname = argv[4];
    snprintf(cabs, sizeof cabs, "%s/%s", o, cname);
    const char *hl = fmt("%s/hl", w), *hl2 = fmt("%s/hl2", w), *mv = fmt("%s/mv", w), *x = fmt("%s/x", w);
    unlink(hl); unlink(hl2); unlink(mv);
    moved("link", hl, link(cabs, hl));
    moved("link_follow", hl2, linkat(AT_FDCWD, fmt("%s/abs", w), AT_FDCWD, hl2, AT_SYMLINK_FOLLOW));
    int fd = open(x, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    int rc = (int)syscall(SYS_renameat2, AT_FDCWD, cabs, AT_FDCWD, x, RENAME_EXCHANGE);
    moved("exchange", x, rc);
    if (rc == 0) syscall(SYS_renameat2, AT_FDCWD, cabs, AT_FDCWD, x, RENAME_EXCHANGE);  /* back, for rename */
    moved("rename", mv, rename(cabs, mv));
    printf("DONE\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 7 && strcmp(argv[1], "paths") == 0) return paths(argv + 2);
    if (argc == 4 && strcmp(argv[1], "shocker") == 0) return shocker(argv + 2);
    if (argc == 7 && strcmp(argv[1], "moves") == 0) return moves(argv + 2);
    fprintf(stderr, "usage: escape_probe paths|moves SECRET DEV:INO W O CANARY | shocker SECRET PATH\n");
    return 2;
}
