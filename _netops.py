"""Socket calls on behalf of the sandbox: connect, sends, bind, listen (docs/design.md
"What Landlock does not cover", "Acting on behalf").

Landlock (up to ABI 7) does not check connect() to a pathname unix socket,
so a sandboxed process could reach any host daemon (ssh-agent, dbus, a
container engine) whose socket it can name.  connect is therefore always
trapped and performed by the supervisor on a private duplicate of the
tracee's socket (pidfd_getfd), with the address read once:

- a pathname unix socket is connected only when the socket file lies under
  a write rule (DAC wants write permission on it too);
- an abstract unix socket is connected by the supervisor thread, whose
  Landlock domain carries the abstract-socket scope (ABI >= 6), so sockets
  of processes outside the sandbox stay out of reach; without scopes it is
  refused;
- an IP destination (AF_INET, AF_INET6) is decided by the network policy
  (_netpolicy.NetRules, README "Network") on the address as the kernel will
  read it from our copy and the protocol the socket really has (SO_TYPE,
  SO_PROTOCOL of the duplicate), and refused with EACCES, as Landlock refuses
  a TCP connect; the same for every message of sendto/sendmsg/sendmmsg, and
  bind (ports: --net-allow-bind) and listen (the bound port) on IP sockets.

Nothing is decided and then continued: a thread could swap the fd or the
address between a check and the kernel's second read.  A connect that may
block is returned as a Later: the notifier's thread that received it makes
it once another thread receives in its stead (_notif.Receivers; every
thread has the supervisor thread's credentials and Landlock domain), and
answers; EAGAIN when no thread of the bounded pool is left.
"""

from __future__ import annotations

import errno
import fcntl
import os
import _socket as socket  # socket's C module: the same calls, without enum (README "Start-up")
import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _threads  # threading's parts, without its import (README "Start-up")
from . import _netpolicy
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import os_error
from ._structs import CLONE_FS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_MPTCP, IPPROTO_TCP, IPPROTO_UDP  # noqa: F401
from ._notif import CONTINUE, Call, Context, Errno, Later, Reply, Value, read_mem, umask_of, write_mem

AF_UNIX = socket.AF_UNIX
AF_INET, AF_INET6, AF_UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC
SUN_PATH_OFFSET = 2
SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN = 16, 24   # the kernel's minimums (SIN6_LEN_RFC2133 for v6)
SOL_SOCKET_, SO_TYPE, SO_PROTOCOL = 1, 3, 38
DNS_PORT = 53


# --- the network policy on IP sockets (README "Network") ---------------------------------------------

def protocol_of(sock: socket.socket) -> str:
    """'tcp', 'udp' or 'icmp': what the socket really is (asked of the kernel on our duplicate,
    never taken from the command: socket(fileno=) reads SO_DOMAIN, SO_TYPE and SO_PROTOCOL,
    see _socket); EACCES for anything else (the filter lets nothing else be made)."""
    kind, proto = sock.type, sock.proto
    if kind == socket.SOCK_STREAM and proto == IPPROTO_TCP:
        return "tcp"
    if kind == socket.SOCK_DGRAM and proto == IPPROTO_UDP:
        return "udp"
    if kind == socket.SOCK_DGRAM and proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return "icmp"
    raise os_error(errno.EACCES, "this kind of socket is not allowed by the network policy")


def ip_destination(family: int, address: bytes, connect: bool) -> Optional[Tuple[bytes, int]]:
    """(packed ip, port) the kernel will send to when given `address` on a socket of `family`;
    None for connect(AF_UNSPEC), which dissolves the association and sends nothing.

    Read as the kernel reads it: the address's own family field picks the layout (an
    AF_INET6 UDP socket accepts a sockaddr_in), and an AF_UNSPEC destination of a send
    on an AF_INET socket is used as a sockaddr_in (udp_sendmsg).  Anything else that
    is not an address of the two IP families is refused (EAFNOSUPPORT)."""
    if len(address) < 2:
        raise os_error(errno.EINVAL)
    kind = struct.unpack_from("=H", address)[0]
    if kind == AF_UNSPEC:
        if connect:
            return None
        if family == AF_INET:
            kind = AF_INET
    if kind == AF_INET:
        if len(address) < SOCKADDR_IN_LEN:
            raise os_error(errno.EINVAL)
        return address[4:8], struct.unpack_from("!H", address, 2)[0]
    if kind == AF_INET6 and family == AF_INET6:
        if len(address) < SOCKADDR_IN6_LEN:
            raise os_error(errno.EINVAL)
        return address[8:24], struct.unpack_from("!H", address, 2)[0]
    raise os_error(errno.EAFNOSUPPORT)


