"""In-process unit tests of the policy callback (_policyfn, README "Policy callback"):
the gate's verdicts and time bound, the narrowings, and the handlers that ask it
(execve, openat, connect) driven through decode -> check -> do with a fake context
(tests/fakectx.py).  The integration tests are tests/test_policy_fn.py."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import pytest

from fakectx import AT_FDCWD, Errno, Value, drive, fake, module  # noqa: F401  (fixture)

_policyfn = module("_policyfn")


def gate(fn, timeout: float = 1.0, max_processes=None, max_memory=None):  # type: ignore[no-untyped-def]
    return _policyfn.Gate(fn, timeout, max_processes, max_memory)


def event(kind: str = "open", path: str = "/x") -> "object":
    return _policyfn.Event(kind, 1, path=path)


def test_the_verdicts_of_a_callback_map_to_allow_or_an_errno() -> None:
    for answer, code in ((True, 0), (None, 0), (False, errno.EPERM), (errno.EACCES, errno.EACCES),
                         ("yes", errno.EPERM), (0, errno.EPERM), (-1, errno.EPERM), (1.5, errno.EPERM)):
        assert gate(lambda e, c, a=answer: a).ask(event()) == code, answer


def test_a_callback_that_raises_denies_with_eperm_and_the_next_event_is_asked(capsys) -> None:
    calls = []

    def fn(e, c):  # type: ignore[no-untyped-def]
        calls.append(e.path)
        if e.path == "/boom":
            raise ValueError("no")
        return True
    g = gate(fn)
    assert g.ask(event(path="/boom")) == errno.EPERM
    assert g.ask(event(path="/fine")) == 0
    assert calls == ["/boom", "/fine"]
    assert "policy_fn raised ValueError: no" in capsys.readouterr().err


def test_a_hung_callback_is_denied_after_the_bound_and_holds_one_thread_only() -> None:
    release = threading.Event()
    g = gate(lambda e, c: release.wait() and True, timeout=0.2)
    t = time.monotonic()
    assert g.ask(event()) == errno.EPERM
    assert 0.15 < time.monotonic() - t < 1.0
    first, threads = g._thread, threading.active_count()
    assert g.ask(event()) == errno.EPERM  # still busy: waits its own bound, then denied
    assert g._thread is first and threading.active_count() == threads  # no thread per event
    release.set()
    time.sleep(0.1)
    g.fn = lambda e, c: True
    assert g.ask(event()) == 0
    g.close()


def test_narrowings_only_lower_limits_and_add_denials() -> None:
    g = gate(lambda e, c: True, max_processes=4, max_memory=100 << 20)
    ctx = g.narrowing
    ctx.set_max_processes(10)
    ctx.set_max_memory(1 << 30)
    assert (g.max_processes, g.max_memory) == (4, 100 << 20)
    ctx.set_max_processes(2)
    ctx.set_max_memory(1 << 20)
    assert (g.max_processes, g.max_memory) == (2, 1 << 20)
    ctx.deny_path("/tmp/a/")
    assert g.path_denied(b"/tmp/a") and g.path_denied(b"/tmp/a/b") and not g.path_denied(b"/tmp/ab")
    for bad in (lambda: ctx.deny_path("rel"), lambda: ctx.set_max_processes(0),
                lambda: ctx.set_max_memory(True), lambda: ctx.restrict_network("127.0.0.1")):
        with pytest.raises(module("_errors").PolicyError):
            bad()


def test_restrict_network_is_an_intersection_with_what_came_before() -> None:
    g = gate(lambda e, c: True)
    lo = socket.inet_aton("127.0.0.1")
    assert not g.net_denied("tcp", lo, 80, lambda ip: ())
    g.narrowing.restrict_network(allow=["127.0.0.1:80,443"])
    g.narrowing.restrict_network(allow=["127.0.0.0/8:443"])
    assert g.net_denied("tcp", lo, 80, lambda ip: ())
    assert not g.net_denied("tcp", lo, 443, lambda ip: ())
    assert not g.bind_denied("tcp", 8080)  # no bind= given: binds untouched
    g.narrowing.restrict_network(allow=["*"], bind=["9000"])
    assert g.bind_denied("tcp", 8080) and not g.bind_denied("tcp", 9000)


@pytest.mark.rows("execve")
def test_execve_asks_the_callback_with_the_argv_read_once_and_refuses_with_its_errno(fake, tmp_path) -> None:
    ctx = fake(readable=[tmp_path])
    prog = tmp_path / "prog"
    prog.write_bytes(b"\x7fELF-not-really")
    prog.chmod(0o755)
    seen = []
    ctx.policy_gate = gate(lambda e, c: seen.append((e.kind, e.path, e.argv)) or errno.EACCES)
    word = ctx.mem.cstr("safe")
    argv = ctx.mem.pointers(ctx.mem.cstr(str(prog)), word)

    def rewrite(address: int, size: int) -> None:  # a thread of the command, after each read
        if address == word:
            ctx.mem.data[word - ctx.mem.base:word - ctx.mem.base + 5] = b"evil\0"
    ctx.mem.after_read = rewrite
    assert drive(ctx, "execve", ctx.mem.cstr(str(prog)), argv, 0) == Errno(errno.EACCES)
    assert seen == [("exec", str(prog), (str(prog), "safe"))]  # the copy, read once


@pytest.mark.rows("openat")
def test_an_open_for_writing_is_asked_on_the_resolved_path_and_a_refusal_creates_nothing(fake, tmp_path) -> None:
    ctx = fake(writable=[tmp_path])
    asked = []
    ctx.policy_gate = gate(lambda e, c: asked.append(e.path) or not e.path.endswith("/no"))
    flags = os.O_WRONLY | os.O_CREAT
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tmp_path / "no"), flags, 0o644) == Errno(errno.EPERM)
    assert not (tmp_path / "no").exists()
    assert isinstance(drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tmp_path / "yes"), flags, 0o644), Value)
    assert (tmp_path / "yes").exists()
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tmp_path / "yes"), os.O_RDONLY, 0) != Errno(errno.EPERM)
    assert asked == [f"{tmp_path}/no", f"{tmp_path}/yes"]  # reads are not asked
