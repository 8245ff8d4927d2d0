/* cpu.c: how many CPUs a program is told it has, and whether it can widen its
 * affinity (tests/test_cpu.py).  One line per way of asking:
 *   onln N                 sysconf(_SC_NPROCESSORS_ONLN)  (glibc: /sys/.../online, else /proc/stat;
 *   conf N                 sysconf(_SC_NPROCESSORS_CONF)   musl: sched_getaffinity)
 *   nprocs N               get_nprocs()
 *   affinity N             CPU_COUNT of sched_getaffinity(0)
 *   cpuinfo N              "processor" lines of /proc/cpuinfo
 *   stat N                 "cpuN" lines of /proc/stat
 *   online TEXT            /sys/devices/system/cpu/online, or "- ERRNO"
 *   widen RC ERRNO         sched_setaffinity(0) to CPUs 0..1023
 *   after N                CPU_COUNT of sched_getaffinity(0) after that
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static int count_lines(const char *path, const char *prefix, int digit)
{
    char buf[4096];
    int n = 0;
    size_t len = strlen(prefix);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    while (fgets(buf, sizeof buf, f))
        if (!strncmp(buf, prefix, len) && (!digit || (buf[len] >= '0' && buf[len] <= '9')))
            n++;
    fclose(f);
    return n;
}

static int affinity(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set))
        return -errno;
    return CPU_COUNT(&set);
}

int main(void)
{
    char buf[256];
    FILE *f;
    cpu_set_t all;
    int rc;

    printf("onln %ld\nconf %ld\nnprocs %d\n", sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF),
           get_nprocs());
    printf("affinity %d\n", affinity());
    printf("cpuinfo %d\n", count_lines("/proc/cpuinfo", "processor", 0));
    printf("stat %d\n", count_lines("/proc/stat", "cpu", 1));
    f = fopen("/sys/devices/system/cpu/online", "r");
    if (!f) {
        printf("online - %d\n", errno);
    } else {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("online %s\n", buf);
        fclose(f);
    }
    memset(&all, 0xff, sizeof all);
    errno = 0;
    rc = sched_setaffinity(0, sizeof all, &all);
    printf("widen %d %d\n", rc, rc ? errno : 0);
    printf("after %d\n", affinity());
    return 0;
}