def _loopback_spelled(family: int, address: bytes, connect: bool) -> Optional[bytes]:
    """`address` with the IPv4 unspecified destination 0.0.0.0 (also ::ffff:0.0.0.0)
    spelled as 127.0.0.1, the address the policy decided (_netpolicy.reached); None if
    it is not that.  The kernel sends to 0.0.0.0 at the socket's own source address
    (ip_route_output_key_hash: daddr = saddr), so from a socket bound to 127.0.0.2 or a
    host address, 0.0.0.0 reached that address, which no rule allowed.  The bound
    address cannot be read first: another thread may bind between the check and the
    act."""
    where = ip_destination(family, address, connect)
    if where is None or where[0] not in _UNSPECIFIED:
        return None
    at = 4 if len(where[0]) == 4 else 20
    return address[:at] + bytes((127, 0, 0, 1)) + address[at + 4:]


def _shown_destination(proto: str, packed: bytes, port: int) -> str:
    """tcp://192.0.2.1:80, udp://[2001:db8::1]:53: a destination in the denial report."""
    if len(packed) == 4:
        return f"{proto}://{socket.inet_ntop(AF_INET, packed)}:{port}"
    return f"{proto}://[{socket.inet_ntop(AF_INET6, packed)}]:{port}"


def _check_ip(ctx: Context, call: Call, sock: socket.socket, addresses: List[bytes], connect: bool,
              payloads: Optional[List[bytes]]) -> Optional[Reply]:
    """Decide every destination of a connect or a send on an IP socket; EACCES if one is
    refused (nothing is sent then).  (DNS to the configured resolvers: _check_dns, first.)"""
    proto = protocol_of(sock)
    rules = ctx.net_rules
    for address in addresses:
        where = ip_destination(sock.family, address, connect)
        if where is None:
            continue
        if not rules.any_network():  # no network at all: nothing to match (no ipaddress needed)
            raise os_error(errno.EACCES, "the network policy allows no network (no --net-allow)",
                           _shown_destination(proto, where[0], where[1]))
        packed, port = where
        if not rules.allows_packed(proto, packed, port, ctx.net_names):
            raise os_error(errno.EACCES, "the network policy does not allow this destination",
                           _shown_destination(proto, packed, port))
        if ctx.policy_gate is not None:  # Sandbox(policy_fn=), on this copy, which is what the call sends to
            from . import _policyfn  # imported by preload (README "Policy callback")
            _policyfn.check_destination(ctx, call, "connect" if connect else "sendto", proto, packed, port)
    return None


def _check_dns(ctx: Context, sock: socket.socket, addresses: List[Optional[bytes]],
               payloads: Optional[List[bytes]], connect: bool, flags: int = 0, controls: Sequence[bytes] = ()):
    """DNS policing (_dns, README "Domains") of a connect or a send on a UDP socket.

    None: no configured resolver's port 53 is involved (or a plain rule allows it):
    decide as any destination.  A connect to a resolver: the peer is remembered, the
    kernel socket is not connected (a write() would not be policed), Value(0).  A send
    whose every datagram goes to one resolver (its address, or the remembered peer)
    and is one plain query for a name some rule allows: (resolver address, (ip, port),
    queries), sent on behalf and learned (_learning); any other send to a resolver is
    refused with EACCES (nothing leaves the machine), as is one that could be followed
    by more bytes in the same datagram (MSG_MORE, a corked socket) or carries
    ancillary data.
    """
    dns = ctx.net_dns
    if dns is None or protocol_of(sock) != "udp":
        return None
    from . import _dns  # imported with ctx.net_dns, before the supervisor confined itself (_supervisor.preload)

    def policed(address: bytes):
        where = ip_destination(sock.family, address, connect)
        if where is None:
            return None
        ip = _netpolicy.unmap(_netpolicy.ip_from_packed(where[0]))
        if not dns.is_resolver(ip, where[1]) or ctx.net_rules.allows("udp", ip, where[1], ctx.net_names(ip)):
            return None
        return ip, where[1]
    if connect:
        target = policed(addresses[0]) if addresses[0] else None
        if target is None:
            dns.set_peer(sock, None)
            return None
        _syscalls.connect(sock.fileno(), struct.pack("=H", AF_UNSPEC) + bytes(14))  # dissolve a real one
        dns.set_peer(sock, addresses[0])
        return Value(0)
    peer = dns.peer(sock)
    targets = [policed(a) if a else (policed(peer) if peer else None) for a in addresses]
    if not any(targets):
        return None
    if not all(targets) or len(set(targets)) != 1 or payloads is None or len(payloads) != len(targets):
        raise os_error(errno.EACCES, "a send to the resolver mixed with other destinations")
    if flags & _dns.MSG_MORE or any(controls) or sock.getsockopt(_dns.SOL_UDP, _dns.UDP_CORK):
        raise os_error(errno.EACCES, "a DNS query that more data could follow, or with ancillary data")
    queries = [_dns.parse_query(p) for p in payloads]
    if not all(q is not None and dns.rules.allows_name(q.name) for q in queries):
        raise os_error(errno.EACCES, "a DNS query for a name no rule allows")
    # the name is sent in lower case: its letters' case would carry a bit each (0x20)
    payloads[:] = [_dns.fold_case(p) for p in payloads]
    return peer, targets[0], queries


