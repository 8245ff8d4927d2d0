"""connect(2) on behalf of the sandbox (SPEC 1.5, 1.6).

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
- other families are connected as asked (no network policy yet).

Nothing is decided and then continued: a thread could swap the fd or the
address between a check and the kernel's second read.  A connect that may
block runs in a worker of the supervisor's bounded pool (_notif.Workers; same
credentials and Landlock domain as the supervisor thread), which answers the
notification itself; EAGAIN when every worker is busy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
from typing import Callable, List, Optional, Tuple, Union

import _syscalls
from _notif import Call, Context, Errno, Reply, Value, read_mem, umask_of

AF_UNIX = socket.AF_UNIX
SUN_PATH_OFFSET = 2


def do_connect(ctx: Context, call: Call) -> Reply:
    if call.size > 128 or call.size < 2:
        return Errno(errno.EINVAL)
    address = read_mem(ctx.tracees, call.tid, call.ptr, call.size)
    def act(sock: socket.socket, route: Callable[[Optional[bytes]], Optional[bytes]]) -> int:
        _syscalls.connect(sock.fileno(), route(address))
        return 0
    return _on_socket(ctx, call, address, True, act)


def _socket(ctx: Context, call: Call) -> socket.socket:
    """A socket object around a private duplicate of the tracee's fd call.fd."""
    dup = ctx.tracees.getfd(call.tid, call.fd)
    try:
        return socket.socket(fileno=dup)
    except OSError as exc:
        os.close(dup)
        raise OSError(errno.ENOTSOCK if exc.errno in (errno.ENOTSOCK, errno.EBADF) else exc.errno,
                      "not a socket") from None


