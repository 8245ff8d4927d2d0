"""In-process unit tests of the socket handlers (_netops, _netlink), host mode: each table row
driven through decode -> check -> do with a fake context (tests/fakectx.py), against real
sockets of the test process on loopback and in a test directory.  Every refusal has its
control: the same call allowed by the policy gets through.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path
from typing import Tuple

import pytest

from fakectx import CONTINUE, Errno, Value
from fakectx import drive, fake  # noqa: F401  (fixture)

AF_NETLINK, NETLINK_ROUTE, NETLINK_AUDIT = 16, 0, 9
SOCK_RAW = 3
MSG_DONTWAIT = 0x40
RTM_GETLINK, NLM_F_REQUEST, NLM_F_DUMP = 18, 1, 0x300
SIOCGIFNAME, SIOCGIFMTU = 0x8910, 0x8921
MSGHDR = struct.Struct("=QI4xQQQQi4x")
IOVEC = struct.Struct("=QQ")


def sockaddr_un(path: bytes) -> bytes:
    return struct.pack("=H", socket.AF_UNIX) + path + b"\0"


def sockaddr_in(port: int, host: str = "127.0.0.1") -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def udp_receiver() -> Tuple[socket.socket, int]:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    return r, r.getsockname()[1]


def received(r: socket.socket) -> list:
    out = []
    while True:
        try:
            out.append(r.recv(100))
        except BlockingIOError:
            return out


@pytest.mark.rows("connect")
def test_connect_reaches_unix_sockets_under_a_write_rule_and_allowed_tcp_ports_only(fake, tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "out").mkdir()
    servers = []
    for where in ("w", "out"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / where / "sock"))
        s.listen(4)
        servers.append(s)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(4)
    port, other_port = tcp.getsockname()[1], other.getsockname()[1]
    try:
        ctx = fake(writable=[tmp_path / "w"], net_allow=(f"tcp://127.0.0.1:{port}",))
        for where, expected in (("out", Errno(errno.EACCES)), ("w", Value(0))):
            fd = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
            address = ctx.mem.put(sockaddr_un(os.fsencode(tmp_path / where / "sock")))
            assert drive(ctx, "connect", fd, address, len(sockaddr_un(os.fsencode(tmp_path / where / "sock")))) == expected
        servers[0].settimeout(5)
        servers[0].accept()[0].close()
        fd = ctx.fds.add(socket.socket().detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(other_port)), 16) == Errno(errno.EACCES)
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(port)), 16) == Value(0)
        tcp.settimeout(5)
        tcp.accept()[0].close()
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(port)), 200) == Errno(errno.EINVAL)
    finally:
        for s in servers + [tcp, other]:
            s.close()


def sockaddr_in6(port: int, host: str) -> bytes:
    return struct.pack("=H", socket.AF_INET6) + struct.pack("!H", port) + bytes(4) + socket.inet_pton(
        socket.AF_INET6, host) + bytes(4)


@pytest.mark.rows("connect")
def test_a_tcp_connect_reaches_only_what_was_decided_whatever_the_spelling_or_blocking(fake) -> None:
    listeners = {}
    for host in ("127.0.0.1", "127.0.0.2"):  # one port number on both addresses
        s = socket.socket()
        s.bind((host, listeners["127.0.0.1"].getsockname()[1] if listeners else 0))
        s.listen(4)
        s.settimeout(5)
        listeners[host] = s
    port = listeners["127.0.0.1"].getsockname()[1]
    try:
        ctx = fake(net_allow=(f"tcp://127.0.0.1:{port}",))
        # 0.0.0.0 from a socket bound to 127.0.0.2 reaches the address decided (127.0.0.1), not 127.0.0.2
        client = socket.socket()
        client.bind(("127.0.0.2", 0))
        fd = ctx.fds.add(client.detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(port, "0.0.0.0")), 16) == Value(0)
        conn, peer = listeners["127.0.0.1"].accept()
        conn.close()
        assert peer[0] == "127.0.0.2"
        # control: 127.0.0.2 itself is refused
        fd = ctx.fds.add(socket.socket().detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(port, "127.0.0.2")), 16) == Errno(errno.EACCES)
        # an IPv6 socket: the v4-mapped spelling is the v4 address, for the port allowed only
        fd = ctx.fds.add(socket.socket(socket.AF_INET6).detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in6(port + 1, "::ffff:127.0.0.1")), 28) == \
            Errno(errno.EACCES)
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in6(port, "::ffff:127.0.0.1")), 28) == Value(0)
        listeners["127.0.0.1"].accept()[0].close()
        # a non-blocking socket is connected at once: EINPROGRESS, then connected
        nb = socket.socket()
        nb.setblocking(False)
        fd = ctx.fds.add(nb.detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(sockaddr_in(port)), 16) in (Errno(errno.EINPROGRESS), Value(0))
        listeners["127.0.0.1"].accept()[0].close()
        # AF_UNSPEC reaches nobody: decided by no rule, answered by the kernel
        fd = ctx.fds.add(socket.socket().detach())
        assert drive(ctx, "connect", fd, ctx.mem.put(struct.pack("=H", socket.AF_UNSPEC) + bytes(14)), 16) == Value(0)
        assert drive(ctx, "connect", fd, ctx.mem.put(struct.pack("=H", socket.AF_UNIX) + bytes(14)), 16) == \
            Errno(errno.EAFNOSUPPORT)
    finally:
        for s in listeners.values():
            s.close()


@pytest.mark.rows("sendto")
def test_sendto_sends_to_an_allowed_udp_port_and_nothing_elsewhere(fake) -> None:
    allowed, port = udp_receiver()
    denied, other = udp_receiver()
    try:
        ctx = fake(net_allow=(f"udp://127.0.0.1:{port}",))
        fd = ctx.fds.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach())
        data = ctx.mem.put(b"ping")
        assert drive(ctx, "sendto", fd, data, 4, 0, ctx.mem.put(sockaddr_in(other)), 16) == Errno(errno.EACCES)
        assert drive(ctx, "sendto", fd, data, 4, 0, ctx.mem.put(sockaddr_in(port)), 16) == Value(4)
        assert received(allowed) == [b"ping"] and received(denied) == []
    finally:
        allowed.close()
        denied.close()


def msghdr(ctx, name: bytes, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    iov = ctx.mem.put(IOVEC.pack(ctx.mem.put(data), len(data)))
    return MSGHDR.pack(ctx.mem.put(name), len(name), iov, 1, 0, 0, 0)


@pytest.mark.rows("sendmsg", "sendmmsg")
def test_sendmsg_and_sendmmsg_send_nothing_when_one_destination_is_refused(fake) -> None:
    allowed, port = udp_receiver()
    denied, other = udp_receiver()
    try:
        ctx = fake(net_allow=(f"udp://127.0.0.1:{port}",))
        fd = ctx.fds.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach())
        assert drive(ctx, "sendmsg", fd, ctx.mem.put(msghdr(ctx, sockaddr_in(other), b"no")), 0) == Errno(errno.EACCES)
        assert drive(ctx, "sendmsg", fd, ctx.mem.put(msghdr(ctx, sockaddr_in(port), b"one")), 0) == Value(3)
        assert received(allowed) == [b"one"] and received(denied) == []
        mixed = ctx.mem.put(b"".join(msghdr(ctx, sockaddr_in(p), d) + bytes(8)
                                     for p, d in ((port, b"a"), (other, b"b"))))
        assert drive(ctx, "sendmmsg", fd, mixed, 2, 0) == Errno(errno.EACCES)
        assert received(allowed) == [] and received(denied) == []
        both = ctx.mem.put(b"".join(msghdr(ctx, sockaddr_in(port), d) + bytes(8) for d in (b"x", b"yz")))
        assert drive(ctx, "sendmmsg", fd, both, 2, 0) == Value(2)
        assert received(allowed) == [b"x", b"yz"]
        assert ctx.mem.u32(both + MSGHDR.size + 64) == 2  # msg_len of the second message
    finally:
        allowed.close()
        denied.close()


@pytest.mark.rows("bind", "listen")
def test_bind_and_listen_on_ip_ports_follow_net_allow_bind(fake) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = fake(net_allow_bind=(str(port),))
    fd = ctx.fds.add(socket.socket().detach())
    other = port + 1 if port < 65535 else port - 1
    assert drive(ctx, "bind", fd, ctx.mem.put(sockaddr_in(other)), 16) == Errno(errno.EACCES)
    assert drive(ctx, "bind", fd, ctx.mem.put(sockaddr_in(port)), 16) == Value(0)
    assert drive(ctx, "listen", fd, 8) == Value(0)
    with socket.socket() as client:
        client.settimeout(5)
        client.connect(("127.0.0.1", port))  # it listens
    ephemeral = ctx.fds.add(socket.socket().detach())
    assert drive(ctx, "bind", ephemeral, ctx.mem.put(sockaddr_in(0)), 16) == Value(0)  # listen decides
    assert drive(ctx, "listen", ephemeral, 8) == Errno(errno.EACCES)


@pytest.mark.rows("bind", "getsockname", "getpeername")
def test_abstract_names_are_bound_in_the_runs_namespace_and_shown_without_it(fake) -> None:
    ctx = fake()
    fd = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
    assert drive(ctx, "bind", fd, ctx.mem.put(sockaddr_un(b"\0srv")[:-1]), 6) == Value(0)
    assert socket.socket(fileno=os.dup(ctx.fds[fd])).getsockname() == b"\0" + ctx.abstract_prefix + b"srv"
    buf, size = ctx.mem.buffer(128), ctx.mem.put(struct.pack("=I", 128))
    assert drive(ctx, "getsockname", fd, buf, size) == Value(0)
    assert ctx.mem.u32(size) == 6 and ctx.mem.read(buf, 6) == sockaddr_un(b"\0srv")[:-1]
    assert drive(ctx, "listen", fd, 4) == Value(0)
    client = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
    assert drive(ctx, "connect", client, ctx.mem.put(sockaddr_un(b"\0srv")[:-1]), 6) == Value(0)
    assert drive(ctx, "getpeername", client, buf, size) == Value(0)
    assert ctx.mem.read(buf, ctx.mem.u32(size)) == sockaddr_un(b"\0srv")[:-1]
    lone = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
    assert drive(ctx, "getpeername", lone, buf, size) == Errno(errno.ENOTCONN)


@pytest.mark.rows("socket", "recvfrom", "recvmsg", "recvmmsg")
def test_netlink_route_sockets_are_emulated_and_answered_before_a_read(fake) -> None:
    ctx = fake()
    assert drive(ctx, "socket", AF_NETLINK, SOCK_RAW, NETLINK_AUDIT) == Errno(errno.EPROTONOSUPPORT)
    assert drive(ctx, "socket", AF_NETLINK, socket.SOCK_STREAM, NETLINK_ROUTE) == Errno(errno.ESOCKTNOSUPPORT)
    got = drive(ctx, "socket", AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
    assert isinstance(got, Value)
    mine = ctx.fds[got.value]
    for name in ("recvfrom", "recvmsg", "recvmmsg"):
        request = struct.pack("=IHHII", 32, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 7, 0) + bytes(16)
        os.write(mine, request)
        flags_at = {"recvfrom": (got.value, 0, 0, MSG_DONTWAIT), "recvmsg": (got.value, 0, MSG_DONTWAIT),
                    "recvmmsg": (got.value, 0, 0, MSG_DONTWAIT)}[name]
        assert drive(ctx, name, *flags_at) is CONTINUE
        # the answer is there before the command's read: lo, then the end of the dump
        answer = b""
        while True:
            try:
                answer += os.read(mine, 65536) if not answer else socket.socket(fileno=os.dup(mine)).recv(
                    65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        assert b"lo\0" in answer, name
    plain, _ = socket.socketpair()
    assert drive(ctx, "recvfrom", ctx.fds.add(plain.detach()), 0, 0, MSG_DONTWAIT) is CONTINUE


@pytest.mark.rows("ioctl")
def test_interface_ioctls_show_lo_only_and_refuse_files_that_are_not_sockets(fake, tmp_path: Path) -> None:
    ctx = fake()
    sock = ctx.fds.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach())
    ifreq = ctx.mem.put(bytes(16) + struct.pack("=i", 1) + bytes(20))
    assert drive(ctx, "ioctl", sock, SIOCGIFNAME, ifreq) == Value(0)
    assert ctx.mem.read(ifreq, 3) == b"lo\0"
    second = ctx.mem.put(bytes(16) + struct.pack("=i", 2) + bytes(20))
    assert drive(ctx, "ioctl", sock, SIOCGIFNAME, second) == Errno(errno.ENODEV)
    mtu = ctx.mem.put(b"lo".ljust(16, b"\0") + bytes(24))
    assert drive(ctx, "ioctl", sock, SIOCGIFMTU, mtu) == Value(0)
    assert struct.unpack_from("=i", ctx.mem.read(mtu + 16, 4))[0] == 65536
    eth = ctx.mem.put(b"eth0".ljust(16, b"\0") + bytes(24))
    assert drive(ctx, "ioctl", sock, SIOCGIFMTU, eth) == Errno(errno.ENODEV)
    (tmp_path / "f").write_bytes(b"")
    file = ctx.fds.open(tmp_path / "f")
    assert drive(ctx, "ioctl", file, SIOCGIFMTU, mtu) == Errno(errno.ENOTTY)