def _learning(ctx: Context, act: Callable, peer: Optional[bytes], resolver, queries) -> Tuple[Optional[bytes], Callable]:
    """(route of a datagram without address, an act that sends then learns the answers)."""
    def learning(sock: socket.socket, route: Callable) -> int:
        count = act(sock, route)
        if count > 0:  # bytes of one datagram, or the messages of a sendmmsg sent
            ctx.net_dns.learn_answers(sock, resolver, queries[:count])
        return count
    return peer, learning


# Ancillary data a send on an IP socket may carry (level, type): the common ones that
# need no privilege.  The supervisor sends on behalf with its own credentials, so
# options the kernel grants only with CAP_NET_RAW/CAP_NET_ADMIN (SO_MARK, SO_PRIORITY,
# IPv6 hop-by-hop and destination options) would be granted to a command run by root;
# routing headers (IPV6_RTHDR) and IPv4 options (IP_RETOPTS: source routes) send the
# packet first to another address than the destination decided.  Others: EPERM.
IP_CONTROLS = frozenset({(0, 1), (0, 2), (0, 8),                  # IP_TOS, IP_TTL, IP_PKTINFO
                         (41, 50), (41, 52), (41, 62), (41, 67),  # IPV6_PKTINFO, _HOPLIMIT, _DONTFRAG, _TCLASS
                         (17, 103),                               # UDP_SEGMENT
                         (1, 37), (1, 61)})                       # SCM_TIMESTAMPING, SCM_TXTIME


def _check_ip_control(raw: bytes) -> None:
    """EPERM unless every control message of `raw` is in IP_CONTROLS."""
    offset = 0
    while offset + _CMSGHDR.size <= len(raw):
        length, level, kind = _CMSGHDR.unpack_from(raw, offset)
        if (level, kind) not in IP_CONTROLS:
            raise os_error(errno.EPERM, "this ancillary data is not sent on behalf on an IP socket")
        offset += max(length, _CMSGHDR.size) + (-length % 8)


def _bound_port(address: bytes) -> int:
    """The port of a bind address of an IP socket (the same offset in sockaddr_in and _in6)."""
    if len(address) < 4:
        raise os_error(errno.EINVAL)
    return struct.unpack_from("!H", address, 2)[0]


def do_listen(ctx: Context, call: Call) -> Reply:
    """listen(2) on behalf: on an IP socket, the port it is bound to (0, unbound: the
    kernel picks an ephemeral one) must be allowed by --net-allow-bind / --net-deny-bind.
    The bound port can only change from 0 to one bind() allowed, so a racing thread
    cannot make the decision stale."""
    sock = _socket(ctx, call)
    try:
        if sock.family in (AF_INET, AF_INET6):
            proto = protocol_of(sock)
            port = _bound_port(_syscalls.sockname(sock.fileno(), "getsockname"))
            if not ctx.net_rules.allows_bind(proto, port):
                call.why, call.what = "no --net-allow-bind rule allows this port", f"{proto} port {port}"
                return Errno(errno.EACCES)
        backlog = call.size & 0xFFFFFFFF
        sock.listen(4096 if backlog >= 1 << 31 else min(backlog, 1 << 16))
        return Value(0)
    finally:
        sock.close()


def do_connect(ctx: Context, call: Call) -> Reply:
    if call.size > 128 or call.size < 2:
        return Errno(errno.EINVAL)
    address = read_mem(ctx.tracees, call.tid, call.ptr, call.size)
    sock = _socket(ctx, call)
    if sock.type == socket.SOCK_STREAM and sock.proto == IPPROTO_TCP and sock.family in (AF_INET, AF_INET6):
        return _connect_tcp(ctx, call, sock, address)

    def act(sock: socket.socket, route: Callable[[Optional[bytes]], Optional[bytes]]) -> int:
        _syscalls.connect(sock.fileno(), route(address))  # type: ignore[arg-type]  # never None here
        return 0
    return _on_socket(ctx, call, address, True, act, connect=True, sock=sock)


