/* dns_connect NAME PORT [FAMILY]: resolve NAME with getaddrinfo (AF_UNSPEC, or 4 / 6),
 * connect to the first address, send "ping" and print what comes back.
 * Prints "getaddrinfo: <gai_strerror>" (exit 2), "connect <ip>: <strerror>" (exit 3),
 * or "resolved <ip>" then "echo <reply>" (exit 0).  Used by tests/security/test_dns.py. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: dns_connect NAME PORT [4|6]\n");
        return 64;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = argc > 3 ? (argv[3][0] == '6' ? AF_INET6 : AF_INET) : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &res);
    if (rc != 0) {
        printf("getaddrinfo: %s\n", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return 2;
    }
    char ip[INET6_ADDRSTRLEN] = "?";
    void *where = res->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                                            : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    inet_ntop(res->ai_family, where, ip, sizeof ip);
    printf("resolved %s\n", ip);
    fflush(stdout);
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        printf("connect %s: %s\n", ip, strerror(errno));
        return 3;
    }
    char buf[64] = {0};
    if (write(fd, "ping", 4) != 4 || read(fd, buf, sizeof buf - 1) <= 0) {
        printf("echo failed: %s\n", strerror(errno));
        return 4;
    }
    printf("echo %s\n", buf);
    return 0;
}
