"""connect(2) on behalf, its fast paths and their fallbacks (README "Network", SECURITY.md
"Connect on behalf without a thread hand-off").

A connect of a blocking socket is made by the supervisor thread that received it, once
another thread receives the sandbox's calls; a non-blocking one is made at once; the
verdict of a destination is remembered per (protocol, address, port).  Each test shows
what a user sees on one side of those paths: a connect that blocks for ever does not
hold up the other calls of the sandbox and is still interrupted by a signal; a
non-blocking connect answers EINPROGRESS and then completes; a refused destination is
EACCES on either kind of socket; a remembered verdict never outlives the socket it was
made for (an fd dup2'd over between two connects is decided as what it is now).

Every probe runs INSIDE a sandbox, as root and as the unprivileged user (the `who`
fixture), in host mode and in an emulated root.  Only loopback is ever reached: the
connect that gets no answer goes to a listener of the test whose accept queue is full
(the kernel drops the SYN and the client keeps retrying), not to a remote address.
"""

from __future__ import annotations

import socket
import threading
from typing import Iterator, List

import pytest

from netservers import Servers, free_port

from .conftest import Box





class FullListener:
    """A port of 127.0.0.1 whose listener's accept queue is full: a connect to it sends a
    SYN the kernel drops and blocks, retrying (1 s, 3 s, 7 s ... apart, ~2 minutes in
    all).  A connection to `release` (another port) makes room: from then on the test
    accepts every connection, and each retry gets through."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)  # the queue's one place
        self.trigger = socket.socket()
        self.trigger.bind(("127.0.0.1", 0))
        self.trigger.listen(4)
        self.release = self.trigger.getsockname()[1]
        self.accepted: List[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _accept(self, listener: socket.socket) -> socket.socket:
        listener.settimeout(0.2)
        while not self.stopping:
            try:
                return listener.accept()[0]
            except socket.timeout:
                continue
        raise OSError("closing")

    def _serve(self) -> None:
        try:
            self._accept(self.trigger).close()
            while True:  # room for one more, each time one gets in
                self.accepted.append(self._accept(self.listener))
        except OSError:
            pass

    def close(self) -> None:
        self.stopping = True
        self.thread.join(2)
        for s in [self.filler, self.trigger, self.listener, *self.accepted]:
            s.close()


@pytest.fixture
def full() -> Iterator[FullListener]:
    server = FullListener()
    yield server
    server.close()



# Blocking connects to the full listener, made by `threads` threads at once, and one by
# the main thread.  Once the main thread's socket is seen in SYN_SENT (its connect is
# under way, on the supervisor's duplicate of that very socket), a helper thread makes
# other trapped calls: a stat, a blocking connect to the echo server and a round trip, a
# refused destination.  Then, with `release`, it makes room in the full listener's queue
# and the main thread's connect completes; with `exit`, the process exits at once, every
# connect still blocked in the supervisor.
BLOCKED = r"""
import errno, os, socket, sys, threading, time
full, release, echo, refused, threads, then = [int(a) for a in sys.argv[1:6]] + [sys.argv[6]]
def name(exc): return errno.errorcode.get(exc.errno, str(exc.errno))
def state(s): return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]  # tcpi_state
def stuck():
    try:
        socket.socket().connect(("127.0.0.1", full))
    except OSError:
        pass
for _ in range(threads):
    threading.Thread(target=stuck, daemon=True).start()
sock = socket.socket()
def helper():
    deadline = time.monotonic() + 60
    while state(sock) != 2 and time.monotonic() < deadline:  # TCP_SYN_SENT
        time.sleep(0.01)
    print("main connect", "under way" if state(sock) == 2 else "never started", flush=True)
    print("stat", os.stat("/").st_ino > 0, flush=True)
    s = socket.socket(); s.settimeout(10); s.connect(("127.0.0.1", echo)); s.sendall(b"ping")
    print("echo", s.recv(64).decode(), flush=True)
    try:
        socket.socket().connect(("127.0.0.1", refused)); print("refused connected", flush=True)
    except OSError as exc:
        print("refused", name(exc), flush=True)
    if then == "exit":
        os._exit(0)
    socket.create_connection(("127.0.0.1", release), timeout=10).close()