def _connect_tcp(ctx: Context, call: Call, sock: socket.socket, address: bytes) -> Reply:
    """connect on a TCP socket (`sock`, our duplicate; closed here): what _on_socket decides
    for it, without what only other sockets need (unix routes, DNS policing of UDP,
    ancillary data): the destination as the kernel will read it from `address` (our
    copy) allowed by the network policy (EACCES) and by a policy callback, 0.0.0.0 spelled as the loopback
    address decided, then the connect on behalf (Later if the socket blocks)."""
    try:
        where = ip_destination(sock.family, address, True)
        if where is not None:  # None: AF_UNSPEC dissolves the association, reaches nobody
            rules = ctx.net_rules
            if not rules.any_network():
                raise os_error(errno.EACCES, "the network policy allows no network (no --net-allow)",
                                _shown_destination("tcp", where[0], where[1]))
            if not rules.allows_packed("tcp", where[0], where[1], ctx.net_names):
                raise os_error(errno.EACCES, "the network policy does not allow this destination",
                                _shown_destination("tcp", where[0], where[1]))
            if ctx.policy_gate is not None:  # Sandbox(policy_fn=), on this copy, as _check_ip asks it
                from . import _policyfn
                _policyfn.check_destination(ctx, call, "connect", "tcp", where[0], where[1])
            if where[0] in _UNSPECIFIED:
                address = _loopback_spelled(sock.family, address, True)  # type: ignore[assignment]
        blocking = not fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
    except BaseException:
        sock.close()
        raise
    if blocking:
        return Later(lambda: _connected(sock, address), sock.close)  # done off the receiving path
    return _connected(sock, address)


_UNSPECIFIED = (bytes(4), bytes(10) + b"\xff\xff" + bytes(4))


def _connected(sock: socket.socket, address: bytes) -> Reply:
    try:
        _syscalls.connect(sock.fileno(), address)
        return Value(0)
    except OSError as exc:
        return Errno(exc.errno or errno.EIO)
    finally:
        sock.close()


def _socket(ctx: Context, call: Call) -> socket.socket:
    """A socket object around a private duplicate of the tracee's fd call.fd (its family,
    type and protocol asked of the kernel: SO_DOMAIN, SO_TYPE, SO_PROTOCOL)."""
    dup = ctx.tracees.getfd(call.tid, call.fd)
    try:
        # the C type under the socket module's socket: its family, type and proto are
        # plain ints (the Python class's properties convert them to enums, ~1 us each)
        return socket.socket(fileno=dup)
    except OSError as exc:
        os.close(dup)
        raise os_error(exc.errno if exc.errno not in (None, errno.ENOTSOCK, errno.EBADF) else errno.ENOTSOCK,
                       "not a socket") from None


