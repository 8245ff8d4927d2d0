/* What a sandboxed command sees of the network (tests/security/test_net_views.py).
 *
 * netview MARKER [PATH|- [IFNAME]]: opens its own sockets (TCP listeners on
 * 127.0.0.1 and ::1, a UDP socket on 127.0.0.1, an abstract unix socket named
 * "@netview-MARKER", a unix socket bound to PATH if given), prints their
 * ports, then
 *   - dumps /proc/net/{tcp,tcp6,udp,unix} and the same through self,
 *     thread-self and its pid, and /proc/net/{dev,if_inet6,route,arp,fib_trie,snmp};
 *   - lists the interfaces libc's getifaddrs() returns, and SIOCGIFCONF's;
 *     asks SIOCGIFINDEX, SIOCGIFFLAGS and SIOCGIFHWADDR of lo and IFNAME;
 *   - dumps links and addresses over a NETLINK_ROUTE socket and tries to add
 *     an address (RTM_NEWADDR 127.0.0.77/8 on lo, harmless if it went through);
 *   - opens NETLINK_AUDIT, NETLINK_SOCK_DIAG, NETLINK_GENERIC and
 *     NETLINK_KOBJECT_UEVENT sockets; a sock_diag socket that opens dumps
 *     the host's TCP sockets (the count is printed).
 * One "key value" line per result; files between "== PATH" and "== end".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The few netlink definitions used (uapi linux/netlink.h, rtnetlink.h,
 * if_link.h, if_addr.h, sock_diag.h, inet_diag.h): musl-gcc has no kernel headers. */
struct sockaddr_nl { unsigned short nl_family, nl_pad; unsigned nl_pid, nl_groups; };
struct nlmsghdr { unsigned nlmsg_len; unsigned short nlmsg_type, nlmsg_flags; unsigned nlmsg_seq, nlmsg_pid; };
struct nlmsgerr { int error; struct nlmsghdr msg; };
struct rtattr { unsigned short rta_len, rta_type; };
struct ifinfomsg { unsigned char ifi_family, pad; unsigned short ifi_type; int ifi_index; unsigned ifi_flags, ifi_change; };
struct ifaddrmsg { unsigned char ifa_family, ifa_prefixlen, ifa_flags, ifa_scope; unsigned ifa_index; };
struct inet_diag_sockid { unsigned short sport, dport; unsigned src[4], dst[4], intf, cookie[2]; };
struct inet_diag_req_v2 { unsigned char sdiag_family, sdiag_protocol, idiag_ext, pad; unsigned idiag_states;
                          struct inet_diag_sockid id; };
#define NETLINK_ROUTE 0
#define NETLINK_SOCK_DIAG 4
#define NETLINK_AUDIT 9
#define NETLINK_KOBJECT_UEVENT 15
#define NETLINK_GENERIC 16
#define NLM_F_REQUEST 1
#define NLM_F_ACK 4
#define NLM_F_DUMP 0x300
#define NLM_F_EXCL 0x200
#define NLM_F_CREATE 0x400
#define NLMSG_ERROR 2
#define NLMSG_DONE 3
#define RTM_NEWLINK 16
#define RTM_GETLINK 18
#define RTM_NEWADDR 20
#define RTM_GETADDR 22
#define SOCK_DIAG_BY_FAMILY 20
#define IFLA_IFNAME 3
#define IFA_ADDRESS 1
#define IFA_LOCAL 2
#define NLMSG_ALIGN(n) (((n) + 3u) & ~3u)
#define NLMSG_HDRLEN ((int)NLMSG_ALIGN(sizeof(struct nlmsghdr)))
#define NLMSG_DATA(h) ((void *)((char *)(h) + NLMSG_HDRLEN))
#define NLMSG_OK(h, n) ((n) >= (int)sizeof(struct nlmsghdr) && (h)->nlmsg_len >= sizeof(struct nlmsghdr) && \
                        (h)->nlmsg_len <= (unsigned)(n))
#define NLMSG_NEXT(h, n) ((n) -= NLMSG_ALIGN((h)->nlmsg_len), \
                          (struct nlmsghdr *)((char *)(h) + NLMSG_ALIGN((h)->nlmsg_len)))
#define RTA_ALIGN(n) (((n) + 3u) & ~3u)
#define RTA_LENGTH(n) (RTA_ALIGN(sizeof(struct rtattr)) + (n))
#define RTA_DATA(a) ((void *)((char *)(a) + RTA_LENGTH(0)))
#define RTA_OK(a, n) ((n) >= (int)sizeof(struct rtattr) && (a)->rta_len >= sizeof(struct rtattr) && \
                      (a)->rta_len <= (unsigned)(n))
