"""In-process unit tests of the fast paths of stat and open (issue 14, trapped calls), host mode,
with the fake context of tests/fakectx.py: each fast path answers what it applies to, and
everything else falls back to the general path with the same answer the command always got.

- stat of an absolute, clean path: one prepared openat2(RESOLVE_NO_SYMLINKS) + fstat
  (Resolver.stat_plain); a symlink on the way, a '.', '..' or '//' component, /proc or
  --fs-deny inodes: the general lookup;
- an O_RDONLY open of a regular file: reopened from the O_PATH probe it was decided on,
  without a second look (_fsops._Looked); a device or a directory: _handing_over looks
  again / the general open.

The tree: in/ under a read rule (f "hello", link -> f, up -> ../out, d/), out/ under no
rule (g "x").
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakectx import AT_FDCWD, Errno, Value, module
from fakectx import drive, fake  # noqa: F401  (fixture)

_fsops = module("_fsops")
_resolve = module("_resolve")
ST_SIZE = 48  # offset of st_size in struct stat (x86_64 and aarch64 alike)


@pytest.fixture
def tree(tmp_path: Path) -> SimpleNamespace:
    t = SimpleNamespace(ins=tmp_path / "in", out=tmp_path / "out")
    (t.ins / "d").mkdir(parents=True)
    t.out.mkdir()
    (t.ins / "f").write_bytes(b"hello")
    os.symlink("f", t.ins / "link")
    os.symlink("../out", t.ins / "up")
    (t.out / "g").write_bytes(b"x")
    return t


def size_at(ctx, buf: int) -> int:  # type: ignore[no-untyped-def]
    return int.from_bytes(ctx.mem.read(buf + ST_SIZE, 8), "little")


def spy_stat_plain(ctx) -> list:  # type: ignore[no-untyped-def]
    """Record, per stat, whether the prepared lookup answered it (True) or left it (False)."""
    seen: list = []
    real = ctx.resolver.stat_plain

    def stat_plain(path: bytes, nofollow: bool):  # type: ignore[no-untyped-def]
        st = real(path, nofollow)
        seen.append(st is not None)
        return st
    ctx.resolver.stat_plain = stat_plain
    return seen


@pytest.mark.rows("stat", "lstat")
def test_a_stat_of_a_clean_absolute_path_takes_the_prepared_lookup_and_any_other_the_general_one(fake, tree) -> None:
    ctx = fake(readable=[tree.ins])
    seen = spy_stat_plain(ctx)
    buf = ctx.mem.buffer(256)
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "f"), buf) == Value(0)
    assert size_at(ctx, buf) == 5 and seen == [True]
    # lstat of a link: O_PATH|O_NOFOLLOW opens the link itself, still the fast path
    assert drive(ctx, "lstat", ctx.mem.cstr(tree.ins / "link"), buf) == Value(0)
    assert size_at(ctx, buf) == 1 and seen[-1] is True
    # a symlink to follow: the prepared lookup says no (ELOOP), the general one follows it
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "link"), buf) == Value(0)
    assert size_at(ctx, buf) == 5 and seen[-1] is False
    # a directory symlink leading out of every rule: refused by the general path...
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "up" / "g"), buf) == Errno(errno.EACCES)
    assert seen[-1] is False
    # ...as the same object by its own name is (the fast path's refusal)
    assert drive(ctx, "stat", ctx.mem.cstr(tree.out / "g"), buf) == Errno(errno.EACCES)
    assert seen[-1] is True
    # '..' and '//' are not clean: the general path, same answer
    before = len(seen)
    assert drive(ctx, "stat", ctx.mem.cstr(f"{tree.ins}/d/../f"), buf) == Value(0)
    assert size_at(ctx, buf) == 5
    assert drive(ctx, "stat", ctx.mem.cstr(f"{tree.ins}//f"), buf) == Value(0)
    assert seen[before:] == [False, False]  # left to the general path
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "none"), buf) == Errno(errno.ENOENT)


@pytest.mark.rows("stat")
def test_a_path_longer_than_the_first_read_is_read_whole(fake, tree) -> None:
    deep = tree.ins / ("a" * 200) / ("b" * 200)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"0123456789")
    ctx = fake(readable=[tree.ins])
    buf = ctx.mem.buffer(256)
    path = str(deep / "f")
    assert len(path) > 256
    assert drive(ctx, "stat", ctx.mem.cstr(path), buf) == Value(0)
    assert size_at(ctx, buf) == 10


@pytest.mark.rows("stat")
def test_with_denied_inodes_every_stat_takes_the_general_path_and_a_hard_link_is_refused(fake, tree) -> None:
    (tree.ins / "secret").write_bytes(b"s")
    os.link(tree.ins / "secret", tree.ins / "hard")
    ctx = fake(readable=[tree.ins], denied=[tree.ins / "secret"])
    seen = spy_stat_plain(ctx)
    buf = ctx.mem.buffer(256)
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "hard"), buf) == Errno(errno.EACCES)
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "f"), buf) == Value(0)  # the control
    assert size_at(ctx, buf) == 5
    assert seen == []


@pytest.mark.rows("openat")
def test_a_read_open_of_a_regular_file_is_reopened_from_its_probe_and_a_device_is_looked_at_again(
        fake, tree, monkeypatch) -> None:
    ctx = fake(readable=[tree.ins, "/dev/null"])
    ctx.resolver.devices = _resolve.Devices(["/dev/null"], "/dev/pts")
    looked_again: list = []
    real = _fsops._handing_over

    def handing_over(c, fd: int) -> None:  # type: ignore[no-untyped-def]
        looked_again.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(c, fd)
    monkeypatch.setattr(_fsops, "_handing_over", handing_over)
    got = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), os.O_RDONLY, 0)
    assert isinstance(got, Value)
    assert os.pread(ctx.fds[got.value], 16, 0) == b"hello"
    assert looked_again == []
    got = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr("/dev/null"), os.O_RDONLY, 0)
    assert isinstance(got, Value)
    assert os.read(ctx.fds[got.value], 4) == b""
    assert looked_again == ["/dev/null"]
    # a directory: the general open, looked at again too
    got = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.ins / "d"), os.O_RDONLY | os.O_DIRECTORY, 0)
    assert isinstance(got, Value)
    assert looked_again[-1] == str(tree.ins / "d")
    # what no rule covers is refused before anything is opened
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.out / "g"), os.O_RDONLY, 0) == Errno(errno.EACCES)
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.ins / "up" / "g"), os.O_RDONLY, 0) == Errno(errno.EACCES)


def test_threads_reopening_at_once_share_one_handle_and_close_it_once(fake, tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Two receiving threads making the resolver's /proc/self/fd handle at once made two,
    # and two closers of one number: the second closed (at garbage collection) whatever
    # fd had that number by then (the ids kept per thread, in CI: EBADF at a run's end).
    import gc
    import threading
    import time
    import types
    ctx = fake(readable=[tree.ins])
    resolver = ctx.resolver
    slow = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})

    def slow_open(path, *a, **kw):  # type: ignore[no-untyped-def]
        fd = os.open(path, *a, **kw)
        if path == "/proc/self/fd":
            time.sleep(0.05)  # every thread has made its own by now, if it may
        return fd
    slow.open = slow_open
    monkeypatch.setattr(_resolve, "os", slow)
    probe = os.open(tree.ins / "f", os.O_PATH | os.O_CLOEXEC)
    got, barrier = [], threading.Barrier(4)

    def reopen() -> None:
        barrier.wait()
        fd = resolver.reopen(probe, os.O_RDONLY | os.O_CLOEXEC)
        got.append(os.read(fd, 5))
        os.close(fd)
    threads = [threading.Thread(target=reopen) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    monkeypatch.undo()
    assert got == [b"hello"] * 4
    handles = [n for n in os.listdir("/proc/self/fd") if _points_at_own_fds(n)]
    assert len(handles) == 1, handles
    resolver.close()
    resolver.root = os.open("/", os.O_PATH | os.O_CLOEXEC)  # (ctx.close closes it again)
    sentinel = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(8)]  # the freed numbers
    try:
        gc.collect()
        for fd in sentinel:
            os.fstat(fd)  # EBADF if a second closer closed it
        assert [n for n in os.listdir("/proc/self/fd") if _points_at_own_fds(n)] == []
    finally:
        for fd in sentinel:
            os.close(fd)
        os.close(probe)


def test_a_resolver_let_go_without_close_closes_its_handle_once(tree) -> None:  # type: ignore[no-untyped-def]
    """Resolver.__del__ (not weakref.finalize, which the start path no longer imports): the
    handle on our fd table goes with a resolver dropped unclosed, and a closed one's
    number is never closed again."""
    import gc
    from sandlock import _notif, _resolve, _syscalls
    rules = _resolve.FsRules([str(tree.ins)], [], [])

    def made() -> "_resolve.Resolver":
        resolver = _resolve.Resolver(rules, _notif.Tracees(_syscalls.HotCalls()), lambda pid: False,
                                     _syscalls.HotCalls())
        probe = os.open(tree.ins / "f", os.O_PATH | os.O_CLOEXEC)
        os.close(resolver.reopen(probe, os.O_RDONLY | os.O_CLOEXEC))
        os.close(probe)
        assert len([n for n in os.listdir("/proc/self/fd") if _points_at_own_fds(n)]) == 1
        return resolver
    resolver = made()
    root = resolver.root
    del resolver
    gc.collect()
    assert [n for n in os.listdir("/proc/self/fd") if _points_at_own_fds(n)] == []
    os.close(root)  # (its close() would have)
    resolver = made()
    resolver.close()
    sentinel = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(8)]  # the freed numbers
    try:
        del resolver
        gc.collect()
        for fd in sentinel:
            os.fstat(fd)  # EBADF if the handle's number were closed a second time
    finally:
        for fd in sentinel:
            os.close(fd)


def test_the_name_of_an_fd_is_the_kernels_read_through_the_one_handle(fake, tree) -> None:  # type: ignore[no-untyped-def]
    """Resolver.fd_name reads the link from the resolver's /proc/self/fd (one handle for
    every call) and names what d_path names: a directory, a file with a space, an
    unlinked file without " (deleted)", a pipe."""
    ctx = fake(readable=[tree.ins])
    resolver = ctx.resolver
    (tree.ins / "a b").write_bytes(b"")
    (tree.ins / "gone").write_bytes(b"")
    fds = [os.open(tree.ins, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
           os.open(tree.ins / "a b", os.O_RDONLY | os.O_CLOEXEC),
           os.open(tree.ins / "gone", os.O_RDONLY | os.O_CLOEXEC)]
    os.unlink(tree.ins / "gone")
    fds.extend(os.pipe())
    try:
        names = [resolver.fd_name(fd) for fd in fds]
        assert names == [_resolve.d_path(fd) for fd in fds]
        assert names[:3] == [os.fsencode(tree.ins), os.fsencode(tree.ins / "a b"), os.fsencode(tree.ins / "gone")]
        assert names[3].startswith(b"pipe:[")
        assert len([n for n in os.listdir("/proc/self/fd") if _points_at_own_fds(n)]) == 1
    finally:
        for fd in fds:
            os.close(fd)


def _points_at_own_fds(name: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{name}") == f"/proc/{os.getpid()}/fd"
    except OSError:
        return False


@pytest.mark.parametrize("tops, covered, not_covered", [
    ([b"/a/b", b"/c"], [b"/a/b", b"/a/b/x", b"/a/b/.git/objects/ab/cd", b"/c/d"], [b"/a", b"/a/bc", b"/a/bc/d", b"/",
                                                                               b"/ab/b", b"/b/c"]),
    ([b"/"], [b"/", b"/x", b"/x/y"], []),
    ([], [], [b"/", b"/x"]),
])
def test_a_rule_covers_its_directory_and_everything_below_and_nothing_beside(tops, covered, not_covered) -> None:
    """FsRules.check asks _resolve.Tops.covers (one startswith with a tuple); the walk up the
    path's components it replaced gives the same answer for every path here."""
    def walked(path: bytes) -> bool:
        while path not in tops:
            if path == b"/":
                return False
            path = path[:path.rindex(b"/")] or b"/"
        return True
    top_set = _resolve.Tops(tops)
    for path in covered + not_covered:
        assert top_set.covers(path) == walked(path) == (path in covered), path
