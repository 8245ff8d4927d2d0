/* Filter-bypass, supervisor-reach and privilege probes (tests/security/test_filter_privileges.py).
 *
 * Run INSIDE a sandbox.  Outside a sandbox it is only run as the unprivileged
 * test user, or (as any identity) for the modes that touch nothing but the
 * probe's own children and files ("reach-control", "inherit", "ids").
 *
 * usage: filt_probe bypass                  x32, clone/clone3, io_uring, nested
 *                                          listener, personality, prctl, ioctl
 *        filt_probe int80                   an i386 syscall from 64-bit code
 *        filt_probe reach PIDFILE HOSTPID STREAM DGRAM
 *                                          ptrace, process_vm_readv, kill, pidfd,
 *                                          kcmp, /proc/PID/{environ,mem,fd/0,cwd},
 *                                          prlimit, setpriority, affinity
 *                                          of the supervisor (pid read from
 *                                          PIDFILE), pid 1 and a host process;
 *                                          abstract unix STREAM/DGRAM names
 *        filt_probe reach-control           the same operations on its own child
 *                                          and its own abstract sockets
 *        filt_probe inherit NAME FD...      environment variable NAME, the fds
 *        filt_probe ids                     real/effective/saved uid
 *        filt_probe privs DIR OTHER OTHER_RO
 *                                          capabilities, mount, chroot, raw and
 *                                          packet sockets, DAC on files of another
 *                                          uid (OTHER 0600, OTHER_RO 0644), in DIR
 *
 * Verdict lines: "ESCAPED <name> <detail>" when the operation succeeded (or
 * passed the permission check), "HELD <name> <ERRNO>" when it was refused.
 * Names starting with "ctl_" are allowed variants in the same run (controls).
 * The last line is "DONE".  Exit status 0 unless the probe could not run (2).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#define X32_BIT 0x40000000L
#define NR_PIDFD_SEND_SIGNAL 424
#define NR_IO_URING_SETUP 425
#define NR_IO_URING_REGISTER 427
#define NR_PIDFD_OPEN 434
#define NR_CLONE3 435
#define NR_PIDFD_GETFD 438
#define NR_KCMP 312
#define NR_SECCOMP 317
#define HI ((long)0xdead00000000L)

#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif
#ifndef CLONE_NEWNS
#define CLONE_NEWNS 0x00020000
#endif
#ifndef CLONE_NEWPID
#define CLONE_NEWPID 0x20000000
#endif
#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef PR_SET_MM
#define PR_SET_MM 35
#endif
#ifndef PR_SET_MM_MAP_SIZE
#define PR_SET_MM_MAP_SIZE 15
#endif
#ifndef PR_CAPBSET_READ
#define PR_CAPBSET_READ 23
#endif
#ifndef PR_GET_SECUREBITS
#define PR_GET_SECUREBITS 27
#endif
#ifndef PR_SET_SECUREBITS
#define PR_SET_SECUREBITS 28
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#endif
#ifndef PR_GET_NO_NEW_PRIVS
#define PR_GET_NO_NEW_PRIVS 39
#endif
#ifndef PTRACE_SEIZE
#define PTRACE_SEIZE 0x4206
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#define SECCOMP_SET_MODE_FILTER 1
#define SECCOMP_FILTER_FLAG_LOG 2
#define SECCOMP_FILTER_FLAG_NEW_LISTENER 8
#define KCMP_FILE 0
#define ETH_P_ALL 0x0003
#define PER_LINUX32_ 0x0008
#define READ_IMPLIES_EXEC_ 0x0400000

static const char *ename(int e) {
    static char buf[16];
    switch (e) {
#define E(x) case x: return #x;
        E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(ECHILD) E(EAGAIN)
        E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENOTTY)
        E(ENOSYS) E(ENOTSOCK) E(EPROTONOSUPPORT) E(EOPNOTSUPP) E(EAFNOSUPPORT) E(ECONNREFUSED)
        E(EROFS) E(ESOCKTNOSUPPORT) E(EPROTOTYPE)
#undef E
    }
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* r: the syscall's return value (errno holds the error when r < 0). */
static void verdict(const char *name, long r, int err) {
    if (r >= 0)
        printf("ESCAPED %s ret=%ld\n", name, r);
    else
        printf("HELD %s %s\n", name, ename(err));
}