#define RTA_NEXT(a, n) ((n) -= RTA_ALIGN((a)->rta_len), (struct rtattr *)((char *)(a) + RTA_ALIGN((a)->rta_len)))
#define IFLA_RTA(r) ((struct rtattr *)((char *)(r) + NLMSG_ALIGN(sizeof(struct ifinfomsg))))
#define IFLA_PAYLOAD(h) ((int)((h)->nlmsg_len - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(struct ifinfomsg))))
#define IFA_RTA(r) ((struct rtattr *)((char *)(r) + NLMSG_ALIGN(sizeof(struct ifaddrmsg))))
#define IFA_PAYLOAD(h) ((int)((h)->nlmsg_len - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(struct ifaddrmsg))))

static void dump(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("== %s ERR %s\n== end\n", path, strerror(errno));
        return;
    }
    printf("== %s\n", path);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    printf("== end\n");
}

static int listener(int family, int type) {
    int fd = socket(family, type, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        len = sizeof *in6;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        return -errno;
    if (type == SOCK_STREAM && listen(fd, 4) < 0)
        return -errno;
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void nl_open(const char *name, int protocol) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    printf("nl_socket %s %s\n", name, fd < 0 ? strerror(errno) : "OK");
    if (fd >= 0)
        close(fd);
}

/* Send one request, read replies until NLMSG_DONE or an error; print what came. */
static void nl_talk(int fd, struct nlmsghdr *req, const char *what) {
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        printf("%s send %s\n", what, strerror(errno));
        return;
    }
    char buf[32768];
    for (int rounds = 0; rounds < 1000; rounds++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            printf("%s recv %s\n", what, strerror(errno));
            return;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                printf("%s done\n", what);
                return;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                printf("%s error %s\n", what, e->error ? strerror(-e->error) : "0");
                return;
            }
            if (h->nlmsg_type == RTM_NEWLINK) {
                struct ifinfomsg *ifi = NLMSG_DATA(h);
                int len = IFLA_PAYLOAD(h);
                for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
                    if (a->rta_type == IFLA_IFNAME)
                        printf("%s link %s\n", what, (char *)RTA_DATA(a));
            } else if (h->nlmsg_type == RTM_NEWADDR) {
                struct ifaddrmsg *ifa = NLMSG_DATA(h);
                int len = IFA_PAYLOAD(h);
                for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
                    if (a->rta_type == IFA_ADDRESS) {
                        char text[INET6_ADDRSTRLEN];
                        inet_ntop(ifa->ifa_family, RTA_DATA(a), text, sizeof text);
                        printf("%s addr %s/%d\n", what, text, ifa->ifa_prefixlen);
                    }
            } else {
                printf("%s message %d\n", what, h->nlmsg_type);
            }
        }
    }
}

static void route_netlink(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        printf("route socket %s\n", strerror(errno));
        return;
    }
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    socklen_t len = sizeof local;
    printf("route bind %s\n", bind(fd, (struct sockaddr *)&local, sizeof local) < 0 ? strerror(errno) : "OK");
    if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
        printf("route getsockname %s\n", strerror(errno));
    else
        printf("route getsockname family=%d len=%u\n", local.nl_family, (unsigned)len);
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } link = {{sizeof link, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0}, {.ifi_family = AF_UNSPEC}};
    nl_talk(fd, &link.h, "getlink");
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg a;
    } addr = {{sizeof addr, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 2, 0}, {.ifa_family = AF_UNSPEC}};
    nl_talk(fd, &addr.h, "getaddr");
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg a;
        struct rtattr local_attr;
        struct in_addr local_addr;
    } add = {{sizeof add, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 3, 0},
             {.ifa_family = AF_INET, .ifa_prefixlen = 8, .ifa_index = 1},
             {RTA_LENGTH(sizeof(struct in_addr)), IFA_LOCAL},
             {htonl(0x7f00004d)}};
    nl_talk(fd, &add.h, "newaddr");
    close(fd);
}

static void sock_diag(void) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        printf("diag socket %s\n", strerror(errno));
        return;
    }
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req = {{sizeof req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0},
             {.sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u}};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        printf("diag send %s\n", strerror(errno));
        return;
    }
    int count = 0;
    char buf[32768];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR)
                goto out;
            count++;
        }
    }
out:
    printf("diag sockets %d\n", count);
    close(fd);
}

