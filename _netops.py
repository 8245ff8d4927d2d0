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
block runs in a short-lived worker thread (same credentials and Landlock
domain as the supervisor thread) that answers the notification itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
from typing import Callable

import _syscalls
from _notif import Call, Errno, Value, read_mem

AF_UNIX = socket.AF_UNIX
SUN_PATH_OFFSET = 2


def do_connect(ctx, call: Call):
    if call.size > 128 or call.size < 2:
        return Errno(errno.EINVAL)
    address = read_mem(ctx.tracees, call.tid, call.ptr, call.size)
    dup = ctx.tracees.getfd(call.tid, call.fd)
    try:
        sock = socket.socket(fileno=dup)
    except OSError as exc:
        os.close(dup)
        return Errno(errno.ENOTSOCK if exc.errno in (errno.ENOTSOCK, errno.EBADF) else exc.errno)
    try:
        if sock.family == AF_UNIX:
            _check_unix(ctx, call, address)
        blocking = not (fcntl.fcntl(dup, fcntl.F_GETFL) & os.O_NONBLOCK)
    except BaseException:
        sock.close()
        raise
    if blocking:
        threading.Thread(target=_connect_and_reply, args=(ctx.reply_later, call, sock, address),
                         daemon=True).start()
        return None  # the worker answers
    return _connect(sock, address)


def _check_unix(ctx, call: Call, address: bytes) -> None:
    if len(address) <= SUN_PATH_OFFSET:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if address[SUN_PATH_OFFSET] == 0:
        if not ctx.abstract_scoped:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        return  # the supervisor thread's own scope decides
    path = address[SUN_PATH_OFFSET:].split(b"\0", 1)[0]
    fd, name = ctx.resolver.lookup(call, -100, path, False)
    try:
        ctx.resolver.check(fd, name, "write")
    finally:
        os.close(fd)


def _connect(sock: socket.socket, address: bytes):
    try:
        err = _raw_connect(sock, address)
    finally:
        sock.close()
    return Errno(err) if err else Value(0)


def _raw_connect(sock: socket.socket, address: bytes) -> int:
    """connect(2) with the tracee's exact raw sockaddr; returns 0 or an errno."""
    try:
        _syscalls.connect(sock.fileno(), address)
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO


def _connect_and_reply(reply_later: Callable[[Call, object], None], call: Call,
                       sock: socket.socket, address: bytes) -> None:
    try:
        reply = _connect(sock, address)
    except BaseException:  # fail closed, never leave the tracee waiting
        reply = Errno(errno.EPERM)
    reply_later(call, reply)