#define TRY(name, expr) do { errno = 0; long r_ = (long)(expr); verdict(name, r_, errno); } while (0)

/* Runs fn in a child process (so a success cannot change the probe itself);
 * the child reports with its exit status: 0 success, 100+errno refused. */
static void in_child(const char *name, long (*fn)(long), long arg) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { verdict(name, -1, errno); return; }
    if (pid == 0) {
        errno = 0;
        long r = fn(arg);
        _exit(r >= 0 ? 0 : (errno > 0 && errno < 150 ? 100 + errno : 99));
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        printf("ESCAPED %s child-succeeded\n", name);
    else if (WIFEXITED(st) && WEXITSTATUS(st) >= 100)
        printf("HELD %s %s\n", name, ename(WEXITSTATUS(st) - 100));
    else
        printf("HELD %s child-status-%d\n", name, st);
}

/* --- bypass -------------------------------------------------------------------------------- */

static long do_clone(long flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0L, 0L, 0L, 0L);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r;
}

struct clone_args_k {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};

static long do_clone3(long flags) {
    struct clone_args_k a;
    memset(&a, 0, sizeof a);
    a.flags = (uint64_t)flags;
    a.exit_signal = SIGCHLD;
    long r = syscall(NR_CLONE3, &a, sizeof a);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r;
}

struct sock_filter_k { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct sock_fprog_k { unsigned short len; struct sock_filter_k *filter; };

static long do_seccomp(long flags_and_op) {
    /* low byte: flags; bit 8: high bits on op and flags */
    struct sock_filter_k allow = {0x06, 0, 0, 0x7fff0000};  /* ret SECCOMP_RET_ALLOW */
    struct sock_fprog_k prog = {1, &allow};
    long flags = flags_and_op & 0xff, op = SECCOMP_SET_MODE_FILTER;
    if (flags_and_op & 0x100) { flags |= HI; op |= HI; }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);  /* needed outside a sandbox (bare control) */
    return syscall(NR_SECCOMP, op, flags, &prog);
}

static long do_personality(long persona) {
    return syscall(SYS_personality, persona);
}

static long do_unshare(long flags) {
    return unshare((int)flags);
}

