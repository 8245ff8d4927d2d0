/* Probe syscalls the sandbox must refuse, and harmless controls (docs/design.md
 * "The command cannot reach the supervisor", "The seccomp filter", "The deny list").
 *
 * usage: syscalls OP...   prints one line per OP: "OP rc errno" (errno 0 on success).
 * Ops that might succeed are harmless when they do (nothing is mounted, loaded or traced
 * for longer than the probe).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    printf("%s %ld %d\n", name, rc, rc < 0 ? errno : 0);
    fflush(stdout);
}

static long probe(const char *op) {
    static char buf[64];
    if (!strcmp(op, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(op, "getppid")) return syscall(SYS_getppid);
    if (!strcmp(op, "uname")) { struct utsname u; return uname(&u); }
#ifdef __x86_64__
    if (!strcmp(op, "x32_getpid")) return syscall(SYS_getpid | 0x40000000);
#endif
    if (!strcmp(op, "ptrace_parent")) {
        long rc = ptrace(PTRACE_ATTACH, getppid(), 0, 0);
        if (rc == 0) { int e = errno; ptrace(PTRACE_DETACH, getppid(), 0, 0); errno = e; }
        return rc;
    }
    if (!strcmp(op, "ptrace_init")) {
        long rc = ptrace(PTRACE_ATTACH, 1, 0, 0);
        if (rc == 0) ptrace(PTRACE_DETACH, 1, 0, 0);
        return rc;
    }
    if (!strcmp(op, "ptrace_traceme")) return ptrace(PTRACE_TRACEME, 0, 0, 0);
    if (!strcmp(op, "vm_readv_parent") || !strcmp(op, "vm_readv_self")) {
        /* Reading our own address: in the parent it is probably mapped too (same binary
         * for a fork); either way a refused call is EPERM, not EFAULT. */
        struct iovec local = {buf, sizeof buf}, remote = {(void *)op, 8};
        pid_t pid = !strcmp(op, "vm_readv_self") ? getpid() : getppid();
        return syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0);
    }
    if (!strcmp(op, "mount")) return mount("none", "/tmp", "tmpfs", 0, "");
    if (!strcmp(op, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(op, "unshare_ns")) return unshare(CLONE_NEWNS);
    if (!strcmp(op, "chroot")) return chroot("/");
    if (!strcmp(op, "io_uring_setup")) {
        char params[120];
        memset(params, 0, sizeof params);
        long fd = syscall(425 /* io_uring_setup, same on x86_64 and aarch64 */, 4, params);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "bpf_prog_load")) {
        struct bpf_insn insns[2] = {
            {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
            {.code = BPF_JMP | BPF_EXIT},
        };
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
        attr.insns = (unsigned long)insns;
        attr.insn_cnt = 2;
        attr.license = (unsigned long)"GPL";
        long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "clone_newuser")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, 0, 0);
        return pid > 0 ? 0 : pid;
    }
    if (!strcmp(op, "fork")) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, 0, 0);
        return pid > 0 ? 0 : pid;
    }
    if (!strcmp(op, "pidfd_getfd_parent")) {
        long pidfd = syscall(434 /* pidfd_open */, getppid(), 0);
        if (pidfd < 0) return pidfd;
        long fd = syscall(438 /* pidfd_getfd */, pidfd, 0, 0);
        int e = errno;
        if (fd >= 0) close(fd);
        close(pidfd);
        errno = e;
        return fd;
    }
    if (!strcmp(op, "prctl_get_dumpable")) return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (!strcmp(op, "prctl_set_dumpable")) return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (!strcmp(op, "prctl_set_ptracer")) return prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    if (!strcmp(op, "socket_sock_diag")) {
        int fd = socket(AF_NETLINK, SOCK_RAW, 4 /* NETLINK_SOCK_DIAG */);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "socket_unix")) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 0);
    if (!strcmp(op, "userfaultfd")) {
        long fd = syscall(SYS_userfaultfd, 0);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_CPU_CLOCK;
        attr.disabled = 1;
        attr.exclude_kernel = 1;
        long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(op, "personality_query")) return personality(0xffffffff);
    if (!strcmp(op, "personality_linux32")) return personality(PER_LINUX32);
    if (!strcmp(op, "name_to_handle_at")) {
        struct { unsigned int bytes; int type; unsigned char h[128]; } fh = {128, 0, {0}};
        int mount_id;
        return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mount_id, 0);
    }
    if (!strcmp(op, "setns_own_uts")) {
        int fd = open("/proc/self/ns/uts", O_RDONLY);
        if (fd < 0) return -3;
        long rc = setns(fd, 0);
        int e = errno;
        close(fd);
        errno = e;
        return rc;
    }
    if (!strcmp(op, "sethostname_same")) {
        char name[256] = {0};
        if (gethostname(name, sizeof name - 1) != 0) return -3;
        return sethostname(name, strlen(name));
    }
    if (!strcmp(op, "clone3")) {
        unsigned long long args[8] = {0};   /* struct clone_args, CLONE_ARGS_SIZE_VER0 */
        args[4] = SIGCHLD;                  /* exit_signal */
        long pid = syscall(435 /* clone3 */, args, sizeof args);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, 0, 0);
        return pid > 0 ? 0 : pid;
    }
    errno = EINVAL;
    fprintf(stderr, "syscalls: unknown op %s\n", op);
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long rc = probe(argv[i]);
        report(argv[i], rc);
    }
    return 0;
}