int main(int argc, char **argv) {
    const char *marker = argc > 1 ? argv[1] : "x";
    printf("port tcp %d\n", listener(AF_INET, SOCK_STREAM));
    printf("port tcp6 %d\n", listener(AF_INET6, SOCK_STREAM));
    printf("port udp %d\n", listener(AF_INET, SOCK_DGRAM));
    int ux = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "netview-%s", marker);
    printf("unix bind %s\n",
           bind(ux, (struct sockaddr *)&un, offsetof(struct sockaddr_un, sun_path) + 1 + n) < 0 ? strerror(errno)
                                                                                                 : "OK");
    listen(ux, 1);
    if (argc > 2 && strcmp(argv[2], "-") != 0) {
        int up = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un named = {.sun_family = AF_UNIX};
        strncpy(named.sun_path, argv[2], sizeof named.sun_path - 1);
        printf("unix path bind %s\n", bind(up, (struct sockaddr *)&named, sizeof named) < 0 ? strerror(errno) : "OK");
        listen(up, 1);
    }
    char path[64];
    static const char *tables[] = {"tcp", "tcp6", "udp", "unix", NULL};
    for (const char **t = tables; *t; t++) {
        snprintf(path, sizeof path, "/proc/net/%s", *t);
        dump(path);
        snprintf(path, sizeof path, "/proc/self/net/%s", *t);
        dump(path);
        snprintf(path, sizeof path, "/proc/thread-self/net/%s", *t);
        dump(path);
        snprintf(path, sizeof path, "/proc/%d/net/%s", getpid(), *t);
        dump(path);
    }
    static const char *others[] = {"dev", "if_inet6", "route", "arp", "fib_trie", "snmp", NULL};
    for (const char **t = others; *t; t++) {
        snprintf(path, sizeof path, "/proc/net/%s", *t);
        dump(path);
    }
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0) {
        printf("getifaddrs %s\n", strerror(errno));
    } else {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            char text[INET6_ADDRSTRLEN] = "-";
            int family = i->ifa_addr ? i->ifa_addr->sa_family : -1;
            if (family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, text, sizeof text);
            else if (family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, text, sizeof text);
            printf("ifaddr %s %d %s\n", i->ifa_name, family, text);
        }
        freeifaddrs(ifs);
        printf("getifaddrs OK\n");
    }
    struct if_nameindex *names = if_nameindex();
    if (names) {
        for (struct if_nameindex *p = names; p->if_index; p++)
            printf("ifindex %u %s\n", p->if_index, p->if_name);
        if_freenameindex(names);
    }
    int any = socket(AF_INET, SOCK_STREAM, 0);
    struct ifreq reqs[16];
    struct ifconf conf = {.ifc_len = sizeof reqs, .ifc_req = reqs};
    if (ioctl(any, SIOCGIFCONF, &conf) < 0) {
        printf("ifconf %s\n", strerror(errno));
    } else {
        for (int i = 0; i < conf.ifc_len / (int)sizeof(struct ifreq); i++)
            printf("ifconf %s %s\n", reqs[i].ifr_name,
                   inet_ntoa(((struct sockaddr_in *)&reqs[i].ifr_addr)->sin_addr));
        printf("ifconf OK\n");
    }
    const char *ifnames[] = {"lo", argc > 3 ? argv[3] : "lo"};
    for (int i = 0; i < 2; i++) {
        struct ifreq r;
        memset(&r, 0, sizeof r);
        strncpy(r.ifr_name, ifnames[i], IFNAMSIZ - 1);
        int ok = ioctl(any, SIOCGIFINDEX, &r);
        printf("ifreq %s index %s %d\n", ifnames[i], ok < 0 ? strerror(errno) : "OK", ok < 0 ? 0 : r.ifr_ifindex);
        ok = ioctl(any, SIOCGIFFLAGS, &r);
        printf("ifreq %s flags %s %x\n", ifnames[i], ok < 0 ? strerror(errno) : "OK", ok < 0 ? 0 : r.ifr_flags & 0xffff);
        ok = ioctl(any, SIOCGIFHWADDR, &r);
        printf("ifreq %s hwaddr %s\n", ifnames[i], ok < 0 ? strerror(errno) : "OK");
    }
    close(any);
    route_netlink();
    nl_open("audit", NETLINK_AUDIT);
    nl_open("generic", NETLINK_GENERIC);
    nl_open("uevent", NETLINK_KOBJECT_UEVENT);
    nl_open("route", NETLINK_ROUTE);
    sock_diag();
    fflush(stdout);
    return 0;
}