static int cmd_bypass(void) {
    int devnull = open("/dev/null", O_RDWR);
    char c = 'x';
    int mm_size = 0;

    /* x32 numbers (bit 0x40000000): getpid, open, openat */
    TRY("x32_getpid", syscall(SYS_getpid | X32_BIT));
    errno = 0;
    long fd = syscall(SYS_open | X32_BIT, "/", O_RDONLY | O_DIRECTORY);
    verdict("x32_open", fd, errno);
    if (fd >= 0) close((int)fd);
    errno = 0;
    fd = syscall(SYS_openat | X32_BIT, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY);
    verdict("x32_openat", fd, errno);
    if (fd >= 0) close((int)fd);
    TRY("ctl_getpid", syscall(SYS_getpid));

    /* namespaces */
    in_child("clone_newuser", do_clone, CLONE_NEWUSER);
    in_child("clone_newns", do_clone, CLONE_NEWUSER | CLONE_NEWNS);
    in_child("clone_newpid", do_clone, CLONE_NEWUSER | CLONE_NEWPID);
    in_child("clone_newns_only", do_clone, CLONE_NEWNS);
    in_child("unshare_newuser", do_unshare, CLONE_NEWUSER);
    in_child("ctl_clone_plain", do_clone, 0);
    in_child("clone3", do_clone3, 0);
    in_child("clone3_newuser", do_clone3, CLONE_NEWUSER);

    /* io_uring */
    {
        unsigned char params[120];
        memset(params, 0, sizeof params);
        errno = 0;
        long r = syscall(NR_IO_URING_SETUP, 4L, params);
        verdict("io_uring_setup", r, errno);
        if (r >= 0) close((int)r);
        TRY("io_uring_register", syscall(NR_IO_URING_REGISTER, -1L, 0L, 0L, 0L));
    }

    /* a nested seccomp listener */
    in_child("seccomp_listener", do_seccomp, SECCOMP_FILTER_FLAG_NEW_LISTENER);
    in_child("seccomp_listener_log", do_seccomp, SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_LOG);
    in_child("seccomp_listener_hi", do_seccomp, SECCOMP_FILTER_FLAG_NEW_LISTENER | 0x100);
    in_child("ctl_seccomp_filter", do_seccomp, 0);

    /* personality */
    in_child("personality_linux32", do_personality, PER_LINUX32_);
    in_child("personality_read_implies_exec", do_personality, READ_IMPLIES_EXEC_);
    in_child("personality_hi", do_personality, HI | PER_LINUX32_);
    in_child("ctl_personality_query", do_personality, 0xffffffffL);

    /* prctl */
    TRY("prctl_set_dumpable", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
    TRY("prctl_set_dumpable_hi", syscall(SYS_prctl, HI | PR_SET_DUMPABLE, 1L, 0L, 0L, 0L));
    TRY("prctl_set_securebits", prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));
    TRY("prctl_set_ptracer", prctl(PR_SET_PTRACER, 0, 0, 0, 0));
    TRY("prctl_set_mm", prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, (unsigned long)&mm_size, 0, 0));
    TRY("ctl_prctl_get_dumpable", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));

    /* ioctl on the terminal (fd 0) and on /dev/null (where the kernel says ENOTTY) */
    TRY("tiocsti_tty", ioctl(0, TIOCSTI, &c));
    TRY("tiocsti_tty_hi", syscall(SYS_ioctl, 0L, HI | TIOCSTI, &c));
    TRY("tioclinux_tty", ioctl(0, TIOCLINUX, &c));
    TRY("tioclinux_tty_hi", syscall(SYS_ioctl, 0L, HI | TIOCLINUX, &c));
    TRY("tiocsti_devnull", ioctl(devnull, TIOCSTI, &c));
    TRY("tiocsti_devnull_hi", syscall(SYS_ioctl, (long)devnull, HI | TIOCSTI, &c));
    {
        struct termios t;
        struct winsize ws;
        TRY("ctl_tcgets_tty", ioctl(0, TCGETS, &t));
        TRY("ctl_tcgets_tty_hi", syscall(SYS_ioctl, 0L, HI | TCGETS, &t));
        TRY("ctl_tiocgwinsz_tty", ioctl(0, TIOCGWINSZ, &ws));
    }
    close(devnull);
    printf("DONE\n");
    return 0;
}

static int cmd_int80(void) {
#if defined(__x86_64__)
    long pid = getpid(), r;
    printf("BEFORE int80 pid=%ld\n", pid);
    fflush(stdout);
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");  /* i386 getpid */
    if (r == pid)
        printf("ESCAPED int80_getpid ret=%ld\n", r);
    else
        printf("HELD int80_getpid ret=%ld\n", r);
    printf("DONE\n");
    return 0;
#else
    printf("NA int80 not-x86_64\nDONE\n");
    return 0;
#endif
}

/* --- reach ------------------------------------------------------------------------------------ */

static long probe_var = 0x5eed;

/* Operations on another process.  destructive 1: also SIGSTOP, SIGKILL and limit/priority
 * changes; -1 (pid 1): SIGSTOP and SIGKILL only when signal 0 was refused, no changes.  readaddr: an address to read from (own child: &probe_var). */