def _on_socket(ctx: Context, call: Call, address: Union[None, bytes, List[bytes]], may_block: bool,
               act: Callable, cleanup: Callable[[], None] = lambda: None):
    """Decide the address on the socket's real family, then act(sock, route) on behalf.

    route(address) is the address to use: itself, or with an emulated root
    the pathname of a unix socket rewritten to /proc/self/fd/N of the socket
    file the supervisor looked up (the fd is held until the act is done).
    An act that may block runs in a worker of the pool (ctx.workers), which
    answers the notification itself (None is returned to the loop); EAGAIN
    when every worker is busy.
    """
    try:
        sock = _socket(ctx, call)
    except BaseException:
        cleanup()
        raise
    routes: dict = {}
    held: List[int] = []
    outer = cleanup

    def cleanup() -> None:
        for fd in held:
            os.close(fd)
        outer()
    try:
        if address and sock.family == AF_UNIX:
            for one in (address if isinstance(address, list) else [address]):
                routes[one] = _check_unix(ctx, call, one, held)
        blocking = may_block and not (fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
    except BaseException:
        sock.close()
        cleanup()
        raise
    bound = lambda s: act(s, lambda a: routes.get(a, a) if a else a)  # noqa: E731
    if blocking:
        try:
            ctx.workers.submit(call, lambda: _act(sock, bound, cleanup))
        except BaseException:  # EAGAIN: every worker is busy
            sock.close()
            cleanup()
            raise
        return None  # the worker answers
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
    address = read_mem(ctx.tracees, call.tid, call.ptr2, call.mask) if call.ptr2 else None
    data = read_mem(ctx.tracees, call.tid, call.ptr, min(call.size, SEND_MAX)) if call.size else b""
    flags = call.flags
    return _on_socket(ctx, call, address, not flags & MSG_DONTWAIT,
                      lambda sock, route: _syscalls.sendmsg(sock.fileno(), route(address), data, b"", flags))


def do_sendmsg(ctx: Context, call: Call) -> Reply:
    """sendmsg: the address, data and ancillary data are read once and sent on behalf."""
    name, data, control, fds = _read_msghdr(ctx, call, call.ptr)  # type: ignore[misc]
    flags = call.flags
    return _on_socket(ctx, call, name, not flags & MSG_DONTWAIT,
                      _passing(ctx, fds, lambda sock, route: _syscalls.sendmsg(sock.fileno(), route(name), data,
                                                                               control, flags)),
                      _closer(fds))


def do_sendmmsg(ctx: Context, call: Call) -> Reply:
    """sendmmsg: every message read and decided first, then sent on behalf in order."""
    messages: List[Tuple[int, Optional[bytes], bytes, bytes]] = []
    fds: List[int] = []
    budget = SEND_MAX
    try:
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
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    names = [m[1] for m in messages if m[1]]

    def act(sock: socket.socket, route) -> int:
        sent = 0
        for entry, name, data, control in messages:
            try:
                count = _syscalls.sendmsg(sock.fileno(), route(name), data, control, call.flags)
            except OSError:
                if sent:
                    break
                raise
            # process_vm_writev, not the loop's HotCalls: this may run in a worker thread
            _syscalls.process_vm_writev(call.tid, entry + _syscalls.MSGHDR_SIZE, struct.pack("=I", count))
            sent += 1
        return sent
    return _on_socket(ctx, call, names, not call.flags & MSG_DONTWAIT, _passing(ctx, fds, act),
                      _closer(fds))


def _passing(ctx: Context, fds: List[int], act: Callable) -> Callable:
    """act, which sends our fds `fds` with SCM_RIGHTS, with the memory files among them
    held and counted by -m while they are in the socket's queue (_procops.InFlight)."""
    in_flight = getattr(ctx, "in_flight", None)
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
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
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
    out, fds, offset = b"", [], 0
    try:
        while offset + _CMSGHDR.size <= len(raw):
            length, level, kind = _CMSGHDR.unpack_from(raw, offset)
            if length < _CMSGHDR.size or offset + length > len(raw):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            body = raw[offset + _CMSGHDR.size: offset + length]
            if level == SOL_SOCKET and kind == SCM_CREDENTIALS:
                raise OSError(errno.EPERM, "credentials cannot be sent on behalf")
            if level == SOL_SOCKET and kind == SCM_RIGHTS:
                if len(fds) + len(body) // 4 > SCM_MAX_FD:  # the kernel's limit per message
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
                ours = [ctx.tracees.getfd(call.tid, fd) for (fd,) in struct.iter_unpack("=i", body[:len(body) // 4 * 4])]
                fds.extend(ours)
                if any(_is_inotify(fd) for fd in ours):
                    # in flight, an instance is in no process's fd table, where the
                    # sandbox's inotify cap counts them (_fsops.count_inotify)
                    raise OSError(errno.EPERM, "inotify instances cannot be passed")
                body = b"".join(struct.pack("=i", fd) for fd in ours)
            item = _CMSGHDR.pack(_CMSGHDR.size + len(body), level, kind) + body
            out += item + bytes(-len(item) % 8)
            offset += length + (-length % 8)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return out, fds


def _is_inotify(fd: int) -> bool:
    try:
        return os.readlink(b"/proc/self/fd/%d" % fd) == b"anon_inode:inotify"
    except OSError:
        return False


def _check_unix(ctx: Context, call: Call, address: bytes, held: List[int]) -> bytes:
    """Decide a unix socket address; the address to use (see _on_socket)."""
    if len(address) <= SUN_PATH_OFFSET:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if address[SUN_PATH_OFFSET] == 0:
        if not ctx.abstract_scoped:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        # the sandbox's own names live under the run's prefix (abstract_name);
        # the supervisor thread's own scope keeps everything else out of reach
        return abstract_name(ctx, address)
    path = address[SUN_PATH_OFFSET:].split(b"\0", 1)[0]
    fd, name = ctx.resolver.lookup(call, -100, path, False)
    try:
        ctx.resolver.check(fd, name, "write")
    except BaseException:
        os.close(fd)
        raise
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
        address = _syscalls.sockname(sock.fileno(), getter)
    finally:
        sock.close()
    if address[:SUN_PATH_OFFSET] == struct.pack("=H", AF_UNIX) and len(address) > SUN_PATH_OFFSET:
        path = address[SUN_PATH_OFFSET:].split(b"\0", 1)[0]
        virtual = getattr(ctx.resolver, "socket_names", {}).get(path)
        if virtual is not None:
            address = address[:SUN_PATH_OFFSET] + virtual + b"\0"
        prefix = ctx.abstract_prefix
        if address[SUN_PATH_OFFSET] == 0 and address[SUN_PATH_OFFSET + 1:].startswith(prefix):
            address = address[:SUN_PATH_OFFSET + 1] + address[SUN_PATH_OFFSET + 1 + len(prefix):]
    if size > 0x7FFFFFFF:
        return Errno(errno.EINVAL)
    from _notif import write_mem
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
        import _rootops
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
            return _bind_other(ctx, sock, address)
        return pathname(sock, address, address[SUN_PATH_OFFSET:].split(b"\0", 1)[0])
    finally:
        sock.close()


# --- abstract unix names (README "Locks and kernel pools") ------------------------------------------
#
# Abstract names are not files: Landlock's scope keeps the sandbox from
# connecting to the host's, but nothing keeps host clients from connecting to
# a name the sandbox binds (@/tmp/.X11-unix/X0, @some-service).  So every
# abstract name the sandbox binds, connects or sends to is moved under a
# per-run prefix no host client uses (Session.abstract_prefix): bind and
# autobind are done on behalf under it, connect/sendto/sendmsg/sendmmsg
# destinations get it (_check_unix), getsockname/getpeername take it off.
# A name that already carries the prefix (as received by recvfrom, which is
# not translated) keeps it, so answering a sender works.

SUN_LEN_MAX = 110  # sizeof(struct sockaddr_un)
CLONE_FS = 0x00000200


def abstract_name(ctx: Context, address: bytes) -> bytes:
    """The address of an abstract name in the run's private namespace (EINVAL if too long)."""
    prefix = ctx.abstract_prefix
    name = address[SUN_PATH_OFFSET + 1:]
    if name.startswith(prefix):
        return address
    out = address[:SUN_PATH_OFFSET + 1] + prefix + name
    if len(out) > SUN_LEN_MAX:
        raise OSError(errno.EINVAL, "abstract name too long for the sandbox's namespace")
    return out


def _bind_other(ctx: Context, sock: socket.socket, address: bytes) -> Reply:
    """bind(2) on behalf of anything but a unix pathname: abstract names under the prefix,
    autobind (only the family) as an abstract name under the prefix, the rest as given."""
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

    worker = threading.Thread(target=work, name="sandlock-bind", daemon=True)
    worker.start()
    worker.join()
    return result[0] if result else Errno(errno.EPERM)