threading.Thread(target=helper, daemon=True).start()
try:
    sock.connect(("127.0.0.1", full))
    print("main connected to", sock.getpeername()[1] == full, flush=True)
except OSError as exc:
    print("main", name(exc), flush=True)
"""


@pytest.mark.parametrize("threads", [0, 3])
def test_a_connect_that_gets_no_answer_holds_up_no_other_call_and_completes_when_answered(
        who, box: Box, echo: Servers, full: FullListener, threads: int) -> None:
    net = ["--net-allow", f"tcp://127.0.0.1:{full.port},{full.release},{echo.port}"]
    r = who.run([*box.options, *net, "--", box.python, "-c", BLOCKED, str(full.port), str(full.release),
                 str(echo.port), str(free_port()), str(threads), "release"], timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["main connect under way", "stat True", "echo ping", "refused EACCES",
                                     "main connected to True"], r.stdout + r.stderr


def test_a_run_ends_when_its_command_exits_with_connects_still_blocked_in_the_supervisor(
        who, box: Box, echo: Servers, full: FullListener) -> None:
    net = ["--net-allow", f"tcp://127.0.0.1:{full.port},{echo.port}"]
    r = who.run([*box.options, *net, "--", box.python, "-c", BLOCKED, str(full.port), str(full.release),
                 str(echo.port), str(free_port()), "2", "exit"], timeout=60)  # the connects alone: ~2 minutes
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["main connect under way", "stat True", "echo ping", "refused EACCES"], \
        r.stdout + r.stderr


# One connect per line of ops: `kind:port`, kind = tcp (blocking), tcpnb (non-blocking:
# EINPROGRESS, then wait until it is writable, SO_ERROR, a round trip), udp (connect then
# send and receive).  `dup:tcp:udp:port` connects a TCP socket to port, then dup2's a UDP
# socket over its fd number and connects that fd (now UDP) to the same port.
CONNECTS = r"""
import errno, os, select, socket, sys
def name(exc): return errno.errorcode.get(exc.errno, str(exc.errno))
def roundtrip(s):
    s.settimeout(5); s.sendall(b"ping"); return s.recv(64).decode()
def tcp(port):
    s = socket.socket(); s.settimeout(5); s.connect(("127.0.0.1", port)); return roundtrip(s)
def tcpnb(port):
    s = socket.socket(); s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port)); first = "at once"
    except BlockingIOError as exc:
        first = name(exc)
    select.select([], [s], [], 10)
    error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        return first + " then " + errno.errorcode[error]
    s.setblocking(True); return first + " then " + roundtrip(s)
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("127.0.0.1", port)); return roundtrip(s)
def dup(port):
    s = socket.socket(); s.settimeout(5); s.connect(("127.0.0.1", port)); first = roundtrip(s)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    os.dup2(u.fileno(), s.fileno())   # the fd number now names a UDP socket
    try:
        s.connect(("127.0.0.1", port)); second = "connected"
    except OSError as exc:
        second = name(exc)
    return first + " then " + second
for arg in sys.argv[1:]:
    kind, port = arg.split(":")
    try:
        print(arg.split(":")[0], globals()[kind](int(port)), flush=True)
    except OSError as exc:
        print(kind, name(exc), flush=True)
