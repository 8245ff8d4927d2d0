"""Unit tests of the network views (README "Network views"): _procfs.net_view and _netlink.

No sandbox here: the /proc/net filters run on files of a temporary directory
and this process's own sockets; the netlink emulation on a socket pair, as
the command would use its end.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path
from typing import List, Tuple

import pytest

from sandlock import _netlink
from sandlock import _procfs

TCP = (b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0\n"
       b"   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1194 1 0\n")


def _fd_of(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "table"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def test_a_socket_table_keeps_its_header_and_only_the_rows_of_sockets_the_processes_hold(tmp_path: Path) -> None:
    with socket.socket() as mine:
        inode = os.fstat(mine.fileno()).st_ino
        assert inode in _procfs.socket_inodes([os.getpid()])
        fd = _fd_of(tmp_path, TCP % inode)
        try:
            out = _read(_procfs.net_view(b"tcp", fd, lambda: [os.getpid()], False))
        finally:
            os.close(fd)
    lines = (TCP % inode).splitlines(keepends=True)
    assert out == lines[0] + lines[1]  # byte for byte; the host's 1194 is gone


def test_a_socket_table_read_in_pieces_keeps_rows_across_the_piece_boundaries(tmp_path: Path) -> None:
    header = b"Num       RefCount Protocol Flags    Type St Inode Path\n"
    rows = [b"%016x: 00000002 00000000 00010000 0001 01 %d @name-%d\n" % (n, n, n) for n in range(1, 3000)]
    fd = _fd_of(tmp_path, header + b"".join(rows))
    try:
        kept = b"".join(_procfs._rows(fd, lambda row: _procfs._inode(row, 6) % 7 == 0))
    finally:
        os.close(fd)
    assert kept == header + b"".join(r for n, r in enumerate(rows, 1) if n % 7 == 0)


def test_a_unix_row_shows_the_guests_name_of_a_socket_bound_on_behalf() -> None:
    row = b"0000000000000000: 00000002 00000000 00010000 0001 01 42 /proc/self/fd/9/my sock\n"
    assert _procfs._unix_path(row, {b"/proc/self/fd/9/my sock": b"/tmp/my sock"}) == \
        b"0000000000000000: 00000002 00000000 00010000 0001 01 42 /tmp/my sock\n"
    assert _procfs._unix_path(row, {b"/other": b"/x"}) == row


def test_interface_files_show_only_lo_without_network_and_the_real_file_with_some(tmp_path: Path) -> None:
    dev = (b"Inter-|   Receive   |  Transmit\n face |bytes    packets|bytes    packets\n"
           b"    lo:   20898     373    0    0    0     0          0         0    20898     373    0    0    0     0       0          0\n"
           b"  eth0: 66776742    2899    0    0    0     0          0         0   221380    2777    0    0    0     0       0          0\n")
    fd = _fd_of(tmp_path, dev)
    try:
        out = _read(_procfs.net_view(b"dev", fd, lambda: [], False))
        assert _procfs.net_view(b"dev", fd, lambda: [], True) is None  # the host's file
    finally:
        os.close(fd)
    lines = out.splitlines()
    assert lines[:2] == dev.splitlines()[:2]
    assert [line.split(b":")[0].strip() for line in lines[2:]] == [b"lo"]
    assert lines[2].split(b":")[1].split() == [b"0"] * 16


@pytest.mark.parametrize("name", [b"fib_trie", b"snmp", b"netstat", b"sockstat", b"stat/rt_cache", b"nf_conntrack"])
def test_other_net_files_are_refused(tmp_path: Path, name: bytes) -> None:
    fd = _fd_of(tmp_path, b"host state\n")
    try:
        with pytest.raises(OSError) as caught:
            _procfs.net_view(name, fd, lambda: [], False)
        assert caught.value.errno == errno.EACCES
        with pytest.raises(OSError):
            _procfs.net_view(name, fd, lambda: [], True)
    finally:
        os.close(fd)


# --- the emulated NETLINK_ROUTE socket -------------------------------------------------------

def _request(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _netlink._message(kind, flags, seq, 0, body)


def _replies(sock: socket.socket) -> List[Tuple[int, int, bytes]]:
    """(type, seq, body) of the messages up to NLMSG_DONE or NLMSG_ERROR."""
    out: List[Tuple[int, int, bytes]] = []
    while True:
        data = sock.recv(65536)
        for kind, _, seq, _, body, _ in _netlink._messages(data):
            out.append((kind, seq, body))
            if kind in (_netlink.NLMSG_DONE, _netlink.NLMSG_ERROR):
                return out


@pytest.fixture
def netlink():
    nl = _netlink.Netlink(real=False)
    yield nl
    nl.close()


def _theirs(nl: "_netlink.Netlink") -> socket.socket:
    sock = socket.socket(fileno=nl.create(os.getpid(), False))
    sock.settimeout(5)
    return sock


def test_a_link_dump_answers_lo_and_done_with_the_sockets_port_id(netlink) -> None:
    with _theirs(netlink) as sock:
        sock.send(_request(_netlink.RTM_GETLINK, 1 | _netlink.NLM_F_DUMP, 7, bytes(16)))
        replies = _replies(sock)
    assert [(k, s) for k, s, _ in replies] == [(_netlink.RTM_NEWLINK, 7), (_netlink.NLMSG_DONE, 7)]
    assert _netlink._attr_value(replies[0][2][16:], 3) == b"lo"
    assert struct.unpack_from("=i", replies[0][2], 4)[0] == 1  # ifindex


def test_an_address_dump_honours_the_family(netlink) -> None:
    with _theirs(netlink) as sock:
        sock.send(_request(_netlink.RTM_GETADDR, 1 | _netlink.NLM_F_DUMP, 1, bytes([socket.AF_INET])))
        v4 = _replies(sock)
        sock.send(_request(_netlink.RTM_GETADDR, 1 | _netlink.NLM_F_DUMP, 2, bytes(8)))
        both = _replies(sock)
    assert [body[:2] for kind, _, body in v4 if kind == _netlink.RTM_NEWADDR] == [bytes([socket.AF_INET, 8])]
    assert [body[:2] for kind, _, body in both if kind == _netlink.RTM_NEWADDR] == \
        [bytes([socket.AF_INET, 8]), bytes([socket.AF_INET6, 128])]


@pytest.mark.parametrize("kind", [16, 17, 19, 20, 21, 24, 25, 28, 104])  # NEW/DEL/SET LINK, ADDR, ROUTE, NEXTHOP
def test_a_request_that_is_not_a_get_is_answered_eperm(netlink, kind: int) -> None:
    with _theirs(netlink) as sock:
        sock.send(_request(kind, 1 | 4, 3, bytes(16)))
        (reply,) = _replies(sock)
    assert reply[0] == _netlink.NLMSG_ERROR and struct.unpack_from("=i", reply[2])[0] == -errno.EPERM


def test_the_sender_of_the_answers_reads_as_the_kernel(netlink) -> None:
    """glibc, iproute2 and busybox drop messages whose sender's nl_pid is not 0."""
    with _theirs(netlink) as sock:
        sock.send(_request(_netlink.RTM_GETLINK, 1 | _netlink.NLM_F_DUMP, 1, bytes(16)))
        _, _, _, address = sock.recvmsg(65536)
    raw = address.encode("latin-1") if isinstance(address, str) else address
    assert len(raw) == 10 and raw[2:6] == bytes(4)  # sun_path of 12 bytes of address; nl_pid at 4..8


def test_at_most_sockets_max_emulated_sockets_are_open_at_once(netlink) -> None:
    socks = [_theirs(netlink) for _ in range(_netlink.SOCKETS_MAX)]
    try:
        with pytest.raises(OSError) as caught:
            netlink.create(os.getpid(), False)
        assert caught.value.errno == errno.ENOBUFS
        socks.pop().close()
        for one in list(netlink.sockets.values()):  # the closed one is noticed (EOF)
            netlink.settle(one)
        socks.append(_theirs(netlink))  # control: room again
    finally:
        for sock in socks:
            sock.close()
