"""Network policy (issue 11; README "Network"): no network unless the policy names it.

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture), in host mode (the system python) and in an emulated root
(the Debian rootfs).  The test process plays the network: TCP and UDP echo
servers on 127.0.0.1 (and ::1) ports it picks.  Every denial has a control
in which the same probe, allowed by the policy, reaches the echo server.
TEST-NET addresses (192.0.2.0/24, 2001:db8::/32) are only used where the
syscall's verdict is all that matters (a non-blocking connect: EACCES, or
anything else that shows the policy let it through).

The probe (PROBE) takes operations `op:host:port[:extra]` and prints one
line per operation: `op OK <what came back>` or `op ERR <errno name>`;
`op#N` runs `op` again under another name.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from netservers import Servers, free_port

from .conftest import Box

DENIED = "EACCES"

PROBE = r"""
import ctypes, errno, os, socket, struct, sys
def name(exc): return errno.errorcode.get(exc.errno, str(exc.errno))
def fam(host): return socket.AF_INET6 if ":" in host else socket.AF_INET
def echo(s):
    s.settimeout(5)
    return s.recv(64).decode()
def tcp(host, port, proto=0):
    s = socket.socket(fam(host), socket.SOCK_STREAM, proto)
    s.settimeout(5); s.connect((host, port)); s.sendall(b"ping"); return echo(s)
def tcpnb(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM); s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        return "EINPROGRESS"
    return "CONNECTED"
def udp(host, port):
    s = socket.socket(fam(host), socket.SOCK_DGRAM); s.sendto(b"ping", (host, port)); return echo(s)
def udpconn(host, port):
    s = socket.socket(fam(host), socket.SOCK_DGRAM); s.connect((host, port)); s.send(b"ping"); return echo(s)
def udpsock(host, port):
    socket.socket(fam(host), socket.SOCK_DGRAM); return "created"