static void target_ops(const char *label, pid_t pid, int destructive, void *readaddr) {
    char name[128];
    long r;
#define N(op) (snprintf(name, sizeof name, "%s_%s", op, label), name)

    errno = 0;
    r = ptrace(PTRACE_SEIZE, pid, 0, 0);
    verdict(N("ptrace_seize"), r, errno);
    if (r < 0) {
        /* ATTACH stops the tracee: only tried when SEIZE (same syscall) was refused */
        errno = 0;
        r = ptrace(PTRACE_ATTACH, pid, 0, 0);
        verdict(N("ptrace_attach"), r, errno);
        if (r == 0) {
            waitpid(pid, NULL, __WALL);
            ptrace(PTRACE_DETACH, pid, 0, 0);
        }
    }
    {
        long buf = 0;
        struct iovec local = {&buf, sizeof buf}, remote = {readaddr, sizeof buf};
        errno = 0;
        r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (r < 0 && errno == EFAULT)
            printf("ESCAPED %s EFAULT-after-the-access-check\n", N("vm_readv"));
        else
            verdict(N("vm_readv"), r, errno);
    }
    TRY(N("kill0"), kill(pid, 0));
    errno = 0;
    long pidfd = syscall(NR_PIDFD_OPEN, (long)pid, 0L);
    if (pidfd >= 0) {
        TRY(N("pidfd_signal0"), syscall(NR_PIDFD_SEND_SIGNAL, pidfd, 0L, 0L, 0L));
        errno = 0;
        r = syscall(NR_PIDFD_GETFD, pidfd, 0L, 0L);
        verdict(N("pidfd_getfd"), r, errno);
        if (r >= 0) close((int)r);
        close((int)pidfd);
    } else {
        printf("INFO pidfd_open_%s %s\n", label, ename(errno));
    }
    TRY(N("kcmp"), syscall(NR_KCMP, (long)getpid(), (long)pid, (long)KCMP_FILE, 0L, 0L));
    /* its /proc entries that need ptrace access: environment, memory, an fd, the cwd */
    {
        char path[64];
        char buf[64];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        errno = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -1 : read(fd, buf, sizeof buf);
        verdict(N("proc_environ"), r, errno);
        if (fd >= 0) close(fd);
        snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
        errno = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -1 : pread(fd, buf, sizeof(long), (off_t)(uintptr_t)readaddr);
        verdict(N("proc_mem"), r, errno);
        if (fd >= 0) close(fd);
        snprintf(path, sizeof path, "/proc/%d/fd/0", (int)pid);
        errno = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        verdict(N("proc_fd0"), fd, errno);
        if (fd >= 0) close(fd);
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/cwd/.", (int)pid);
        TRY(N("proc_cwd"), stat(path, &st));
    }
    {
        struct { uint64_t cur, max; } old;
        TRY(N("prlimit_read"), syscall(SYS_prlimit64, (long)pid, (long)RLIMIT_CORE, NULL, &old));
    }
    if (destructive < 0) {
        /* pid 1: SIGSTOP/SIGKILL only after signal 0 was refused (init ignores both anyway) */
        errno = 0;
        r = kill(pid, 0);
        if (r == 0) {
            printf("ESCAPED %s signal-0-went-through-so-not-sent\n", N("sigstop"));
            printf("ESCAPED %s signal-0-went-through-so-not-sent\n", N("sigkill"));
        } else {
            TRY(N("sigstop"), kill(pid, SIGSTOP));
            TRY(N("sigkill"), kill(pid, SIGKILL));
        }
        return;
    }
    if (!destructive) return;
    {
        struct { uint64_t cur, max; } lim = {0, 0};
        TRY(N("prlimit_set"), syscall(SYS_prlimit64, (long)pid, (long)RLIMIT_CORE, &lim, NULL));
    }
    TRY(N("setpriority"), syscall(SYS_setpriority, (long)PRIO_PROCESS, (long)pid, 0L));
    {
        unsigned long mask[16];
        memset(mask, 0, sizeof mask);
        long n = syscall(SYS_sched_getaffinity, 0L, sizeof mask, mask);
        if (n > 0)
            TRY(N("sched_setaffinity"), syscall(SYS_sched_setaffinity, (long)pid, n, mask));
    }
    errno = 0;
    r = kill(pid, SIGSTOP);
    verdict(N("sigstop"), r, errno);
    if (r == 0) kill(pid, SIGCONT);
    TRY(N("sigkill"), kill(pid, SIGKILL));
#undef N
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n > sizeof a->sun_path - 2) n = sizeof a->sun_path - 2;
    memcpy(a->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void abstract_ops(const char *label, const char *stream, const char *dgram) {
    struct sockaddr_un a;
    char name[128];
    socklen_t len = abstract_addr(&a, stream);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(name, sizeof name, "abstract_connect_%s", label);
    TRY(name, connect(s, (struct sockaddr *)&a, len));
    close(s);
    len = abstract_addr(&a, dgram);
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    snprintf(name, sizeof name, "abstract_sendto_%s", label);
    TRY(name, sendto(s, "probe", 5, 0, (struct sockaddr *)&a, len));
    close(s);
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    snprintf(name, sizeof name, "abstract_dgram_connect_%s", label);
    TRY(name, connect(s, (struct sockaddr *)&a, len));
    close(s);
}

static pid_t read_pidfile(const char *path) {
    for (int i = 0; i < 1000; i++) {  /* 10 s */
        FILE *f = fopen(path, "r");
        if (f) {
            long pid = 0;
            int ok = fscanf(f, "%ld", &pid);
            fclose(f);
            if (ok == 1 && pid > 0) return (pid_t)pid;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int cmd_reach(int argc, char **argv) {
    if (argc < 6) return 2;
    pid_t sup = read_pidfile(argv[2]);
    pid_t host = (pid_t)atol(argv[3]);
    if (sup <= 0) { printf("ERROR no pid in %s\n", argv[2]); return 2; }
    printf("INFO supervisor=%d host=%d self=%d ppid=%d\n", (int)sup, (int)host, (int)getpid(), (int)getppid());
    abstract_ops("host", argv[4], argv[5]);
    target_ops("init", 1, -1, (void *)&probe_var);
    target_ops("host", host, 1, (void *)&probe_var);
    target_ops("sup", sup, 1, (void *)&probe_var);  /* last: a SIGKILL that works ends the run */
    printf("DONE\n");
    return 0;
}

static int cmd_reach_control(void) {
    char stream[64], dgram[64];
    struct sockaddr_un a;
    snprintf(stream, sizeof stream, "sandlock-filt-own-s-%d", (int)getpid());
    snprintf(dgram, sizeof dgram, "sandlock-filt-own-d-%d", (int)getpid());
    int ls = socket(AF_UNIX, SOCK_STREAM, 0), ld = socket(AF_UNIX, SOCK_DGRAM, 0);
    socklen_t len = abstract_addr(&a, stream);
    if (bind(ls, (struct sockaddr *)&a, len) < 0 || listen(ls, 4) < 0) { perror("bind stream"); return 2; }
    len = abstract_addr(&a, dgram);
    if (bind(ld, (struct sockaddr *)&a, len) < 0) { perror("bind dgram"); return 2; }
    abstract_ops("own", stream, dgram);
    fflush(stdout);
    probe_var = 0x5eed;
    pid_t child = fork();
    if (child == 0) {
        for (;;) pause();
    }
    target_ops("child", child, 1, (void *)&probe_var);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    printf("DONE\n");
    return 0;
}

/* --- inherit: env and fds ---------------------------------------------------------------------- */

static void list_fds(const char *tag) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { printf("%s ERROR %s\n", tag, ename(errno)); return; }
    int own = dirfd(d);
    int fds[256], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != own) fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)  /* sort */
        for (int j = i + 1; j < n; j++)
            if (fds[j] < fds[i]) { int t = fds[i]; fds[i] = fds[j]; fds[j] = t; }
    printf("%s", tag);
    for (int i = 0; i < n; i++) printf(" %d", fds[i]);
    printf("\n");
}

static int cmd_inherit(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *v = getenv(argv[2]);
    if (v) printf("ESCAPED env_%s %s\n", argv[2], v);
    else printf("HELD env_%s ABSENT\n", argv[2]);
    list_fds("FDS");
    for (int i = 3; i < argc; i++) {
        char name[64];
        snprintf(name, sizeof name, "fd_%s", argv[i]);
        TRY(name, fcntl(atoi(argv[i]), F_GETFD));
    }
    /* control: an fd the probe opens itself is listed */
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0 && dup2(fd, 42) == 42) {
        close(fd);
        list_fds("FDS_AFTER_OPEN");
        TRY("ctl_fd_42", fcntl(42, F_GETFD));
    }
    printf("DONE\n");
    return 0;
}