"""


def connects(who, box: Box, net: List[str], *ops: str) -> List[str]:  # type: ignore[no-untyped-def]
    r = who.run([*box.options, *net, "--", box.python, "-c", CONNECTS, *ops])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_a_non_blocking_connect_answers_einprogress_then_completes(who, box: Box, echo: Servers) -> None:
    closed = free_port()
    assert connects(who, box, ["--net-allow", f"tcp://127.0.0.1:{echo.port},{closed}"],
                    f"tcpnb:{echo.port}", f"tcpnb:{closed}", f"tcp:{echo.port}") == \
        ["tcpnb EINPROGRESS then ping", "tcpnb EINPROGRESS then ECONNREFUSED", "tcp ping"]


def test_a_refused_destination_is_eacces_on_blocking_and_non_blocking_sockets_every_time(
        who, box: Box, echo: Servers) -> None:
    other = free_port()
    ops = [f"tcp:{other}", f"tcpnb:{other}", f"tcp:{echo.port}", f"tcp:{other}", f"tcpnb:{other}"]
    assert connects(who, box, ["--net-allow", f"tcp://127.0.0.1:{echo.port}"], *ops) == \
        ["tcp EACCES", "tcpnb EACCES", "tcp ping", "tcp EACCES", "tcpnb EACCES"]
    # control: allowed, the same connects reach the port (nothing listens there: refused by the kernel)
    assert connects(who, box, ["--net-allow", f"tcp://127.0.0.1:{echo.port},{other}"], *ops) == \
        ["tcp ECONNREFUSED", "tcpnb EINPROGRESS then ECONNREFUSED", "tcp ping", "tcp ECONNREFUSED",
         "tcpnb EINPROGRESS then ECONNREFUSED"]


def test_a_socket_dup2ed_over_between_two_connects_is_decided_as_what_it_is_now(who, box: Box, echo: Servers) -> None:
    # TCP to the echo port is allowed, UDP only to another port: the first connect's verdict
    # (tcp, address, port) must not decide the second, made on a UDP socket
    other = free_port()
    net = ["--net-allow", f"tcp://127.0.0.1:{echo.port}", "--net-allow", f"udp://127.0.0.1:{other}"]
    assert connects(who, box, net, f"dup:{echo.port}", f"udp:{echo.port}") == \
        ["dup ping then EACCES", "udp EACCES"]
    # control: with UDP to the echo port allowed too, the same fd connects and echoes
    net = ["--net-allow", f"127.0.0.1:{echo.port}"]
    assert connects(who, box, net, f"dup:{echo.port}", f"udp:{echo.port}") == \
        ["dup ping then connected", "udp ping"]


# `n` threads make blocking connects to the full listener at once: each that the
# supervisor takes holds a thread of its pool; once the pool is exhausted the rest are
# answered EAGAIN at once.  Then the main thread makes calls that need no thread of the
# pool: a stat and a non-blocking connect to the echo server (EINPROGRESS, completed).
EXHAUST = r"""
import errno, os, select, socket, sys, threading, time
full, echo, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
results = []
def stuck():
    try:
        socket.socket().connect(("127.0.0.1", full)); results.append("connected")
    except OSError as exc:
        results.append(errno.errorcode.get(exc.errno, str(exc.errno)))
for _ in range(n):
    threading.Thread(target=stuck, daemon=True).start()
deadline = time.monotonic() + 60
while not results and time.monotonic() < deadline:
    time.sleep(0.01)
print("first answers", sorted(set(results)), flush=True)
print("stat", os.stat("/").st_ino > 0, flush=True)
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", echo)); print("at once", flush=True)
except BlockingIOError:
    print("EINPROGRESS", flush=True)
select.select([], [s], [], 10)
s.setblocking(True); s.settimeout(10); s.sendall(b"ping"); print("echo", s.recv(64).decode(), flush=True)
os._exit(0)
"""


def test_when_every_worker_holds_a_blocked_connect_the_next_gets_eagain_and_the_rest_is_answered(
        who, box: Box, echo: Servers, full: FullListener) -> None:
    net = ["--net-allow", f"tcp://127.0.0.1:{full.port},{echo.port}"]
    r = who.run([*box.options, *net, "--", box.python, "-c", EXHAUST, str(full.port), str(echo.port), "80"],
                timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["first answers ['EAGAIN']", "stat True", "EINPROGRESS", "echo ping"], \
        r.stdout + r.stderr