def _on_socket(ctx: Context, call: Call, address: Union[None, bytes, List[Optional[bytes]]], may_block: bool,
               act: Callable, cleanup: Callable[[], None] = lambda: None, connect: bool = False,
               payloads: Optional[List[bytes]] = None, controls: Sequence[bytes] = (),
               sock: Optional[socket.socket] = None):
    """Decide the address on the socket's real family, then act(sock, route) on behalf.

    route(address) is the address to use: itself, or with an emulated root
    the pathname of a unix socket rewritten to /proc/self/fd/N of the socket
    file the supervisor looked up (the fd is held until the act is done).
    An act that may block is returned as a Later (made off the receiving
    path, _notif.Receivers); EAGAIN when no thread of the pool is left.  On an IP socket every address is decided by
    the network policy first (_check_ip; `connect`: the call is a connect,
    `payloads`: the datagrams of a send, for DNS policing).
    """
    try:
        if sock is None:
            sock = _socket(ctx, call)
    except BaseException:
        cleanup()
        raise
    routes: dict = {}
    held: List[int] = []
    outer = cleanup

    def cleanup() -> None:  # type: ignore[no-redef]  # ours, then the caller's
        for fd in held:
            os.close(fd)
        outer()
    try:
        if address and sock.family == AF_UNIX:
            for one in (address if isinstance(address, list) else [address]):
                if one:
                    routes[one] = _check_unix(ctx, call, one, held)
        elif sock.family in (AF_INET, AF_INET6):
            for control in controls:
                _check_ip_control(control)
            listed = address if isinstance(address, list) else [address]
            dns = _check_dns(ctx, sock, listed, payloads, connect, call.flags if not connect else 0, controls)
            if dns is None:
                answer = _check_ip(ctx, call, sock, [a for a in listed if a], connect, payloads)
                for one in listed:
                    spelled = _loopback_spelled(sock.family, one, connect) if one else None
                    if spelled is not None:
                        routes[one] = spelled
            elif isinstance(dns, Value):  # a virtual connect to a resolver
                answer = dns
            else:  # queries sent on behalf, then their answers learned
                answer, (routes[None], act) = None, _learning(ctx, act, *dns)
            if answer is not None:
                sock.close()
                cleanup()
                return answer
        blocking = may_block and not (fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
        blocking = blocking or None in routes  # DNS: the worker waits for the answers
    except BaseException:
        sock.close()
        cleanup()
        raise
    bound = lambda s: act(s, lambda a: routes.get(a, a))  # noqa: E731
    if blocking:
        def abandon() -> None:  # every worker is busy: EAGAIN
            sock.close()
            cleanup()
        return Later(lambda: _act(sock, bound, cleanup), abandon)  # made off the receiving path
    return _act(sock, bound, cleanup)


def _act(sock: socket.socket, act: Callable[[socket.socket], int], cleanup: Callable[[], None]) -> Reply:
    try:
        return Value(act(sock))
    except OSError as exc:
        return Errno(exc.errno or errno.EIO)
    finally:
        sock.close()
        cleanup()


# --- sends with an address ----------------------------------------------------------------

MSG_DONTWAIT = 0x40
SEND_MAX = 1 << 20          # bytes sent on behalf per call (a stream send may be partial;
                            # sendmmsg: in all its messages together, the count sent returned)
SCM_MAX_FD = 253            # fds per SCM_RIGHTS message (include/net/scm.h); per sendmmsg call too
SOL_SOCKET, SCM_RIGHTS, SCM_CREDENTIALS = 1, 1, 2
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_IOVEC = struct.Struct("=QQ")
_CMSGHDR = struct.Struct("=Qii")


def do_sendto(ctx: Context, call: Call) -> Reply:
    """sendto(fd, buf, len, flags, addr, addrlen) with an address: decided and sent on behalf."""
    if call.mask > 128:
        return Errno(errno.EINVAL)
    if not call.ptr2 and not _has_peer(ctx, call):
        # glibc's short send() without address, trapped for DNS policing (_table.traps_for):
        # CONTINUE, the kernel sends to the peer it has, which was decided at connect.
        # Only a UDP socket "connected" to a resolver is policed here (_check_dns), and
        # the kernel has no peer for it: if a thread swaps one in under this fd number,
        # the kernel's send fails (EDESTADDRREQ), it does not go out unpoliced.
        return CONTINUE
    address = read_mem(ctx.tracees, call.tid, call.ptr2, call.mask) if call.ptr2 else None
    data = read_mem(ctx.tracees, call.tid, call.ptr, min(call.size, SEND_MAX)) if call.size else b""
    flags = call.flags
    payloads = [data]  # a policed DNS query is sent as _check_dns left it
    return _on_socket(ctx, call, address, not flags & MSG_DONTWAIT,
                      lambda sock, route: _syscalls.sendmsg(sock.fileno(), route(address), payloads[0], b"", flags),
                      payloads=payloads)


def _has_peer(ctx: Context, call: Call) -> bool:
    """Is call.fd a UDP socket "connected" to a resolver (_check_dns)?"""
    if ctx.net_dns is None or not ctx.net_dns.has_peers():
        return False
    sock = _socket(ctx, call)
    try:
        return ctx.net_dns.peer(sock) is not None
    finally:
        sock.close()


def do_sendmsg(ctx: Context, call: Call) -> Reply:
    """sendmsg: the address, data and ancillary data are read once and sent on behalf."""
    name, data, control, fds = _read_msghdr(ctx, call, call.ptr)  # type: ignore[misc]
    flags = call.flags
    payloads = [data]  # a policed DNS query is sent as _check_dns left it
    return _on_socket(ctx, call, name, not flags & MSG_DONTWAIT,
                      _passing(ctx, fds, lambda sock, route: _syscalls.sendmsg(sock.fileno(), route(name), payloads[0],
                                                                               control, flags)),
                      _closer(fds), payloads=payloads, controls=[control])


def do_sendmmsg(ctx: Context, call: Call) -> Reply:
    """sendmmsg: every message read and decided first, then sent on behalf in order."""
    messages: List[Tuple[int, Optional[bytes], bytes, bytes]] = []
    fds: List[int] = []
    budget = SEND_MAX
    with closed_on_error(fds):
        for index in range(min(call.size, 1024)):
            if messages and (budget <= 0 or len(fds) >= SCM_MAX_FD):
                break  # the rest is left unsent: the call returns the count sent, as it may
            entry = call.ptr + index * _syscalls.MMSGHDR_SIZE
            # after the first, only messages that fit whole (a datagram is never cut short)
            message = _read_msghdr(ctx, call, entry, budget, whole=bool(messages))
            if message is None:
                break
            name, data, control, more = message
            budget -= len(data)
            fds.extend(more)
            messages.append((entry, name, data, control))
    names = [m[1] for m in messages]  # None: to the socket's peer
    payloads = [m[2] for m in messages]  # policed DNS queries are sent as _check_dns left them

    def act(sock: socket.socket, route) -> int:
        sent = 0
        for (entry, name, _, control), data in zip(messages, payloads):
            try:
                count = _syscalls.sendmsg(sock.fileno(), route(name), data, control, call.flags)
            except OSError:
                if sent:
                    break
                raise
            # process_vm_writev, not the HotCalls: a Later's work runs outside the handling lock
            _syscalls.process_vm_writev(call.tid, entry + _syscalls.MSGHDR_SIZE, struct.pack("=I", count))
            sent += 1
        return sent
    return _on_socket(ctx, call, names, not call.flags & MSG_DONTWAIT, _passing(ctx, fds, act),
                      _closer(fds), payloads=payloads, controls=[m[3] for m in messages])


def _passing(ctx: Context, fds: List[int], act: Callable) -> Callable:
    """act, which sends our fds `fds` with SCM_RIGHTS, with the memory files among them
    held and counted by -m while they are in the socket's queue (_procops.InFlight)."""
    in_flight = ctx.in_flight
    if in_flight is None or not fds:
        return act

    def send(sock: socket.socket, route: Callable) -> int:
        if sock.family != AF_UNIX:
            return act(sock, route)  # only unix sockets pass fds
        key = in_flight.sending(sock.fileno(), fds)
        try:
            return act(sock, route)
        finally:
            in_flight.sent(key)
    return send


def _closer(fds: List[int]) -> Callable[[], None]:
    """A cleanup that closes our duplicates of the fds a message passes on."""
    def close() -> None:
        for fd in fds:
            os.close(fd)
    return close


def _read_msghdr(ctx: Context, call: Call, address: int, budget: int = SEND_MAX,
                 whole: bool = False) -> Optional[Tuple[Optional[bytes], bytes, bytes, List[int]]]:
    """(name, data, control with the tracee's fds replaced by ours, our fds) of a struct msghdr;
    at most `budget` bytes of data (a stream send may then be partial), or with `whole`
    None if its data does not fit in the budget."""
    name_ptr, namelen, iov_ptr, iovlen, control_ptr, controllen, _ = _MSGHDR.unpack(
        read_mem(ctx.tracees, call.tid, address, _MSGHDR.size))
    if namelen > 128 or iovlen > 1024 or controllen > 65536:
        raise os_error(errno.EINVAL)
    name = read_mem(ctx.tracees, call.tid, name_ptr, namelen) if name_ptr and namelen else None
    data = b""
    if iovlen:
        raw = read_mem(ctx.tracees, call.tid, iov_ptr, iovlen * _IOVEC.size)
        if whole and sum(length for _, length in _IOVEC.iter_unpack(raw)) > budget:
            return None
        for base, length in _IOVEC.iter_unpack(raw):
            take = min(length, budget - len(data))
            if take:
                data += read_mem(ctx.tracees, call.tid, base, take)
    control, fds = b"", []  # type: Tuple[bytes, List[int]]
    if control_ptr and controllen:
        control, fds = _translate_control(ctx, call, read_mem(ctx.tracees, call.tid, control_ptr, controllen))
    return name, data, control, fds


def _translate_control(ctx: Context, call: Call, raw: bytes) -> Tuple[bytes, List[int]]:
    """Ancillary data with SCM_RIGHTS fds fetched from the tracee; credentials refused."""
    out, offset = b"", 0
    fds: List[int] = []
    with closed_on_error(fds):
        while offset + _CMSGHDR.size <= len(raw):
            length, level, kind = _CMSGHDR.unpack_from(raw, offset)
            if length < _CMSGHDR.size or offset + length > len(raw):
                raise os_error(errno.EINVAL)
            body = raw[offset + _CMSGHDR.size: offset + length]
            if level == SOL_SOCKET and kind == SCM_CREDENTIALS:
                raise os_error(errno.EPERM, "credentials cannot be sent on behalf")
            if level == SOL_SOCKET and kind == SCM_RIGHTS:
                if len(fds) + len(body) // 4 > SCM_MAX_FD:  # the kernel's limit per message
                    raise os_error(errno.EINVAL)
                ours = [ctx.tracees.getfd(call.tid, fd) for (fd,) in struct.iter_unpack("=i", body[:len(body) // 4 * 4])]
                fds.extend(ours)
                if any(_is_inotify(fd) for fd in ours):
                    # in flight, an instance is in no process's fd table, where the
                    # sandbox's inotify cap counts them (_fsops.count_inotify)
                    raise os_error(errno.EPERM, "inotify instances cannot be passed")
                body = b"".join(struct.pack("=i", fd) for fd in ours)
            item = _CMSGHDR.pack(_CMSGHDR.size + len(body), level, kind) + body
            out += item + bytes(-len(item) % 8)
            offset += length + (-length % 8)
    return out, fds


def _is_inotify(fd: int) -> bool:
    try:
        return os.readlink(b"/proc/self/fd/%d" % fd) == b"anon_inode:inotify"
    except OSError:
        return False


def _check_unix(ctx: Context, call: Call, address: bytes, held: List[int]) -> bytes:
    """Decide a unix socket address; the address to use (see _on_socket)."""
    if len(address) <= SUN_PATH_OFFSET:
        raise os_error(errno.EINVAL)
    if address[SUN_PATH_OFFSET] == 0:
        if not ctx.abstract_scoped:
            raise os_error(errno.EPERM)
        # the sandbox's own names live under the run's prefix (abstract_name);
        # the supervisor thread's own scope keeps everything else out of reach
        return abstract_name(ctx, address)
    path = address[SUN_PATH_OFFSET:].split(b"\0", 1)[0]
    fd, name = ctx.resolver.lookup(call, -100, path, False)
    with closed_on_error(fd):
        ctx.resolver.check(fd, name, "write")
    # Name the object itself: the guest's path means nothing to the kernel in a
    # root, a relative path would start from the supervisor's cwd, and the
    # path, walked again, could lead to another socket by then (a renamed
    # directory, a swapped symlink).
    held.append(fd)
    return address[:SUN_PATH_OFFSET] + b"/proc/self/fd/%d\0" % fd


def do_sockname(ctx: Context, call: Call) -> Reply:
    """getsockname/getpeername: an abstract name shows without the run's prefix
    (abstract_name); in an emulated root, a unix socket bound by do_bind shows the
    guest's path, not the /proc/self/fd name it was bound with."""
    sock = _socket(ctx, call)
    try:
        raw_len = read_mem(ctx.tracees, call.tid, call.ptr2, 4)
        size = struct.unpack("=I", raw_len)[0]
        getter = "getpeername" if call.nr == ctx.names_to_numbers().get("getpeername") else "getsockname"
        try:
            address = _syscalls.sockname(sock.fileno(), getter)
        except OSError as exc:  # a UDP socket "connected" to a resolver (_check_dns) has it as peer
            peer = (ctx.net_dns.peer(sock) if exc.errno == errno.ENOTCONN and getter == "getpeername"
                    and ctx.net_dns is not None else None)
            if peer is None:
                raise
            address = peer
    finally:
        sock.close()
    if address[:SUN_PATH_OFFSET] == struct.pack("=H", AF_UNIX) and len(address) > SUN_PATH_OFFSET:
        path = address[SUN_PATH_OFFSET:].split(b"\0", 1)[0]
        virtual = ctx.resolver.socket_names.get(path)
        if virtual is not None:
            address = address[:SUN_PATH_OFFSET] + virtual + b"\0"
        prefix = ctx.abstract_prefix
        if address[SUN_PATH_OFFSET] == 0 and address[SUN_PATH_OFFSET + 1:].startswith(prefix):
            address = address[:SUN_PATH_OFFSET + 1] + address[SUN_PATH_OFFSET + 1 + len(prefix):]
    if size > 0x7FFFFFFF:
        return Errno(errno.EINVAL)
    write_mem(ctx.tracees, call.tid, call.ptr, address[:size]) if size else None
    write_mem(ctx.tracees, call.tid, call.ptr2, struct.pack("=I", len(address)))
    return Value(0)


def do_bind(ctx: Context, call: Call) -> Reply:
    """bind(2) in an emulated root: a unix socket's pathname is created in the guest tree.

    The parent directory is looked up and decided for writing like a mkdir,
    and the socket bound to /proc/self/fd/DIR/NAME (the kernel creates it
    there, with the caller's umask).  Other addresses are bound as given,
    on behalf too, so the address is read once.
    """
    def pathname(sock: socket.socket, address: bytes, path: bytes) -> Reply:
        from . import _rootops
        directory, last = _rootops._parent_for_write(ctx, call, -100, path)
        try:
            target = b"/proc/self/fd/%d/%s" % (directory, last)
            if len(target) >= 108:
                return Errno(errno.ENAMETOOLONG)
            old = os.umask(umask_of(call.tid))
            try:
                _syscalls.bind(sock.fileno(), address[:SUN_PATH_OFFSET] + target + b"\0")
            finally:
                os.umask(old)
            virtual = path if path[:1] == b"/" else ctx.resolver.virtual_cwd(call.tid).rstrip(b"/") + b"/" + path
            ctx.resolver.socket_names[target] = virtual
        finally:
            os.close(directory)
        return Value(0)
    return _bind(ctx, call, pathname)


def _bind(ctx: Context, call: Call, pathname: Callable[[socket.socket, bytes, bytes], Reply]) -> Reply:
    """bind(2) on behalf, the address read once: a unix pathname goes to
    pathname(our socket, the address, the path), anything else is bound as
    given (abstract names under the run's prefix, see _bind_other)."""
    if call.size > 128 or call.size < 2:
        return Errno(errno.EINVAL)
    address = read_mem(ctx.tracees, call.tid, call.ptr, call.size)
    sock = _socket(ctx, call)
    try:
        if sock.family != AF_UNIX or len(address) <= SUN_PATH_OFFSET or address[SUN_PATH_OFFSET] == 0:
            return _bind_other(ctx, call, sock, address)
        return pathname(sock, address, address[SUN_PATH_OFFSET:].split(b"\0", 1)[0])
    finally:
        sock.close()


# --- abstract unix names (README "Locks and kernel pools") ------------------------------------------
#
# Abstract names are not files: Landlock's scope keeps the sandbox from
# connecting to the host's, but nothing keeps host clients from connecting to
# a name the sandbox binds (@/tmp/.X11-unix/X0, @some-service).  So every
# abstract name the sandbox binds, connects or sends to is moved under a
# per-run prefix no host client uses (RunContext.abstract_prefix): bind and
# autobind are done on behalf under it, connect/sendto/sendmsg/sendmmsg
# destinations get it (_check_unix), getsockname/getpeername take it off.
# A name that already carries the prefix (as received by recvfrom, which is
# not translated) keeps it, so answering a sender works.

SUN_LEN_MAX = 110  # sizeof(struct sockaddr_un)


def abstract_name(ctx: Context, address: bytes) -> bytes:
    """The address of an abstract name in the run's private namespace (EINVAL if too long)."""
    prefix = ctx.abstract_prefix
    name = address[SUN_PATH_OFFSET + 1:]
    if name.startswith(prefix):
        return address
    out = address[:SUN_PATH_OFFSET + 1] + prefix + name
    if len(out) > SUN_LEN_MAX:
        raise os_error(errno.EINVAL, "abstract name too long for the sandbox's namespace")
    return out


def _bind_other(ctx: Context, call: Call, sock: socket.socket, address: bytes) -> Reply:
    """bind(2) on behalf of anything but a unix pathname: abstract names under the prefix,
    autobind (only the family) as an abstract name under the prefix, an IP port only if
    --net-allow-bind allows it (port 0, an ephemeral port, always: listen decides), the
    rest as given."""
    if sock.family in (AF_INET, AF_INET6):
        port = _bound_port(address)
        if port and not ctx.net_rules.allows_bind(protocol_of(sock), port):
            call.why, call.what = "no --net-allow-bind rule allows this port", f"{protocol_of(sock)} port {port}"
            return Errno(errno.EACCES)
        if ctx.policy_gate is not None:  # README "Policy callback"
            from . import _policyfn
            _policyfn.check_bind(ctx, call, protocol_of(sock), address, port)
    if sock.family != AF_UNIX or len(address) < SUN_PATH_OFFSET:
        _syscalls.bind(sock.fileno(), address)
        return Value(0)
    if address[:SUN_PATH_OFFSET] != struct.pack("=H", AF_UNIX):
        return Errno(errno.EINVAL)  # as unix_validate_addr says
    if len(address) > SUN_PATH_OFFSET:
        _syscalls.bind(sock.fileno(), abstract_name(ctx, address))
        return Value(0)
    # autobind: the kernel's five hex digits, under the prefix
    for _ in range(64):
        name = b"%05x" % (int.from_bytes(os.urandom(3), "little") & 0xFFFFF)
        try:
            _syscalls.bind(sock.fileno(), address + b"\0" + ctx.abstract_prefix + name)
            return Value(0)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    return Errno(errno.ENOSPC)  # what the kernel's autobind says when it finds no free name


def do_bind_host(ctx: Context, call: Call) -> Reply:
    """bind(2) without an emulated root, on behalf (the address is read once).

    A pathname is bound by a short-lived thread with its own cwd and umask
    (unshare(CLONE_FS)), set to the caller's: the kernel resolves the caller's
    string as for the caller and the socket keeps that string as its name,
    under the supervisor thread's Landlock domain (no wider than the policy),
    which refuses a socket outside the write rules as it would the caller's."""
    def pathname(sock: socket.socket, address: bytes, path: bytes) -> Reply:
        cwd = ctx.resolver.base(call, -100)
        try:
            umask = umask_of(call.tid)
            return _in_callers_directory(cwd, umask, lambda: _syscalls.bind(sock.fileno(), address))
        finally:
            os.close(cwd)
    return _bind(ctx, call, pathname)


def _in_callers_directory(cwd: int, umask: int, act: Callable[[], object]) -> Reply:
    """act() in a thread whose cwd is `cwd` and umask `umask` (unshare(CLONE_FS) keeps
    both private to it); its errno or Value(0).  The notification thread waits: a bind
    does not block."""
    result: List[Reply] = []

    def work() -> None:
        try:
            _syscalls.unshare(CLONE_FS)
            os.fchdir(cwd)
            os.umask(umask)
            act()
            result.append(Value(0))
        except OSError as exc:
            result.append(Errno(exc.errno or errno.EPERM))
        except BaseException:  # fail closed
            result.append(Errno(errno.EPERM))

    worker = _threads.start(work, (), "sandlock-bind")
    worker.join()
    return result[0] if result else Errno(errno.EPERM)