static int cmd_ids(void) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("IDS %u %u %u\n", (unsigned)r, (unsigned)e, (unsigned)s);
    if (e != r) printf("ESCAPED setuid euid=%u\n", (unsigned)e);
    else printf("HELD setuid euid=%u\n", (unsigned)e);
    printf("DONE\n");
    return 0;
}

/* --- privs -------------------------------------------------------------------------------------- */

struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

static long do_chroot(long unused) {
    (void)unused;
    return chroot("/");
}

static int cmd_privs(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *dir = argv[2], *other = argv[3], *other_ro = argv[4];
    char path[4096];

    /* capability sets, as /proc reports them and as the syscalls do */
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    int nonzero = 0, seen = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Seccomp:", 8)) {
            printf("STATUS %s", line);
            if (!strncmp(line, "Cap", 3)) {
                char *colon = strchr(line, ':');
                seen++;
                /* the bounding set is reported by "capbset" (a user cannot drop it) */
                if (colon && strncmp(line, "CapBnd", 6) && strtoull(colon + 1, NULL, 16) != 0) nonzero++;
            }
        }
    }
    if (f) fclose(f);
    if (seen < 5) printf("HELD proc_caps UNREADABLE-%d\n", seen);
    else if (nonzero) printf("ESCAPED proc_caps nonzero=%d\n", nonzero);
    else printf("HELD proc_caps ZERO\n");
    {
        struct cap_header h = {0x20080522, 0};
        struct cap_data d[2];
        memset(d, 0, sizeof d);
        if (syscall(SYS_capget, &h, d) < 0) printf("HELD capget ERR-%s\n", ename(errno));
        else if (d[0].effective | d[0].permitted | d[0].inheritable | d[1].effective | d[1].permitted |
                 d[1].inheritable)
            printf("ESCAPED capget eff=%x prm=%x inh=%x\n", d[0].effective, d[0].permitted, d[0].inheritable);
        else printf("HELD capget ZERO\n");
    }
    {
        int inbound = 0;
        for (int c = 0; c < 64; c++)
            if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) inbound++;
        if (inbound) printf("ESCAPED capbset count=%d\n", inbound);
        else printf("HELD capbset ZERO\n");
    }
    printf("SECUREBITS %ld\n", (long)prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
    printf("NO_NEW_PRIVS %ld\n", (long)prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));

    /* mount, chroot */
    snprintf(path, sizeof path, "%s/mnt", dir);
    mkdir(path, 0755);
    errno = 0;
    long r = mount("none", path, "tmpfs", 0, "size=16k");
    verdict("mount_tmpfs", r, errno);
    if (r == 0) umount2(path, MNT_DETACH);
    in_child("chroot", do_chroot, 0);

    /* raw and packet sockets */
    int s;
    errno = 0; s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)); verdict("socket_packet_raw", s, errno);
    if (s >= 0) close(s);
    errno = 0; s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL)); verdict("socket_packet_dgram", s, errno);
    if (s >= 0) close(s);
    errno = 0; s = (int)syscall(SYS_socket, HI | AF_PACKET, (long)SOCK_RAW, (long)htons(ETH_P_ALL));
    verdict("socket_packet_hi", s, errno);
    if (s >= 0) close(s);
    errno = 0; s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); verdict("socket_inet_raw", s, errno);
    if (s >= 0) close(s);
    errno = 0; s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6); verdict("socket_inet6_raw", s, errno);
    if (s >= 0) close(s);
    errno = 0; s = socket(AF_INET, SOCK_STREAM, 0); verdict("ctl_socket_inet_stream", s, errno);
    if (s >= 0) close(s);

    /* DAC: files of uid 4242 */
    int fd;
    errno = 0; fd = open(other, O_RDONLY); verdict("read_other_0600", fd, errno);
    if (fd >= 0) close(fd);
    errno = 0; fd = open(other_ro, O_WRONLY); verdict("write_other_0644", fd, errno);
    if (fd >= 0) close(fd);
    errno = 0; fd = open(other_ro, O_RDONLY); verdict("ctl_read_other_0644", fd, errno);
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/mine", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    TRY("chown_to_4242", chown(path, 4242, 4242));
    snprintf(path, sizeof path, "%s/chardev", dir);
    TRY("mknod_chardev", mknod(path, S_IFCHR | 0600, makedev(1, 3)));
    TRY("setuid_4242", setuid(4242));
    printf("DONE\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "bypass")) return cmd_bypass();
    if (!strcmp(cmd, "int80")) return cmd_int80();
    if (!strcmp(cmd, "reach")) return cmd_reach(argc, argv);
    if (!strcmp(cmd, "reach-control")) return cmd_reach_control();
    if (!strcmp(cmd, "inherit")) return cmd_inherit(argc, argv);
    if (!strcmp(cmd, "ids")) return cmd_ids();
    if (!strcmp(cmd, "privs")) return cmd_privs(argc, argv);
    fprintf(stderr, "filt_probe: unknown mode %s\n", cmd);
    return 2;
}