def tfo(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.sendto(b"ping", 0x20000000, (host, port)); return echo(s)   # MSG_FASTOPEN
def tfoc(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, 30, 1)                         # TCP_FASTOPEN_CONNECT
    s.connect((host, port)); s.sendall(b"ping"); return echo(s)
def mptcp(host, port): return tcp(host, port, 262)
def lsrr(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # loose source route via 192.0.2.1
    s.setsockopt(socket.IPPROTO_IP, 4, bytes([1, 131, 7, 4]) + socket.inet_aton("192.0.2.1"))
    s.sendto(b"ping", (host, port)); return echo(s)
def rthdr(host, port):
    # a segment routing header (type 4, no capability needed): every packet would go
    # to 2001:db8::1 first, whatever destination connect/sendto named
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, 57, bytes([0, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    return "set"
def retopts(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendmsg([b"ping"], [(socket.IPPROTO_IP, 7, bytes([131, 7, 4]) + socket.inet_aton("192.0.2.1") + b"\0")], 0,
              (host, port)); return echo(s)
def somark(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendmsg([b"ping"], [(socket.SOL_SOCKET, 36, struct.pack("=I", 7))], 0, (host, port)); return echo(s)
def tos(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendmsg([b"ping"], [(socket.IPPROTO_IP, 1, struct.pack("=i", 0x10))], 0, (host, port)); return echo(s)
def icmp(host, port):
    s = socket.socket(fam(host), socket.SOCK_DGRAM, 1)
    s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"ping", (host, 0)); s.settimeout(5)
    return "pong" if s.recv(64)[0] == 0 else "?"
def icmpsock(host, port): socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 1); return "created"
def raw(host, port): socket.socket(socket.AF_INET, socket.SOCK_RAW, 1); return "created"
def packet(host, port): socket.socket(17, socket.SOCK_RAW, 0x300); return "created"
def vsock(host, port): socket.socket(40, socket.SOCK_STREAM, 0); return "created"
def sctp(host, port): socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132); return "created"
def listen(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM); s.bind((host, port)); s.listen(1)
    return "listening on %d" % s.getsockname()[1]
def listen0(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM); s.listen(1); return "listening"
def bind0(host, port):
    s = socket.socket(fam(host), socket.SOCK_STREAM); s.bind((host, 0)); return "bound"
def udpbind(host, port):
    s = socket.socket(fam(host), socket.SOCK_DGRAM); s.bind((host, port)); return "bound"
def mmsg(host, port, other):
    libc = ctypes.CDLL(None, use_errno=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    class iovec(ctypes.Structure): _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class msghdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint), ("iov", ctypes.c_void_p),
                    ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]
    class mmsghdr(ctypes.Structure): _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
    keep, msgs = [], (mmsghdr * 2)()
    for i, p in enumerate((port, int(other))):
        addr = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", p)
                                           + socket.inet_aton(host) + bytes(8), 16)
        data = ctypes.create_string_buffer(b"m%d" % i, 2)
        iov = iovec(ctypes.addressof(data), 2)
        keep += [addr, data, iov]
        msgs[i].hdr.name, msgs[i].hdr.namelen = ctypes.addressof(addr), 16
        msgs[i].hdr.iov, msgs[i].hdr.iovlen = ctypes.addressof(iov), 1
    n = libc.sendmmsg(s.fileno(), msgs, 2, 0)
    if n < 0:
        raise OSError(ctypes.get_errno(), "sendmmsg")
    got = []
    s.settimeout(2)
    try:
        for _ in range(n):
            got.append(s.recv(64).decode())
    except socket.timeout:
        pass
    return "sent %d got %s" % (n, ",".join(sorted(got)))
def scm(host, port):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        s = socket.socket(fam(host), socket.SOCK_STREAM)
        socket.send_fds(a, [b"x"], [s.fileno()]); os._exit(0)
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    os.waitpid(pid, 0)
    s = socket.socket(fileno=fds[0]); s.settimeout(5)
    s.connect((host, port)); s.sendall(b"ping"); return echo(s)
def inherited(host, port, fd):
    s = socket.socket(fileno=int(fd)); s.settimeout(5)
    s.connect((host, port)); s.sendall(b"ping"); return echo(s)
for arg in sys.argv[1:]:
    op, rest = arg.split(":", 1)
    if rest.startswith("["):
        host, _, rest = rest[1:].partition("]:")
        parts = [host] + rest.split(":")
    else:
        parts = rest.split(":")
    try:
        print(op, "OK", globals()[op.split("#")[0]](parts[0], int(parts[1]), *parts[2:]), flush=True)
    except OSError as exc:
        print(op, "ERR", name(exc) if exc.errno else type(exc).__name__, flush=True)
"""




@pytest.fixture
def echo2() -> Iterator[Servers]:
    server = Servers(["127.0.0.1"])
    yield server
    server.close()



def probe(who, box: Box, net: List[str], *ops: str, **kwargs) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    """Run PROBE with `ops` under `net` options; op -> 'OK ...' or 'ERR NAME'."""
    r = who.run([*box.options, *net, "--", box.python, "-c", PROBE, *ops], **kwargs)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = {}
    for line in r.stdout.splitlines():
        op, _, result = line.partition(" ")
        out[op] = result
    assert len(out) == len(ops), r.stdout + r.stderr
    return out


# --- default deny, and allowing by address, port and protocol ---------------------------------------

def test_with_no_network_flag_tcp_and_udp_to_host_loopback_are_refused(who, box, echo):
    h = f"127.0.0.1:{echo.port}"
    got = probe(who, box, [], f"tcp:{h}", f"udpsock:{h}", f"udp:{h}", f"tfo:{h}", f"tfoc:{h}")
    assert got == {"tcp": f"ERR {DENIED}", "udpsock": f"ERR {DENIED}", "udp": f"ERR {DENIED}",
                   "tfo": f"ERR {DENIED}", "tfoc": f"ERR {DENIED}"}
    assert echo.received == []


def test_an_allowed_address_and_port_is_reached_over_tcp_and_udp(who, box, echo):
    h = f"127.0.0.1:{echo.port}"
    got = probe(who, box, ["--net-allow", h], f"tcp:{h}", f"udp:{h}", f"udpconn:{h}", f"tfo:{h}", f"tfoc:{h}",
                f"tos:{h}")
    assert got == {"tcp": "OK ping", "udp": "OK ping", "udpconn": "OK ping", "tfo": "OK ping", "tfoc": "OK ping",
                   "tos": "OK ping"}


def test_another_port_of_an_allowed_address_is_refused(who, box, echo, echo2):
    got = probe(who, box, ["--net-allow", f"127.0.0.1:{echo.port}"], f"tcp:127.0.0.1:{echo2.port}",
                f"udp:127.0.0.1:{echo2.port}", f"tfo:127.0.0.1:{echo2.port}", f"tfoc:127.0.0.1:{echo2.port}",
                f"tcp#control:127.0.0.1:{echo.port}")
    assert got == {"tcp": f"ERR {DENIED}", "tcp#control": "OK ping", "udp": f"ERR {DENIED}", "tfo": f"ERR {DENIED}",
                   "tfoc": f"ERR {DENIED}"}
    assert echo2.received == []


def test_a_port_range_a_cidr_and_a_scheme_decide(who, box, echo):
    lo, hi = echo.port - 1, echo.port + 1
    got = probe(who, box, ["--net-allow", f"tcp://127.0.0.0/8:{lo}-{hi}"],
                f"tcp:127.0.0.1:{echo.port}", f"udp:127.0.0.1:{echo.port}")
    assert got == {"tcp": "OK ping", "udp": f"ERR {DENIED}"}  # udp:// not named: no UDP
    got = probe(who, box, ["--net-allow", f"udp://127.0.0.1:{echo.port}"],
                f"tcp:127.0.0.1:{echo.port}", f"udp:127.0.0.1:{echo.port}")
    assert got == {"tcp": f"ERR {DENIED}", "udp": "OK ping"}


def test_the_v4_mapped_spelling_of_an_address_is_that_address(who, box, echo, echo2):
    got = probe(who, box, ["--net-allow", f"127.0.0.1:{echo.port}"],
                f"tcp:[::ffff:127.0.0.1]:{echo.port}", f"udpconn:[::ffff:127.0.0.1]:{echo2.port}")
    assert got == {"tcp": "OK ping", "udpconn": f"ERR {DENIED}"}
    assert echo2.received == []
    echo.received.clear()
    got = probe(who, box, ["--net-deny", "127.0.0.0/8"], f"tcp:[::ffff:127.0.0.1]:{echo.port}",
                f"tcp#any:0.0.0.0:{echo.port}", f"udp:[::ffff:127.0.0.1]:{echo.port}")
    assert got == {"tcp": f"ERR {DENIED}", "tcp#any": f"ERR {DENIED}", "udp": f"ERR {DENIED}"}
    assert echo.received == []


def test_the_nat64_spelling_of_a_denied_address_is_denied(who, box):
    # verdict only: 64:ff9b::c000:201 is 192.0.2.1 (TEST-NET-1) behind a NAT64
    denied = probe(who, box, ["--net-deny", "192.0.2.0/24"], "tcpnb:[64:ff9b::c000:201]:80", "tcpnb#v4:192.0.2.1:80")
    assert denied == {"tcpnb": f"ERR {DENIED}", "tcpnb#v4": f"ERR {DENIED}"}
    allowed = probe(who, box, ["--net-deny", "198.51.100.0/24"], "tcpnb:[64:ff9b::c000:201]:80")
    assert allowed["tcpnb"] != f"ERR {DENIED}"
    allowed = probe(who, box, ["--net-allow", "tcp://192.0.2.1:80"], "tcpnb:[64:ff9b::c000:201]:80")
    assert allowed["tcpnb"] != f"ERR {DENIED}"


def test_net_deny_refuses_the_listed_addresses_and_allows_the_rest(who, box, echo):
    h = f"127.0.0.1:{echo.port}"
    assert probe(who, box, ["--net-deny", "127.0.0.1"], f"tcp:{h}", f"udp:{h}") == \
        {"tcp": f"ERR {DENIED}", "udp": f"ERR {DENIED}"}
    assert probe(who, box, ["--net-deny", "192.0.2.0/24"], f"tcp:{h}", f"udp:{h}") == \
        {"tcp": "OK ping", "udp": "OK ping"}


def test_ipv6_loopback_is_allowed_only_when_named(who, box):
    server = Servers(["::1"])
    try:
        h = f"[::1]:{server.port}"
        assert probe(who, box, ["--net-allow", f"127.0.0.1:{server.port}"], f"tcp:{h}")["tcp"] == f"ERR {DENIED}"
        assert probe(who, box, ["--net-allow", f"tcp://{h}"], f"tcp:{h}")["tcp"] == "OK ping"
    finally:
        server.close()


# --- sends: each message, connected UDP ---------------------------------------------------------------

def test_sendmmsg_mixing_an_allowed_and_a_denied_destination_sends_nothing_to_the_denied_one(who, box, echo, echo2):
    got = probe(who, box, ["--net-allow", f"udp://127.0.0.1:{echo.port}"],
                f"mmsg:127.0.0.1:{echo.port}:{echo2.port}")
    assert got["mmsg"] == f"ERR {DENIED}"
    assert echo2.received == [] and echo.received == []
    got = probe(who, box, ["--net-allow", f"udp://127.0.0.1:{echo.port}", "--net-allow", f"udp://127.0.0.1:{echo2.port}"],
                f"mmsg:127.0.0.1:{echo.port}:{echo2.port}")
    assert got["mmsg"] == "OK sent 2 got m0,m1"


def test_a_udp_socket_connected_to_an_allowed_peer_sends_there_and_no_further(who, box, echo, echo2):
    got = probe(who, box, ["--net-allow", f"udp://127.0.0.1:{echo.port}"],
                f"udpconn:127.0.0.1:{echo.port}", f"udp:127.0.0.1:{echo2.port}")
    assert got == {"udpconn": "OK ping", "udp": f"ERR {DENIED}"}
    assert echo2.received == []


# --- sockets of other kinds -------------------------------------------------------------------------

def test_raw_packet_vsock_sctp_and_mptcp_sockets_are_refused_whatever_the_policy(who, box, echo):
    for net in ([], ["--net-allow", "*"]):
        got = probe(who, box, net, "raw:x:0", "packet:x:0", "vsock:x:0", "sctp:x:0", f"mptcp:127.0.0.1:{echo.port}")
        assert got == {"raw": "ERR EPERM", "packet": "ERR EPERM", "vsock": "ERR EAFNOSUPPORT",
                       "sctp": "ERR EPROTONOSUPPORT", "mptcp": "ERR EPROTONOSUPPORT"}, net
    assert echo.received == []


def test_source_routes_and_routing_headers_that_would_send_elsewhere_are_refused(who, box, echo):
    h = f"127.0.0.1:{echo.port}"
    got = probe(who, box, ["--net-allow", "*"], f"lsrr:{h}", f"rthdr:[::1]:{echo.port}", f"retopts:{h}",
                f"somark:{h}", f"tos:{h}")
    assert got == {"lsrr": "ERR EPERM", "rthdr": "ERR EPERM", "retopts": "ERR EPERM", "somark": "ERR EPERM",
                   "tos": "OK ping"}


def test_a_socket_received_by_scm_rights_is_policed_like_any_other(who, box, echo, echo2):
    got = probe(who, box, ["--net-allow", f"tcp://127.0.0.1:{echo.port}"], f"scm:127.0.0.1:{echo2.port}")
    assert got == {"scm": f"ERR {DENIED}"}
    got = probe(who, box, ["--net-allow", f"tcp://127.0.0.1:{echo.port}"], f"scm:127.0.0.1:{echo.port}")
    assert got == {"scm": "OK ping"}


def test_a_socket_inherited_as_stdin_is_policed_like_any_other(who, box, echo, echo2):
    # sandlock passes the command fds 0, 1 and 2 only: a socket can come in as one of them
    cli = who._cli
    for port, expected in ((echo2.port, f"ERR {DENIED}"), (echo.port, "OK ping")):
        with socket.socket() as s:
            r = subprocess.run(cli.command([*box.options, "--net-allow", f"tcp://127.0.0.1:{echo.port}", "--",
                                            box.python, "-c", PROBE, f"inherited:127.0.0.1:{port}:0"], who.is_user),
                               stdin=s.fileno(), capture_output=True, text=True, timeout=60, cwd="/",
                               env=cli.environment(who.is_user, None))
        assert r.stdout == f"inherited {expected}\n", r.stderr
    assert echo2.received == []


# --- binds and listens ------------------------------------------------------------------------------

def test_binding_and_listening_need_net_allow_bind(who, box):
    port = free_port()
    got = probe(who, box, [], f"listen:127.0.0.1:{port}", f"udpbind:127.0.0.1:{port}", "listen0:127.0.0.1:0",
                "bind0:127.0.0.1:0")
    assert got == {"listen": f"ERR {DENIED}", "udpbind": f"ERR {DENIED}", "listen0": f"ERR {DENIED}",
                   "bind0": "OK bound"}
    got = probe(who, box, ["--net-allow-bind", str(port)], f"listen:127.0.0.1:{port}", f"udpbind:127.0.0.1:{port}",
                "listen0:127.0.0.1:0")
    assert got == {"listen": f"OK listening on {port}", "udpbind": "OK bound", "listen0": f"ERR {DENIED}"}
    got = probe(who, box, ["--net-allow-bind", "*"], "listen0:127.0.0.1:0")
    assert got["listen0"] == "OK listening"
    got = probe(who, box, ["--net-deny-bind", str(port)], f"listen:127.0.0.1:{port}", "listen0:127.0.0.1:0")
    assert got == {"listen": f"ERR {DENIED}", "listen0": "OK listening"}


PING_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


@pytest.fixture
def ping_sockets(who) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """ICMP "ping" sockets usable by `who`'s gid for the test (net.ipv4.ping_group_range,
    widened by the root test process and put back; else the kernel refuses them itself)."""
    before = PING_RANGE.read_text()
    low, high = map(int, before.split())
    if low <= who.gid <= high:
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("net.ipv4.ping_group_range excludes this gid and the suite is not root")
    PING_RANGE.write_text(f"{min(low, who.gid) if low <= high else who.gid} {max(high, who.gid)}\n")
    try:
        yield
    finally:
        PING_RANGE.write_text(before)


def test_icmp_sockets_need_an_icmp_rule(who, box, ping_sockets):
    got = probe(who, box, ["--net-allow", "127.0.0.1"], "icmpsock:127.0.0.1:0", "icmp:127.0.0.1:0")
    assert got == {"icmpsock": f"ERR {DENIED}", "icmp": f"ERR {DENIED}"}
    got = probe(who, box, ["--net-allow", "icmp://127.0.0.1"], "icmp:127.0.0.1:0", "icmp#other:127.0.0.2:0")
    assert got == {"icmp": "OK pong", "icmp#other": f"ERR {DENIED}"}


API = r"""
import sys, sandlock
port, other, probe = sys.argv[1], sys.argv[2], sys.argv[3]
box = sandlock.Sandbox(fs_readable=["/usr", "/lib", "/lib64", "/etc"], net_allow=["tcp://127.0.0.1:" + port])
r = box.run(["/usr/bin/python3", "-c", probe, "tcp:127.0.0.1:" + port, "tcp#other:127.0.0.1:" + other])
sys.stdout.write(r.stdout.decode())
try:
    sandlock.Sandbox(net_allow=["tcp://[::1"])
except sandlock.PolicyError as exc:
    print("PolicyError", exc)
"""


def test_the_api_takes_the_same_rules_as_keywords(who, echo, echo2):
    r = who.python(API, args=[str(echo.port), str(echo2.port), PROBE])
    assert r.stdout.decode().splitlines() == ["tcp OK ping", f"tcp#other ERR {DENIED}",
                                               "PolicyError net_allow 'tcp://[::1': '[' without ']'"], r.stderr
    assert echo2.received == []
