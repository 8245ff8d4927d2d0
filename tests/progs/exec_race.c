/* A thread rewrites the path or an argument of an execve while the call is made
 * (README "Policy callback": the exec runs as the policy_fn decided it).
 *
 * usage: exec_race path N ALLOWED_PROG DENIED_PROG
 *        exec_race argv N PROG ALLOWED_ARG DENIED_ARG
 * Each of N children starts a thread flipping the buffer between the two values,
 * then execs.  A child whose exec is refused exits 100.  Every child's stdout
 * comes back through a pipe.
 * prints: "exec_race attempts=N refused=R killed=K status1=S lines_denied=L"
 *   status1: children that exited 1 (/usr/bin/false ran);
 *   lines_denied: output lines equal to DENIED_ARG (echo ran with it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[256];
static const char *vals[2];

static void *flipper(void *arg) {
    (void)arg;
    for (unsigned long i = 0;; i++)
        strcpy(buf, vals[i & 1]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    int path_mode = strcmp(argv[1], "path") == 0;
    int n = atoi(argv[2]);
    int refused = 0, killed = 0, status1 = 0, lines = 0;
    const char *denied = path_mode ? argv[4] : argv[5];
    for (int i = 0; i < n; i++) {
        int fds[2];
        if (pipe(fds)) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], 1);
            vals[0] = path_mode ? argv[3] : argv[4];
            vals[1] = path_mode ? argv[4] : argv[5];
            strcpy(buf, vals[0]);
            pthread_t t;
            pthread_create(&t, NULL, flipper, NULL);
            for (volatile int k = 0; k < (i % 64) * 50; k++) ;
            char *args[3];
            char *envp[] = {NULL};
            if (path_mode) {
                args[0] = "prog"; args[1] = "hello"; args[2] = NULL;
                execve(buf, args, envp);
            } else {
                args[0] = argv[3]; args[1] = buf; args[2] = NULL;
                execve(argv[3], args, envp);
            }
            _exit(100);
        }
        close(fds[1]);
        char out[4096];
        size_t got = 0;
        ssize_t r;
        while ((r = read(fds[0], out + got, sizeof out - 1 - got)) > 0) got += r;
        out[got] = 0;
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) killed++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 100) refused++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 1) status1++;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            if (strcmp(line, denied) == 0) lines++;
    }
    printf("exec_race attempts=%d refused=%d killed=%d status1=%d lines_denied=%d\n", n, refused, killed, status1, lines);
    return 0;
}
