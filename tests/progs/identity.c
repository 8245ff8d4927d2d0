/* identity.c: what a program learns of the machine's name and of its core dumps
 * (tests/test_identity.py).  One line per way of asking:
 *   uname NODENAME            uname(2)
 *   gethostname NAME          the libc call (glibc and musl use uname(2))
 *   proc NAME                 /proc/sys/kernel/hostname (first line), or "proc - ERRNO"
 *   etc NAME                  /etc/hostname (first line), or "etc - ERRNO"
 *   core SOFT HARD            getrlimit(RLIMIT_CORE) (-1: unlimited)
 *   raise RC ERRNO            setrlimit(RLIMIT_CORE) to unlimited, soft and hard
 *   prlimit RC ERRNO          prlimit(0, RLIMIT_CORE) to unlimited
 *   core-after SOFT HARD      getrlimit(RLIMIT_CORE) after both tries
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

static void first_line(const char *label, const char *path)
{
    char buf[512];
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s - %d\n", label, errno);
        return;
    }
    if (!fgets(buf, sizeof buf, f))
        buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    printf("%s %s\n", label, buf);
}

static long shown(rlim_t v)
{
    return v == RLIM_INFINITY ? -1 : (long)v;
}

int main(void)
{
    struct utsname u;
    char name[256];
    struct rlimit r, up = {RLIM_INFINITY, RLIM_INFINITY};
    int rc;

    if (uname(&u) == 0)
        printf("uname %s\n", u.nodename);
    else
        printf("uname - %d\n", errno);
    if (gethostname(name, sizeof name) == 0)
        printf("gethostname %s\n", name);
    else
        printf("gethostname - %d\n", errno);
    first_line("proc", "/proc/sys/kernel/hostname");
    first_line("etc", "/etc/hostname");
    getrlimit(RLIMIT_CORE, &r);
    printf("core %ld %ld\n", shown(r.rlim_cur), shown(r.rlim_max));
    errno = 0;
    rc = setrlimit(RLIMIT_CORE, &up);
    printf("raise %d %d\n", rc, rc ? errno : 0);
    errno = 0;
    rc = prlimit(0, RLIMIT_CORE, &up, NULL);
    printf("prlimit %d %d\n", rc, rc ? errno : 0);
    getrlimit(RLIMIT_CORE, &r);
    printf("core-after %ld %ld\n", shown(r.rlim_cur), shown(r.rlim_max));
    return 0;
}
