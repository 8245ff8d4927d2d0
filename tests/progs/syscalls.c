/* Probe syscalls the sandbox must refuse (SPEC 1.6, 1.7, 1.8), and harmless controls.
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
#include <sys/mount.h>
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
    if (!strcmp(op, "kill_parent0")) return kill(getppid(), 0);
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
