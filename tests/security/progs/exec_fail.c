/* A failed execve must leave the caller as the kernel leaves it (tests/security/test_exec_memory.py).

   exec_fail MODE PROGRAM [N]

   Calls execve(PROGRAM, argv, {"A=1", NULL}) where argv makes the kernel
   refuse the exec, with argv[0] the very pointer of the path string (as
   busybox's shell does, the hardest case for a supervisor that rewrites
   the path):
     efault-array   argv itself points to an unmapped page
     efault-string  argv[1] points to an unmapped page
     long           argv[1] is 128 KiB + 1 byte long (MAX_ARG_STRLEN is 128 KiB with the NUL)
     total          argv holds 70 strings of 100,000 bytes (more than 3/4 of _STK_LIM)
     many           argv holds 1,000,000 pointers (8 MB of pointers alone)
     efault-cross   argv[1] is 100 bytes and no NUL before an unmapped page
     cross          argv = {path, "-c", "echo ${#1} ${#2}", "sh", A, B}: A (4100 bytes) starts
                    7 bytes before a page's end and ends in the next page, B (5000 bytes)
                    starts right after A's NUL and ends two pages on: the exec runs
     edge           RLIMIT_STACK 1 MiB (so the strings get 256 KiB): argv filled to
                    exactly what fits plus N bytes (0: the exec runs PROGRAM)
     plain          argv = {path, NULL}: only the file can make it fail (noexec mount)
     at-short       execveat(fd of dirname(PROGRAM), basename(PROGRAM)): in a root a
                    relative name shorter than /proc/self/fd/N is refused (README)
     valid          argv = {path, "-c", "echo \"$0\" ran"}: the exec runs (a shell)
     named          argv = {"named-sh", "-c", "echo \"$0\" ran"}
   After a failure it prints one line:
     errno=NAME path=same|changed argv=same|changed fds=same|changed
   comparing the path string, the argv array and its strings, and the fd table
   (flags of fds 0..1023) with what they were before the call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NFDS 1024
#define MAX_ARGS 80

static void fd_table(int *out) {
    for (int fd = 0; fd < NFDS; fd++)
        out[fd] = fcntl(fd, F_GETFD);
}

static char *unmapped(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    munmap(p + page, page);
    return p + page;
}

static char *filled(size_t length) {  /* a string of `length` bytes and its NUL */
    char *s = malloc(length + 1);
    if (!s) { perror("malloc"); exit(2); }
    memset(s, 'x', length);
    s[length] = 0;
    return s;
}

static const char *name_of(int e) {
    switch (e) {
    case EFAULT: return "EFAULT";
    case E2BIG: return "E2BIG";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case ENOMEM: return "ENOMEM";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "other";
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: exec_fail MODE PROGRAM [N]\n"); return 2; }
    const char *mode = argv[1];
    char path[512];
    snprintf(path, sizeof path, "%s", argv[2]);
    char *envp[] = {"A=1", NULL};
    char *args[MAX_ARGS + 2] = {path};
    char **use = args;
    int n = 1;
    if (!strcmp(mode, "efault-array")) {
        use = (char **)unmapped();
    } else if (!strcmp(mode, "efault-string")) {
        args[n++] = unmapped();
    } else if (!strcmp(mode, "long")) {
        args[n++] = filled(128 * 1024);
    } else if (!strcmp(mode, "efault-cross")) {
        char *end = unmapped();
        memset(end - 100, 'x', 100);
        args[n++] = end - 100;
    } else if (!strcmp(mode, "cross")) {
        long page = sysconf(_SC_PAGESIZE);
        char *p = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); exit(2); }
        char *a = p + page - 7, *b = a + 4101;
        memset(a, 'a', 4100);
        a[4100] = 0;
        memset(b, 'b', 5000);
        b[5000] = 0;
        args[n++] = "-c";
        args[n++] = "echo ${#1} ${#2}";
        args[n++] = "sh";
        args[n++] = a;
        args[n++] = b;
    } else if (!strcmp(mode, "total")) {
        while (n <= 70)
            args[n++] = filled(100000);
    } else if (!strcmp(mode, "many")) {
        use = calloc(1000001, sizeof(char *));
        if (!use) { perror("calloc"); return 2; }
        use[0] = path;
        for (int i = 1; i < 1000000; i++)
            use[i] = "";
    } else if (!strcmp(mode, "edge")) {
        struct rlimit small = {1 << 20, 1 << 20};
        if (setrlimit(RLIMIT_STACK, &small)) { perror("setrlimit"); return 2; }
        /* fs/exec.c: 256 KiB minus the pointers (argv 4 + envp 1), minus the path,
           the environment and argv[0], each with its NUL; two strings fill the rest */
        long room = (1 << 18) - 5 * 8 - 2 * ((long)strlen(path) + 1) - 4 + atol(argc > 3 ? argv[3] : "0");
        long first = room / 2, second = room - first;
        args[n++] = filled(first - 1);
        args[n++] = filled(second - 2);
        args[n++] = "";
    } else if (!strcmp(mode, "valid") || !strcmp(mode, "named")) {
        if (!strcmp(mode, "named"))
            args[0] = "named-sh";
        args[n++] = "-c";
        args[n++] = "echo \"$0\" ran";
    } else if (strcmp(mode, "plain") && strcmp(mode, "at-short")) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    args[n] = NULL;

    char path_before[sizeof path];
    memcpy(path_before, path, sizeof path);
    char *argv_before[MAX_ARGS + 2];
    memcpy(argv_before, args, sizeof args);
    char arg0_before[sizeof path];
    snprintf(arg0_before, sizeof arg0_before, "%s", args[0]);
    static int fds_before[NFDS], fds_after[NFDS];
    fd_table(fds_before);

    if (!strcmp(mode, "at-short")) {
        char *slash = strrchr(path, '/');
        if (!slash) { fprintf(stderr, "at-short needs a path with a slash\n"); return 2; }
        char dir[sizeof path];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY);
        if (dfd < 0) { perror("open"); return 2; }
        fd_table(fds_before);
        syscall(SYS_execveat, dfd, slash + 1, use, envp, 0);
    } else {
        execve(path, use, envp);
    }
    int e = errno;

    fd_table(fds_after);
    int path_same = !memcmp(path, path_before, sizeof path);
    int argv_same = !memcmp(args, argv_before, sizeof args) && !strcmp(args[0], arg0_before);
    int fds_same = !memcmp(fds_before, fds_after, sizeof fds_before);
    printf("errno=%s path=%s argv=%s fds=%s\n", name_of(e), path_same ? "same" : "changed",
           argv_same ? "same" : "changed", fds_same ? "same" : "changed");
    if (!fds_same)
        for (int fd = 0; fd < NFDS; fd++)
            if (fds_before[fd] != fds_after[fd])
                printf("fd %d: %d -> %d\n", fd, fds_before[fd], fds_after[fd]);
    if (!path_same)
        printf("path now %s\n", path);
    return 0;
}
