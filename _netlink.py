"""AF_NETLINK for the sandbox: a read-only NETLINK_ROUTE view (README "Network views").

The filter refuses every netlink protocol but NETLINK_ROUTE (EPROTONOSUPPORT,
on register values) and notifies socket(AF_NETLINK, *, NETLINK_ROUTE).  The
command never gets a real netlink socket: do_socket gives it one end of an
AF_UNIX SOCK_SEQPACKET pair (installed with SECCOMP_IOCTL_NOTIF_ADDFD); the
supervisor keeps the other end and answers what arrives there (`Netlink`,
one thread for all of a run's sockets, at most SOCKETS_MAX of them at once):

- requests of a GET kind are answered: with no network allowed
  (`network_allowed(policy)` False), from a made-up namespace holding only
  lo (127.0.0.1/8, ::1/128, no route); with some network, by the kernel (the
  request is repeated on the supervisor's own NETLINK_ROUTE socket and the
  replies are passed on with the command's port id);
- every other request (RTM_NEW*, RTM_DEL*, RTM_SET*) is answered EPERM;
- bind, connect, getsockname, getpeername, sendto and sendmsg on such a
  socket are trapped anyway (_netops does them on behalf for real sockets):
  `hook` answers them with netlink's shapes (struct sockaddr_nl); sendmmsg
  is EOPNOTSUPP;
- recv, recvmsg and read are not trapped: the command reads the pair, and
  a blocking read waits for the answer.  Only a recv with MSG_DONTWAIT
  (musl's getifaddrs sends, then reads so) is trapped: `do_recv` answers
  what is pending on an emulated socket first, then lets the call go on.  The
  supervisor's end is bound to an abstract name whose bytes, read as a
  struct sockaddr_nl, say nl_pid 0 (the kernel), so libraries that check
  the sender of what they receive (glibc, iproute2, busybox) accept it.

Interface ioctls on any socket (SIOCGIFCONF, SIOCGIFINDEX, SIOCGIFHWADDR,
..., the 0x89xx and wireless 0x8Bxx ranges) answer the same question; with
no network they are trapped and answered for lo only (`do_ioctl`): other
names ENODEV, the ARP cache empty (ENXIO), setters EPERM.

Nothing queues in sandlock: replies go straight into the pair's socket
buffer (the kernel's bound); when it is full, the rest of that reply is
dropped, as the kernel drops netlink messages a reader leaves unread.
Multicast groups are accepted by bind and never deliver anything.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import _socket as socket  # socket's C module: the same calls, without enum (README "Start-up")
import stat
import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterator, List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _threads  # threading's parts, without its import (README "Start-up")
from ._errors import os_error
from ._netpolicy import network_allowed
from ._structs import IFREQ, SIOC_FIRST, SIOC_PER_SOCKET_END, SIOCGARP, SIOCGIFCONF, SIOCGIFNAME, SIOCGRARP  # noqa: F401
from ._notif import CONTINUE, Call, Context, Errno, Fd, Reply, Value, read_mem, tgid_of, write_mem

AF_NETLINK, NETLINK_ROUTE = 16, 0
SOCK_DGRAM, SOCK_RAW, SOCK_TYPE_MASK = 2, 3, 0xF
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
MSG_DONTWAIT = 0x40
SOCKETS_MAX = 64          # emulated netlink sockets alive at once per run (ENOBUFS beyond)
REQUEST_MAX = 1 << 16     # bytes of one request (EMSGSIZE beyond, as a netlink socket's send buffer says)
DATAGRAM = 3584           # bytes of messages per reply datagram (under the kernel's NLMSG_GOODSIZE)
REAL_TIMEOUT = 2.0        # seconds to wait for the kernel's answer (some network allowed)

NLMSG = struct.Struct("=IHHII")   # struct nlmsghdr
SOCKADDR_NL = struct.Struct("=HHII")  # struct sockaddr_nl
RTATTR = struct.Struct("=HH")
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP, NLM_F_CAPPED = 0x1, 0x2, 0x4, 0x300, 0x100
RTM_BASE, RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 16, 18, 20, 22
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10


# --- the made-up namespace: lo only (uapi linux/rtnetlink.h, if_link.h, if_addr.h) ------------

def _attr(kind: int, value: bytes) -> bytes:
    item = RTATTR.pack(RTATTR.size + len(value), kind) + value
    return item + bytes(-len(item) % 4)


def _lo_link() -> bytes:
    """RTM_NEWLINK body for lo: struct ifinfomsg and its attributes, as the kernel gives them."""
    u8, u32 = (lambda v: struct.pack("=B", v)), (lambda v: struct.pack("=I", v))
    flags = 0x1 | 0x8 | 0x40 | 0x10000  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP
    body = struct.pack("=BxHiII", AF_UNSPEC, 772, 1, flags, 0)  # ARPHRD_LOOPBACK, ifindex 1
    for kind, value in ((3, b"lo\0"), (13, u32(1000)), (16, u8(0)), (17, u8(0)), (4, u32(65536)),
                        (27, u32(0)), (6, b"noqueue\0"), (33, u8(1)), (1, bytes(6)), (2, bytes(6))):
        body += _attr(kind, value)  # IFNAME TXQLEN OPERSTATE LINKMODE MTU GROUP QDISC CARRIER ADDRESS BROADCAST
    return body


def _lo_addr(family: int) -> bytes:
    """RTM_NEWADDR body for 127.0.0.1/8 or ::1/128 on lo (permanent, scope host)."""
    address, prefix = (socket.inet_pton(AF_INET, "127.0.0.1"), 8) if family == AF_INET else \
        (socket.inet_pton(AF_INET6, "::1"), 128)
    body = struct.pack("=BBBBI", family, prefix, 0x80, 254, 1)  # IFA_F_PERMANENT, RT_SCOPE_HOST
    forever = struct.pack("=IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0)  # struct ifa_cacheinfo
    attrs = [(1, address)] + ([(2, address), (3, b"lo\0")] if family == AF_INET else [])
    for kind, value in attrs + [(8, struct.pack("=I", 0x80)), (6, forever)]:
        body += _attr(kind, value)  # ADDRESS LOCAL LABEL FLAGS CACHEINFO
    return body


def _virtual_dump(kind: int, body: bytes) -> List[Tuple[int, bytes]]:
    """(type, body) of the messages of a dump of `kind` in the lo-only namespace."""
    if kind == RTM_GETLINK:
        return [(RTM_NEWLINK, _lo_link())]
    if kind == RTM_GETADDR:
        family = body[0] if body else AF_UNSPEC
        return [(RTM_NEWADDR, _lo_addr(f)) for f in (AF_INET, AF_INET6) if family in (AF_UNSPEC, f)]
    return []  # routes, neighbours, rules, qdiscs, ...: none


def _virtual_get(kind: int, body: bytes) -> List[Tuple[int, bytes]]:
    """A GET of one object (no NLM_F_DUMP) in the lo-only namespace; ENODEV, EADDRNOTAVAIL, ..."""
    if kind == RTM_GETLINK:
        index = struct.unpack_from("=i", body, 4)[0] if len(body) >= 16 else 0
        name = _attr_value(body[16:], 3)
        if (index == 1 and name in (None, b"lo")) or (index == 0 and name == b"lo"):
            return [(RTM_NEWLINK, _lo_link())]
        raise os_error(errno.ENODEV)
    raise os_error(errno.EOPNOTSUPP)


def _attr_value(attrs: bytes, kind: int) -> Optional[bytes]:
    offset = 0
    while offset + RTATTR.size <= len(attrs):
        length, found = RTATTR.unpack_from(attrs, offset)
        if length < RTATTR.size:
            return None
        if found == kind:
            return attrs[offset + RTATTR.size:offset + length].rstrip(b"\0")
        offset += (length + 3) & ~3
    return None


# --- one emulated socket and the run's set of them ----------------------------------------

class Emulated:
    """One NETLINK_ROUTE socket of the command: our end of its pair and its netlink address."""

    __slots__ = ("ours", "inode", "portid", "groups")

    def __init__(self, ours: socket.socket, inode: int, portid: int) -> None:
        self.ours, self.inode, self.portid, self.groups = ours, inode, portid, 0


def _messages(data: bytes) -> Iterator[Tuple[int, int, int, int, bytes, bytes]]:
    """(type, flags, seq, pid, body, whole message) of each netlink message of a datagram."""
    offset = 0
    while offset + NLMSG.size <= len(data):
        length, kind, flags, seq, pid = NLMSG.unpack_from(data, offset)
        if length < NLMSG.size or offset + length > len(data):
            return
        yield kind, flags, seq, pid, data[offset + NLMSG.size:offset + length], data[offset:offset + length]
        offset += (length + 3) & ~3


def _message(kind: int, flags: int, seq: int, portid: int, body: bytes) -> bytes:
    out = NLMSG.pack(NLMSG.size + len(body), kind, flags, seq, portid) + body
    return out + bytes(-len(out) % 4)


def _error(code: int, seq: int, portid: int, request: bytes) -> bytes:
    """NLMSG_ERROR: an ACK (code 0, the request's header only) or -errno and the request."""
    if code == 0:
        return _message(NLMSG_ERROR, NLM_F_CAPPED, seq, portid, struct.pack("=i", 0) + request[:NLMSG.size])
    return _message(NLMSG_ERROR, 0, seq, portid, struct.pack("=i", -code) + request)


class Netlink:
    """A run's emulated NETLINK_ROUTE sockets, answered by one thread (started on demand,
    ended when no socket is left or the run is over)."""

    def __init__(self, real: bool) -> None:
        self.real = real  # some network allowed: the kernel answers GETs
        self.sockets: Dict[int, Emulated] = {}  # inode of the command's end -> socket
        self._by_fd: Dict[int, Emulated] = {}
        self._lock = _threads.Lock()
        self._serving = _threads.Lock()  # one answers at a time (the thread, or do_recv)
        self._poll = select.epoll()
        self._thread: Optional[_threads.Started] = None
        self._over = False
        self._ports = 0
        self._kernel: Optional[socket.socket] = None

    def create(self, tgid: int, nonblock: bool) -> int:
        """Make an emulated socket; our fd of the command's end (to install in the command)."""
        with self._lock:
            if len(self.sockets) >= SOCKETS_MAX or self._over:
                raise os_error(errno.ENOBUFS, "too many netlink sockets in the sandbox")
            theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                _bind_as_kernel(ours)
                # O_NONBLOCK by fcntl, not setblocking (an ioctl: see _supervisor._supervise)
                _set_nonblocking(ours.fileno())
                if nonblock:
                    _set_nonblocking(theirs.fileno())
                self._ports += 1
                # the kernel's choice: the process id for its first socket, then negative numbers
                portid = tgid if self._ports == 1 else (-4096 - self._ports) & 0xFFFFFFFF
                one = Emulated(ours, os.fstat(theirs.fileno()).st_ino, portid)
                self._poll.register(ours.fileno(), select.EPOLLIN)
            except BaseException:
                theirs.close()
                ours.close()
                raise
            self.sockets[one.inode] = one
            self._by_fd[ours.fileno()] = one
            if self._thread is None:
                self._thread = _threads.start(self._serve, (), "sandlock-netlink")
            return theirs.detach()

    def find(self, fd: int) -> Optional[Emulated]:
        """The emulated socket our duplicate `fd` of a command's fd is, if it is one."""
        try:
            return self.sockets.get(os.fstat(fd).st_ino)
        except OSError:
            return None

    def close(self) -> None:
        with self._lock:
            self._over = True
            for one in self.sockets.values():
                one.ours.close()
            self.sockets.clear()
            self._by_fd.clear()
            if self._kernel is not None:
                self._kernel.close()
        # the thread ends by itself (it sees _over) and closes the epoll fd

    # -- the thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._over or not self.sockets:
                    self._thread = None
                    if self._over:
                        self._poll.close()
                    return
            try:
                events = self._poll.poll(0.5)
            except OSError:
                continue
            for fd, _ in events:
                with self._lock:
                    one = self._by_fd.get(fd)
                if one is not None:
                    self.settle(one)

    def settle(self, one: Emulated) -> None:
        """Answer every request pending on `one`."""
        with self._serving:
            while self._on_request(one):
                pass

    def _on_request(self, one: Emulated) -> bool:
        """Answer the next request datagram; False when none is left or the socket is gone."""
        if one.ours.fileno() < 0:
            return False
        try:
            data = one.ours.recv(REQUEST_MAX)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # every copy of the command's end is closed
            with self._lock:
                self.sockets.pop(one.inode, None)
                self._by_fd.pop(one.ours.fileno(), None)
                one.ours.close()
            return False
        for kind, flags, seq, _, body, whole in _messages(data):
            if kind < RTM_BASE:
                continue  # NOOP, DONE, ...: nothing to answer
            try:
                replies = self._answer(one, kind, flags, seq, body, whole)
            except OSError as exc:
                replies = [_error(exc.errno or errno.EINVAL, seq, one.portid, whole)]
            if not _send_all(one.ours, replies):
                break  # the command does not read: the rest is dropped
        return True

    def _answer(self, one: Emulated, kind: int, flags: int, seq: int, body: bytes, whole: bytes) -> List[bytes]:
        if not flags & NLM_F_REQUEST:
            # the kernel answers no message that is not a request, but an ACK if asked
            # (netlink_rcv_skb); asking it would wait REAL_TIMEOUT for nothing, per message,
            # in the notification loop when do_recv settles (every trapped call waits)
            return [_error(0, seq, one.portid, whole)] if flags & NLM_F_ACK else []
        if (kind - RTM_BASE) % 4 != 2:
            raise os_error(errno.EPERM, "netlink is read-only in the sandbox")  # NEW, DEL, SET
        if self.real:
            self._kernel_answer(one, flags, seq, whole)
            return []
        dump = bool(flags & NLM_F_DUMP)
        found = _virtual_dump(kind, body) if dump else _virtual_get(kind, body)
        multi = NLM_F_MULTI if dump else 0
        out = [_message(t, multi, seq, one.portid, b) for t, b in found]
        if dump:
            out.append(_message(NLMSG_DONE, NLM_F_MULTI, seq, one.portid, struct.pack("=i", 0)))
        elif flags & NLM_F_ACK:
            out.append(_error(0, seq, one.portid, whole))
        return out

    def _kernel_answer(self, one: Emulated, flags: int, seq: int, whole: bytes) -> None:
        """Ask the kernel on our own socket and pass its answer on with the command's port
        id, one datagram of the kernel's at a time (a dump may be long: nothing piles up
        here; what the command's side cannot take is dropped)."""
        if self._kernel is None:
            self._kernel = socket.socket(AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            self._kernel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                    struct.pack("=qq", int(REAL_TIMEOUT), 0))  # then EAGAIN
        kernel = self._kernel
        kernel.send(whole)
        dump = bool(flags & NLM_F_DUMP)
        room = True
        while True:
            out, done = [], False
            for kind, rflags, rseq, _, body, _ in _messages(kernel.recv(1 << 16)):
                if rseq != seq:
                    continue  # a late answer to an earlier request
                out.append(_message(kind, rflags, seq, one.portid, body))
                if kind in (NLMSG_DONE, NLMSG_ERROR):
                    done = True
                elif not dump and not rflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    done = True  # the one answer; with NLM_F_ACK the ACK follows
            room = room and _send_all(one.ours, out)
            if done:
                return


def _set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _bind_as_kernel(ours: socket.socket) -> None:
    """Bind our end to an abstract name that reads as struct sockaddr_nl with nl_pid 0:
    sun_path "\\0" X "\\0\\0\\0\\0" YYYY (12 bytes of address, as sockaddr_nl has)."""
    for _ in range(64):
        random = os.urandom(5)
        try:
            ours.bind(b"\0" + random[:1] + bytes(4) + random[1:])
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise os_error(errno.EADDRINUSE, "no free abstract name for a netlink socket")


def _send_all(ours: socket.socket, messages: List[bytes]) -> bool:
    """Send messages in datagrams of at most DATAGRAM bytes (whole messages); False if the
    command's receive side is full (the rest is dropped)."""
    batch = b""
    for message in messages + [b""]:
        if batch and (not message or len(batch) + len(message) > DATAGRAM):
            try:
                ours.send(batch)
            except OSError:
                return False
            batch = b""
        batch += message
    return True


# --- trapped calls --------------------------------------------------------------------------

def do_socket(ctx: Context, call: Call) -> Reply:
    """socket(AF_NETLINK, type, NETLINK_ROUTE): an emulated socket (the filter refuses the
    other protocols and notifies only these).  Layout: which = domain, flags = type,
    mode = protocol."""
    if call.which != AF_NETLINK or call.mode != NETLINK_ROUTE:
        return Errno(errno.EPROTONOSUPPORT)
    if call.flags & SOCK_TYPE_MASK not in (SOCK_RAW, SOCK_DGRAM):
        return Errno(errno.ESOCKTNOSUPPORT)  # as netlink_create says
    if call.flags & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        return Errno(errno.EINVAL)
    netlink = ctx.netlink
    if netlink is None:
        netlink = ctx.netlink = Netlink(network_allowed(ctx.policy))
    fd = netlink.create(tgid_of(call.tid), bool(call.flags & SOCK_NONBLOCK))
    return Fd(fd, bool(call.flags & SOCK_CLOEXEC))


def do_recv(ctx: Context, call: Call) -> Reply:
    """recvfrom/recvmsg/recvmmsg with MSG_DONTWAIT: on an emulated netlink socket, the
    requests sent so far are answered first, as the kernel answers before send returns."""
    netlink = ctx.netlink
    if netlink is not None and netlink.sockets:
        try:
            dup = ctx.tracees.getfd(call.tid, call.fd)
        except OSError:
            dup = -1
        if dup >= 0:
            try:
                one = netlink.find(dup)
                if one is not None:
                    netlink.settle(one)
            finally:
                os.close(dup)
    # CONTINUE: nothing is decided here (a recv on any fd of the command is allowed by
    # the filter); the trap only orders the answers before the read.
    return CONTINUE


# --- interface ioctls (uapi linux/sockios.h, net/if.h) ---------------------------------------

_LO_IN = struct.pack("=HH4s8x", AF_INET, 0, socket.inet_aton("127.0.0.1"))
_IN = (lambda a: struct.pack("=HH4s8x", AF_INET, 0, socket.inet_aton(a)))  # noqa: E731
_INT = (lambda v: struct.pack("=i", v))  # noqa: E731
_LO_ANSWERS = {  # ioctl -> what lo's struct ifreq holds after its name
    0x8913: struct.pack("=H", 0x49),     # SIOCGIFFLAGS: UP LOOPBACK RUNNING
    0x8915: _LO_IN,                       # SIOCGIFADDR
    0x8917: _LO_IN,                       # SIOCGIFDSTADDR
    0x8919: _IN("0.0.0.0"),               # SIOCGIFBRDADDR
    0x891b: _IN("255.0.0.0"),             # SIOCGIFNETMASK
    0x891d: _INT(0),                      # SIOCGIFMETRIC
    0x8921: _INT(65536),                  # SIOCGIFMTU
    0x8927: struct.pack("=H14x", 772),    # SIOCGIFHWADDR: ARPHRD_LOOPBACK, 00:00:00:00:00:00
    0x8933: _INT(1),                      # SIOCGIFINDEX
    0x8935: _INT(0),                      # SIOCGIFPFLAGS
    0x8942: _INT(1000),                   # SIOCGIFTXQLEN
    0x8970: bytes(24),                    # SIOCGIFMAP
}


def do_ioctl(ctx: Context, call: Call) -> Reply:
    """An interface ioctl (0x8910-0x89ff, 0x8b00-0x8bff) on a socket when the policy allows
    no network: answered for lo only.  Layout: flags = request, ptr = argument."""
    request = call.flags
    dup = ctx.tracees.getfd(call.tid, call.fd)
    try:
        is_socket = stat.S_ISSOCK(os.fstat(dup).st_mode)
    finally:
        os.close(dup)
    if not is_socket:
        # answered here, not continued: a thread could dup2 a socket onto this fd number
        # before the kernel's call, which would then describe the host's interfaces; for
        # these numbers every other file the sandbox can hold gives ENOTTY
        return Errno(errno.ENOTTY)
    if request == SIOCGIFCONF:
        return _ifconf(ctx, call)
    if request in (SIOCGARP, SIOCGRARP):
        return Errno(errno.ENXIO)  # no neighbour
    ifreq = read_mem(ctx.tracees, call.tid, call.ptr, IFREQ)
    if request == SIOCGIFNAME:
        if struct.unpack_from("=i", ifreq, 16)[0] != 1:
            return Errno(errno.ENODEV)
        write_mem(ctx.tracees, call.tid, call.ptr, b"lo".ljust(16, b"\0"))
        return Value(0)
    if ifreq[:16].split(b"\0", 1)[0] != b"lo":
        return Errno(errno.ENODEV)
    answer = _LO_ANSWERS.get(request)
    if answer is None:
        return Errno(errno.EOPNOTSUPP if request & 0xFF00 == 0x8B00 or request >= 0x89E0 else errno.EPERM)
    write_mem(ctx.tracees, call.tid, call.ptr + 16, answer)
    return Value(0)


def _ifconf(ctx: Context, call: Call) -> Reply:
    """SIOCGIFCONF: struct ifconf {int ifc_len; char *ifc_buf;} and lo's one struct ifreq."""
    length, buf = struct.unpack("=i4xQ", read_mem(ctx.tracees, call.tid, call.ptr, 16))
    if buf and length >= IFREQ:
        write_mem(ctx.tracees, call.tid, buf, b"lo".ljust(16, b"\0") + _LO_IN.ljust(IFREQ - 16, b"\0"))
    write_mem(ctx.tracees, call.tid, call.ptr, _INT(IFREQ if not buf or length >= IFREQ else 0))
    return Value(0)


HOOKED = ("connect", "bind", "getsockname", "getpeername", "sendto", "sendmsg", "sendmmsg")


def hook(name: str, op: Callable[[Context, Call], Reply]) -> Callable[[Context, Call], Reply]:
    """op, or for the socket calls in HOOKED, op unless the fd is an emulated netlink socket."""
    if name not in HOOKED:
        return op
    emulated = _EMULATED[name]

    def hooked(ctx: Context, call: Call) -> Reply:
        netlink = ctx.netlink
        if netlink is None or not netlink.sockets:
            return op(ctx, call)
        try:
            dup = ctx.tracees.getfd(call.tid, call.fd)
        except OSError:
            return op(ctx, call)
        try:
            one = netlink.find(dup)
            return op(ctx, call) if one is None else emulated(ctx, call, one, dup)
        finally:
            os.close(dup)
    hooked.__name__ = getattr(op, "__name__", name)
    return hooked


def _address(ctx: Context, call: Call, ptr: int, size: int) -> Tuple[int, int, int]:
    """(family, nl_pid, nl_groups) of a struct sockaddr_nl the command passes."""
    if size < 2 or size > 128:
        raise os_error(errno.EINVAL)
    raw = read_mem(ctx.tracees, call.tid, ptr, min(size, SOCKADDR_NL.size))
    family = struct.unpack_from("=H", raw)[0]
    if family != AF_NETLINK:
        return family, 0, 0
    if len(raw) < SOCKADDR_NL.size:
        raise os_error(errno.EINVAL)
    _, _, pid, groups = SOCKADDR_NL.unpack(raw)
    return family, pid, groups


def _bind(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    family, pid, groups = _address(ctx, call, call.ptr, call.size)
    if family != AF_NETLINK:
        return Errno(errno.EINVAL)
    if pid:
        one.portid = pid
    one.groups = groups  # accepted; no event is ever delivered
    return Value(0)


def _connect(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    family, pid, groups = _address(ctx, call, call.ptr, call.size)
    if family == AF_UNSPEC:
        return Value(0)
    if family != AF_NETLINK:
        return Errno(errno.EINVAL)
    return Value(0) if not pid and not groups else Errno(errno.EPERM)  # only the kernel


def _sockname(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    peer = call.nr == ctx.names_to_numbers().get("getpeername")
    address = SOCKADDR_NL.pack(AF_NETLINK, 0, 0 if peer else one.portid, 0 if peer else one.groups)
    size = struct.unpack("=I", read_mem(ctx.tracees, call.tid, call.ptr2, 4))[0]
    if size > 0x7FFFFFFF:
        return Errno(errno.EINVAL)
    if size:
        write_mem(ctx.tracees, call.tid, call.ptr, address[:size])
    write_mem(ctx.tracees, call.tid, call.ptr2, struct.pack("=I", len(address)))
    return Value(0)


def _send(dup: int, data: bytes) -> Reply:
    sock = socket.socket(fileno=os.dup(dup))
    try:
        return Value(sock.send(data, socket.MSG_DONTWAIT))
    except OSError as exc:
        return Errno(exc.errno or errno.EIO)
    finally:
        sock.close()


def _check_destination(ctx: Context, call: Call, ptr: int, size: int) -> None:
    if not ptr:
        return
    family, pid, groups = _address(ctx, call, ptr, size)
    if family != AF_NETLINK:
        raise os_error(errno.EINVAL)
    if pid or groups:
        raise os_error(errno.EPERM, "only the kernel answers in the sandbox")


def _sendto(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    _check_destination(ctx, call, call.ptr2, call.mask)
    if call.size > REQUEST_MAX:
        return Errno(errno.EMSGSIZE)
    data = read_mem(ctx.tracees, call.tid, call.ptr, call.size) if call.size else b""
    return _send(dup, data)


_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_IOVEC = struct.Struct("=QQ")


def _sendmsg(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    name, namelen, iov, iovlen, _, _, _ = _MSGHDR.unpack(read_mem(ctx.tracees, call.tid, call.ptr, _MSGHDR.size))
    if iovlen > 1024:
        return Errno(errno.EMSGSIZE)
    _check_destination(ctx, call, name if namelen else 0, namelen)
    data = b""
    if iovlen:
        vectors = list(_IOVEC.iter_unpack(read_mem(ctx.tracees, call.tid, iov, iovlen * _IOVEC.size)))
        if sum(length for _, length in vectors) > REQUEST_MAX:
            return Errno(errno.EMSGSIZE)
        for base, length in vectors:
            if length:
                data += read_mem(ctx.tracees, call.tid, base, length)
    return _send(dup, data)


def _unsupported(ctx: Context, call: Call, one: Emulated, dup: int) -> Reply:
    return Errno(errno.EOPNOTSUPP)


_EMULATED: Dict[str, Callable[[Context, Call, Emulated, int], Reply]] = {
    "connect": _connect, "bind": _bind, "getsockname": _sockname, "getpeername": _sockname,
    "sendto": _sendto, "sendmsg": _sendmsg, "sendmmsg": _unsupported,
}
