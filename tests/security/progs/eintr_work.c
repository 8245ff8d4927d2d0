/* The command of the EINTR fault-injection test (tests/security/test_eintr.py):
 * trapped work the supervisor does on behalf, retrying its own calls on EINTR
 * (strace injects EINTR into the victim's calls too; only the supervisor's
 * side is under test).
 *
 * usage: eintr_work FILE N SOCKET
 *   N stats of FILE, an open of it, a connect to the unix SOCKET and a read of
 *   its greeting; prints "pid=P ok=N open=yes greeting=G" and exits 0 when
 *   all of it worked, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RETRY(expr) ({ long r_; do r_ = (long)(expr); while (r_ < 0 && errno == EINTR); r_; })

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int n = atoi(argv[2]), ok = 0;
    struct stat st;
    for (int i = 0; i < n; i++) ok += RETRY(stat(argv[1], &st)) == 0;
    int fd = (int)RETRY(open(argv[1], O_RDONLY | O_CLOEXEC));
    char greeting[64] = "none";
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[3]);
    if (s >= 0 && RETRY(connect(s, (struct sockaddr *)&a, sizeof a)) == 0) {
        long got = RETRY(read(s, greeting, sizeof greeting - 1));
        greeting[got > 0 ? got : 0] = 0;
        if (got > 0 && greeting[got - 1] == '\n') greeting[got - 1] = 0;
    }
    char msg[160];
    int len = snprintf(msg, sizeof msg, "pid=%d ok=%d open=%s greeting=%s\n", (int)getpid(), ok,
                       fd >= 0 ? "yes" : "no", greeting);
    for (int off = 0; off < len;) {
        long w = RETRY(write(1, msg + off, (size_t)(len - off)));
        if (w <= 0) return 1;
        off += (int)w;
    }
    return ok == n && fd >= 0 && strcmp(greeting, "hello") == 0 ? 0 : 1;
}
