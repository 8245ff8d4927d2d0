"""In-process unit tests of the filesystem handlers (_fsops), host mode: each table row driven
through decode -> check -> do with a fake context (tests/fakectx.py: fake memory, fds and
replies; no fork, no interpreter), asserting what the command would get back and what
is on disk afterwards.

The tree: in/ under a read rule (f "hello", link -> f, d/), w/ under a write rule
(f "hello", link -> f), out/ under no rule (g "x", glink -> g).  The test process is not
confined, so these tests show the handlers' own decisions; Landlock, the wall behind them,
is shown by the integration tests.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakectx import AT_FDCWD, AT_SYMLINK_NOFOLLOW, CONTINUE, Errno, Value, _syscalls
from fakectx import answer, answered, begin, drive, fake  # noqa: F401  (fixture)

AT_EMPTY_PATH = 0x1000
R_OK, W_OK, F_OK = 4, 2, 0
ST_SIZE = 48        # offset of st_size in struct stat (x86_64 and aarch64 alike)
STATX_SIZE_AT = 40  # offset of stx_size in struct statx
STATX_SIZE = 0x200
LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4
F_GETLK, F_SETLK, F_OFD_GETLK = 5, 6, 36
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
FLOCK = struct.Struct("=hh4xqqi4x")
IN_MODIFY, IN_NONBLOCK = 0x2, os.O_NONBLOCK


@pytest.fixture
def tree(tmp_path: Path) -> SimpleNamespace:
    t = SimpleNamespace(top=tmp_path, ins=tmp_path / "in", w=tmp_path / "w", out=tmp_path / "out")
    for d in (t.ins, t.w, t.out, t.ins / "d"):
        d.mkdir()
    for d in (t.ins, t.w):
        (d / "f").write_bytes(b"hello")
        os.symlink("f", d / "link")
    (t.out / "g").write_bytes(b"x")
    os.symlink("g", t.out / "glink")
    return t


def host(fake, tree, **kw):  # type: ignore[no-untyped-def]
    return fake(readable=[tree.ins], writable=[tree.w], **kw)


def size_at(ctx, buf: int) -> int:  # type: ignore[no-untyped-def]
    return int.from_bytes(ctx.mem.read(buf + ST_SIZE, 8), "little")


# --- metadata reads --------------------------------------------------------------------------

@pytest.mark.rows("stat", "lstat", "newfstatat")
def test_stat_answers_under_a_rule_and_refuses_outside_every_rule(fake, tree) -> None:
    ctx = host(fake, tree)
    buf = ctx.mem.buffer(256)
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "link"), buf) == Value(0)
    assert size_at(ctx, buf) == 5  # followed to f
    assert drive(ctx, "lstat", ctx.mem.cstr(tree.ins / "link"), buf) == Value(0)
    assert size_at(ctx, buf) == 1  # the link itself: "f"
    assert drive(ctx, "stat", ctx.mem.cstr(tree.out / "g"), buf) == Errno(errno.EACCES)
    assert drive(ctx, "lstat", ctx.mem.cstr(tree.out / "glink"), buf) == Errno(errno.EACCES)
    d = ctx.fds.open(tree.ins, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "newfstatat", d, ctx.mem.cstr("f"), buf, 0) == Value(0)
    assert size_at(ctx, buf) == 5
    # fstat of an fd the command holds (not O_PATH): its open was checked already
    g = ctx.fds.open(tree.out / "g")
    assert drive(ctx, "newfstatat", g, ctx.mem.cstr(""), buf, AT_EMPTY_PATH) == Value(0)
    assert size_at(ctx, buf) == 1
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), buf, 0x1) == Errno(errno.EINVAL)
    # a result buffer the command may not write: EFAULT, as from the kernel
    assert drive(ctx, "stat", ctx.mem.cstr(tree.ins / "f"), ctx.mem.buffer(256, readonly=True)) == Errno(errno.EFAULT)


@pytest.mark.rows("statx")
def test_statx_writes_the_size_asked_for_and_refuses_outside_every_rule(fake, tree) -> None:
    ctx = host(fake, tree)
    buf = ctx.mem.buffer(256)
    assert drive(ctx, "statx", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), 0, STATX_SIZE, buf) == Value(0)
    assert int.from_bytes(ctx.mem.read(buf + STATX_SIZE_AT, 8), "little") == 5
    assert drive(ctx, "statx", AT_FDCWD, ctx.mem.cstr(tree.out / "g"), 0, STATX_SIZE, buf) == Errno(errno.EACCES)
    assert drive(ctx, "statx", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), 0x6000, STATX_SIZE, buf) == Errno(errno.EINVAL)


@pytest.mark.rows("statfs", "fstatfs")
def test_statfs_answers_under_a_rule_and_fstatfs_decides_o_path_fds_again(fake, tree) -> None:
    ctx = host(fake, tree)
    buf = ctx.mem.buffer(256)
    real = os.open(tree.ins / "f", os.O_RDONLY | os.O_CLOEXEC)
    try:
        f_type_and_bsize = _syscalls.statfs(real)[:16]
    finally:
        os.close(real)
    assert drive(ctx, "statfs", ctx.mem.cstr(tree.ins / "f"), buf) == Value(0)
    assert ctx.mem.read(buf, 16) == f_type_and_bsize
    assert drive(ctx, "statfs", ctx.mem.cstr(tree.out / "g"), buf) == Errno(errno.EACCES)
    opened = ctx.fds.open(tree.out / "g")               # an open the kernel checked
    assert drive(ctx, "fstatfs", opened, buf) == Value(0)
    o_path = ctx.fds.open(tree.out / "g", os.O_PATH)    # an O_PATH fd is decided on its object
    assert drive(ctx, "fstatfs", o_path, buf) == Errno(errno.EACCES)
    assert drive(ctx, "fstatfs", 999, buf) == Errno(errno.EBADF)


@pytest.mark.rows("access", "faccessat", "faccessat2")
def test_access_says_what_the_rules_and_the_file_allow(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "access", ctx.mem.cstr(tree.ins / "f"), R_OK) == Value(0)
    assert drive(ctx, "access", ctx.mem.cstr(tree.ins / "f"), W_OK) == Errno(errno.EACCES)  # a read rule
    assert drive(ctx, "access", ctx.mem.cstr(tree.w / "f"), W_OK) == Value(0)
    assert drive(ctx, "access", ctx.mem.cstr(tree.out / "g"), F_OK) == Errno(errno.EACCES)
    d = ctx.fds.open(tree.ins, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "faccessat", d, ctx.mem.cstr("f"), R_OK) == Value(0)
    assert drive(ctx, "faccessat", d, ctx.mem.cstr("nope"), F_OK) == Errno(errno.ENOENT)
    assert drive(ctx, "faccessat2", AT_FDCWD, ctx.mem.cstr(tree.ins / "link"), F_OK, AT_SYMLINK_NOFOLLOW) == Value(0)
    assert drive(ctx, "faccessat2", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), 8, 0) == Errno(errno.EINVAL)


@pytest.mark.rows("readlink", "readlinkat")
def test_readlink_writes_the_target_and_refuses_outside_every_rule(fake, tree) -> None:
    ctx = host(fake, tree)
    buf = ctx.mem.buffer(64)
    assert drive(ctx, "readlink", ctx.mem.cstr(tree.ins / "link"), buf, 64) == Value(1)
    assert ctx.mem.read(buf, 1) == b"f"
    assert drive(ctx, "readlink", ctx.mem.cstr(tree.ins / "f"), buf, 64) == Errno(errno.EINVAL)
    assert drive(ctx, "readlink", ctx.mem.cstr(tree.out / "glink"), buf, 64) == Errno(errno.EACCES)
    assert drive(ctx, "readlink", ctx.mem.cstr(tree.ins / "link"), buf, 0) == Errno(errno.EINVAL)
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    other = ctx.mem.buffer(64)
    assert drive(ctx, "readlinkat", d, ctx.mem.cstr("link"), other, 64) == Value(1)
    assert ctx.mem.read(other, 1) == b"f"


@pytest.mark.rows("chdir")
def test_chdir_continues_into_a_directory_under_a_rule_only(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "chdir", ctx.mem.cstr(tree.ins / "d")) is CONTINUE
    assert drive(ctx, "chdir", ctx.mem.cstr(tree.ins / "f")) == Errno(errno.ENOTDIR)
    assert drive(ctx, "chdir", ctx.mem.cstr(tree.out)) == Errno(errno.EACCES)


@pytest.mark.rows("getxattr", "lgetxattr", "listxattr", "llistxattr")
def test_xattr_reads_answer_under_a_rule_and_refuse_outside_every_rule(fake, tree) -> None:
    os.setxattr(tree.ins / "f", "user.k", b"v")
    os.setxattr(tree.out / "g", "user.k", b"v")
    ctx = host(fake, tree)
    buf = ctx.mem.buffer(64)
    name = ctx.mem.cstr("user.k")
    assert drive(ctx, "getxattr", ctx.mem.cstr(tree.ins / "f"), name, buf, 64) == Value(1)
    assert ctx.mem.read(buf, 1) == b"v"
    assert drive(ctx, "getxattr", ctx.mem.cstr(tree.ins / "f"), name, 0, 0) == Value(1)  # the size only
    assert drive(ctx, "getxattr", ctx.mem.cstr(tree.out / "g"), name, buf, 64) == Errno(errno.EACCES)
    assert drive(ctx, "lgetxattr", ctx.mem.cstr(tree.ins / "link"), name, buf, 64) == Errno(errno.ENODATA)
    assert drive(ctx, "listxattr", ctx.mem.cstr(tree.ins / "f"), buf, 64) == Value(7)
    assert ctx.mem.read(buf, 7) == b"user.k\0"
    assert drive(ctx, "listxattr", ctx.mem.cstr(tree.ins / "f"), buf, 3) == Errno(errno.ERANGE)
    assert drive(ctx, "listxattr", ctx.mem.cstr(tree.out / "g"), buf, 64) == Errno(errno.EACCES)
    expected = b"".join(os.fsencode(n) + b"\0" for n in os.listxattr(tree.ins / "link", follow_symlinks=False))
    assert drive(ctx, "llistxattr", ctx.mem.cstr(tree.ins / "link"), buf, 64) == Value(len(expected))
    assert drive(ctx, "llistxattr", ctx.mem.cstr(tree.out / "glink"), buf, 64) == Errno(errno.EACCES)


@pytest.mark.rows("inotify_add_watch")
def test_inotify_watches_are_added_under_a_rule_only(fake, tree) -> None:
    ctx = host(fake, tree)
    inotify = ctx.fds.add(_syscalls.inotify_init1(os.O_CLOEXEC))
    got = drive(ctx, "inotify_add_watch", inotify, ctx.mem.cstr(tree.ins / "f"), IN_MODIFY)
    assert isinstance(got, Value) and got.value >= 1
    assert drive(ctx, "inotify_add_watch", inotify, ctx.mem.cstr(tree.out / "g"), IN_MODIFY) == Errno(errno.EACCES)


# --- opens ------------------------------------------------------------------------------------

@pytest.mark.rows("open", "openat", "creat")
def test_opens_hand_over_an_fd_for_what_the_rules_allow_and_nothing_else(fake, tree) -> None:
    ctx = host(fake, tree)
    got = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), os.O_RDONLY, 0)
    assert isinstance(got, Value)
    assert os.pread(ctx.fds[got.value], 16, 0) == b"hello"
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.out / "g"), os.O_RDONLY, 0) == Errno(errno.EACCES)
    assert drive(ctx, "open", ctx.mem.cstr(tree.ins / "f"), os.O_WRONLY | os.O_TRUNC, 0) == Errno(errno.EACCES)
    assert (tree.ins / "f").read_bytes() == b"hello"
    got = drive(ctx, "open", ctx.mem.cstr(tree.w / "new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert isinstance(got, Value)
    os.write(ctx.fds[got.value], b"made")
    assert (tree.w / "new").read_bytes() == b"made"
    assert drive(ctx, "creat", ctx.mem.cstr(tree.ins / "new"), 0o644) == Errno(errno.EACCES)
    assert not (tree.ins / "new").exists()
    umask = os.umask(0o022)
    os.umask(umask)
    got = drive(ctx, "creat", ctx.mem.cstr(tree.w / "c"), 0o666)
    assert isinstance(got, Value)
    assert stat.S_IMODE(os.stat(tree.w / "c").st_mode) == 0o666 & ~umask
    # O_PATH: decided, then opened by the kernel (no fd can be handed over)
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), os.O_PATH, 0) is CONTINUE
    assert drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.out / "g"), os.O_PATH, 0) == Errno(errno.EACCES)


@pytest.mark.rows("openat")
def test_an_exclusive_create_is_refused_with_eexist_first_as_the_kernel_refuses_it(fake, tree) -> None:
    """O_CREAT|O_EXCL is made in its directory without a lookup of the name first: a name
    that exists is EEXIST whether or not the rules would let it be written (the kernel
    looks before it checks), one that does not is decided on the directory."""
    ctx = host(fake, tree)
    excl = os.O_WRONLY | os.O_CREAT | os.O_EXCL

    def create(path) -> object:  # type: ignore[no-untyped-def]
        return drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(path), excl, 0o600)
    os.symlink(tree.out / "made", tree.w / "dangling")   # to a name outside every rule
    os.mkfifo(tree.w / "fifo")
    for there in (tree.w / "f", tree.w / "link", tree.w / "dangling", tree.w / "fifo", tree.ins / "d",
                  tree.ins / "f", tree.ins / "link", tree.out / "g", tree.out / "glink"):
        assert create(there) == Errno(errno.EEXIST), there
    assert not (tree.out / "made").exists() and (tree.w / "f").read_bytes() == b"hello"
    for there in (tree.w / ".", tree.ins / "d" / "..", tree.out / "."):  # not a name: looked up, EEXIST
        assert create(there) == Errno(errno.EEXIST), there
    # controls: a new name is decided on its directory's rule, and made only where one allows it
    assert create(tree.ins / "new") == Errno(errno.EACCES) and not (tree.ins / "new").exists()
    assert create(tree.out / "new") == Errno(errno.EACCES) and not (tree.out / "new").exists()
    assert create(tree.w / "nodir" / "new") == Errno(errno.ENOENT)
    assert create(tree.w / "f" / "new") == Errno(errno.ENOTDIR)
    got = create(tree.w / "new")
    assert isinstance(got, Value) and stat.S_ISREG(os.stat(tree.w / "new").st_mode)
    assert create(tree.w / "new") == Errno(errno.EEXIST)


def swap_after_first_read(ctx, address: int, new: bytes) -> list:  # type: ignore[no-untyped-def]
    """Play a thread of the command that writes `new` at `address` right after the
    supervisor first reads it; the list gets an entry when that happened."""
    done: list = []

    def after_read(at: int, size: int) -> None:
        if at <= address < at + size and not done:
            ctx.mem.writev(address, new, force=True)
            done.append(at)
    ctx.mem.after_read = after_read
    return done


@pytest.mark.rows("openat", "connect")
def test_what_the_command_rewrites_after_it_was_read_changes_nothing(fake, tree) -> None:
    """Decided and done on the supervisor's own copy: a thread of the command that swaps
    the path (or a socket address) right after the supervisor read it changes nothing."""
    ctx = host(fake, tree)
    good, bad = os.fsencode(tree.ins / "f") + b"\0", os.fsencode(tree.out / "g") + b"\0"
    path = ctx.mem.put(good.ljust(len(bad), b"\0"))
    swapped = swap_after_first_read(ctx, path, bad)
    got = drive(ctx, "openat", AT_FDCWD, path, os.O_RDONLY, 0)
    assert swapped and ctx.mem.string(path) == bad[:-1]
    assert isinstance(got, Value) and os.pread(ctx.fds[got.value], 16, 0) == b"hello"  # in/f, not out/g
    servers = {}
    for d in ("w", "out"):
        servers[d] = socket.socket(socket.AF_UNIX)
        servers[d].bind(str(tree.top / d / "sock"))
        servers[d].listen(1)
        servers[d].setblocking(False)
    try:
        good = struct.pack("=H", socket.AF_UNIX) + os.fsencode(tree.w / "sock") + b"\0"
        bad = struct.pack("=H", socket.AF_UNIX) + os.fsencode(tree.out / "sock") + b"\0"
        address = ctx.mem.put(good.ljust(len(bad), b"\0"))
        swapped = swap_after_first_read(ctx, address, bad)
        fd = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
        assert drive(ctx, "connect", fd, address, len(bad)) == Value(0)
        assert swapped
        servers["w"].accept()[0].close()  # it reached the socket under the write rule
        with pytest.raises(BlockingIOError):
            servers["out"].accept()
    finally:
        for server in servers.values():
            server.close()


@pytest.mark.rows("openat2")
def test_openat2_reads_its_open_how_once_and_opens_on_behalf(fake, tree) -> None:
    ctx = host(fake, tree)
    how = ctx.mem.put(struct.pack("=QQQ", os.O_RDONLY, 0, 0))
    got = drive(ctx, "openat2", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), how, 24)
    assert isinstance(got, Value) and os.pread(ctx.fds[got.value], 5, 0) == b"hello"
    assert drive(ctx, "openat2", AT_FDCWD, ctx.mem.cstr(tree.out / "g"), how, 24) == Errno(errno.EACCES)
    assert drive(ctx, "openat2", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), how, 8) == Errno(errno.EINVAL)
    bad = ctx.mem.put(struct.pack("=QQQ", os.O_RDONLY, 0, 0x40))
    assert drive(ctx, "openat2", AT_FDCWD, ctx.mem.cstr(tree.ins / "f"), bad, 24) == Errno(errno.EINVAL)


@pytest.mark.rows("openat")
def test_a_fifo_open_that_waits_is_answered_by_a_worker_once_its_other_end_opens(fake, tree) -> None:
    os.mkfifo(tree.w / "fifo")
    ctx = host(fake, tree)
    reader = begin(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.w / "fifo"), os.O_RDONLY, 0)
    time.sleep(0.2)
    assert not answered(ctx, reader)  # waiting for a writer, in a worker: the loop goes on
    writer = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(tree.w / "fifo"), os.O_WRONLY, 0)
    assert isinstance(writer, Value)
    got = answer(ctx, reader)
    assert isinstance(got, Value)
    os.write(ctx.fds[writer.value], b"through")
    assert os.read(ctx.fds[got.value], 16) == b"through"


@pytest.mark.rows("truncate")
def test_truncate_changes_a_file_under_a_write_rule_only(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "truncate", ctx.mem.cstr(tree.w / "f"), 2) == Value(0)
    assert (tree.w / "f").read_bytes() == b"he"
    assert drive(ctx, "truncate", ctx.mem.cstr(tree.ins / "f"), 0) == Errno(errno.EACCES)
    assert (tree.ins / "f").read_bytes() == b"hello"
    assert drive(ctx, "truncate", ctx.mem.cstr(tree.w / "f"), -1) == Errno(errno.EINVAL)


@pytest.mark.rows("execve", "execveat")
def test_exec_continues_what_may_be_read_and_refuses_the_rest(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "execve", ctx.mem.cstr(tree.ins / "f"), 0, 0) is CONTINUE
    assert drive(ctx, "execve", ctx.mem.cstr(tree.out / "g"), 0, 0) == Errno(errno.EACCES)
    inside = ctx.fds.open(tree.ins / "f")
    outside = ctx.fds.open(tree.out / "g", os.O_PATH)
    empty = ctx.mem.cstr("")
    assert drive(ctx, "execveat", inside, empty, 0, 0, AT_EMPTY_PATH) is CONTINUE
    assert drive(ctx, "execveat", outside, empty, 0, 0, AT_EMPTY_PATH) == Errno(errno.EACCES)


# --- metadata writes ----------------------------------------------------------------------------

def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.rows("chmod", "fchmodat", "fchmodat2")
def test_chmod_changes_files_under_a_write_rule_and_never_makes_set_id(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "chmod", ctx.mem.cstr(tree.w / "f"), 0o600) == Value(0)
    assert mode_of(tree.w / "f") == 0o600
    before = mode_of(tree.ins / "f")
    assert drive(ctx, "chmod", ctx.mem.cstr(tree.ins / "f"), 0o777) == Errno(errno.EACCES)
    assert mode_of(tree.ins / "f") == before
    assert drive(ctx, "chmod", ctx.mem.cstr(tree.w / "f"), 0o4755) == Errno(errno.EPERM)
    assert mode_of(tree.w / "f") == 0o600
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "fchmodat", d, ctx.mem.cstr("f"), 0o640) == Value(0)
    assert mode_of(tree.w / "f") == 0o640
    assert drive(ctx, "fchmodat2", AT_FDCWD, ctx.mem.cstr(tree.w / "link"), 0o600,
                 AT_SYMLINK_NOFOLLOW) == Errno(errno.EOPNOTSUPP)
    assert drive(ctx, "fchmodat2", AT_FDCWD, ctx.mem.cstr(tree.w / "f"), 0o600, 0x1) == Errno(errno.EINVAL)


@pytest.mark.rows("chown", "lchown", "fchownat")
def test_chown_changes_files_under_a_write_rule_only(fake, tree) -> None:
    ctx = host(fake, tree)
    uid = 1234 if os.geteuid() == 0 else os.getuid()
    gid = 4321 if os.geteuid() == 0 else os.getgid()
    assert drive(ctx, "chown", ctx.mem.cstr(tree.w / "f"), uid, -1) == Value(0)
    assert os.stat(tree.w / "f").st_uid == uid
    assert drive(ctx, "chown", ctx.mem.cstr(tree.ins / "f"), uid, -1) == Errno(errno.EACCES)
    assert os.stat(tree.ins / "f").st_uid == os.getuid()
    target_gid = os.stat(tree.w / "f").st_gid
    assert drive(ctx, "lchown", ctx.mem.cstr(tree.w / "link"), -1, gid) == Value(0)
    assert os.lstat(tree.w / "link").st_gid == gid and os.stat(tree.w / "f").st_gid == target_gid
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "fchownat", d, ctx.mem.cstr("f"), -1, gid, 0) == Value(0)
    assert os.stat(tree.w / "f").st_gid == gid


def kernel_answer(act) -> object:  # type: ignore[no-untyped-def]
    """Value(0), or Errno of what the kernel says to the test process itself for act()."""
    try:
        act()
        return Value(0)
    except OSError as exc:
        return Errno(exc.errno)


@pytest.mark.rows("setxattr", "lsetxattr", "removexattr", "lremovexattr")
def test_xattr_writes_under_a_write_rule_only_and_never_a_file_capability(fake, tree) -> None:
    twin = tree.top / "twin"
    twin.mkdir()
    os.symlink("f", twin / "link")
    ctx = host(fake, tree)
    value = ctx.mem.put(b"abc")
    assert drive(ctx, "setxattr", ctx.mem.cstr(tree.w / "f"), ctx.mem.cstr("user.a"), value, 3, 0) == Value(0)
    assert os.getxattr(tree.w / "f", "user.a") == b"abc"
    assert drive(ctx, "setxattr", ctx.mem.cstr(tree.ins / "f"), ctx.mem.cstr("user.a"), value, 3,
                 0) == Errno(errno.EACCES)
    assert "user.a" not in os.listxattr(tree.ins / "f")
    assert drive(ctx, "setxattr", ctx.mem.cstr(tree.w / "f"), ctx.mem.cstr("security.capability"), value, 3,
                 0) == Errno(errno.EPERM)
    # on a symlink: what the kernel says (user.* xattrs are refused on links)
    expected = kernel_answer(lambda: os.setxattr(twin / "link", "user.a", b"abc", follow_symlinks=False))
    assert drive(ctx, "lsetxattr", ctx.mem.cstr(tree.w / "link"), ctx.mem.cstr("user.a"), value, 3, 0) == expected
    assert drive(ctx, "removexattr", ctx.mem.cstr(tree.w / "f"), ctx.mem.cstr("user.a")) == Value(0)
    assert "user.a" not in os.listxattr(tree.w / "f")
    os.setxattr(tree.ins / "f", "user.k", b"v")
    assert drive(ctx, "removexattr", ctx.mem.cstr(tree.ins / "f"), ctx.mem.cstr("user.k")) == Errno(errno.EACCES)
    assert os.getxattr(tree.ins / "f", "user.k") == b"v"
    expected = kernel_answer(lambda: os.removexattr(twin / "link", "user.none", follow_symlinks=False))
    assert drive(ctx, "lremovexattr", ctx.mem.cstr(tree.w / "link"), ctx.mem.cstr("user.none")) == expected
    assert drive(ctx, "lremovexattr", ctx.mem.cstr(tree.ins / "link"), ctx.mem.cstr("user.none")) == Errno(errno.EACCES)


@pytest.mark.rows("utime", "utimes", "futimesat", "utimensat")
def test_times_change_under_a_write_rule_only_and_on_the_link_when_asked(fake, tree) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "utime", ctx.mem.cstr(tree.w / "f"), ctx.mem.put(struct.pack("=qq", 1000, 2000))) == Value(0)
    assert os.stat(tree.w / "f").st_mtime == 2000
    before = os.stat(tree.ins / "f").st_mtime_ns
    assert drive(ctx, "utime", ctx.mem.cstr(tree.ins / "f"), ctx.mem.put(struct.pack("=qq", 1, 1))) == Errno(errno.EACCES)
    assert os.stat(tree.ins / "f").st_mtime_ns == before
    tv = ctx.mem.put(struct.pack("=qqqq", 3, 0, 4, 500000))
    assert drive(ctx, "utimes", ctx.mem.cstr(tree.w / "f"), tv) == Value(0)
    assert os.stat(tree.w / "f").st_mtime_ns == 4_500_000_000
    bad = ctx.mem.put(struct.pack("=qqqq", 3, 0, 4, 1000000))
    assert drive(ctx, "utimes", ctx.mem.cstr(tree.w / "f"), bad) == Errno(errno.EINVAL)
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "futimesat", d, ctx.mem.cstr("f"), ctx.mem.put(struct.pack("=qqqq", 5, 0, 6, 0))) == Value(0)
    assert os.stat(tree.w / "f").st_mtime == 6
    ts = ctx.mem.put(struct.pack("=qqqq", 7, 0, 8, 0))
    target = os.stat(tree.w / "f").st_mtime_ns
    assert drive(ctx, "utimensat", AT_FDCWD, ctx.mem.cstr(tree.w / "link"), ts, AT_SYMLINK_NOFOLLOW) == Value(0)
    assert os.lstat(tree.w / "link").st_mtime == 8 and os.stat(tree.w / "f").st_mtime_ns == target
    f = ctx.fds.open(tree.w / "f")
    assert drive(ctx, "utimensat", f, 0, ts, 0) == Value(0)  # utimensat(fd, NULL, ...): the fd itself
    assert os.stat(tree.w / "f").st_mtime == 8
    g = ctx.fds.open(tree.ins / "f")
    assert drive(ctx, "utimensat", g, 0, ts, 0) == Errno(errno.EACCES)


@pytest.mark.rows("fchmod", "fchown", "fsetxattr", "fremovexattr")
def test_fd_metadata_writes_need_a_write_rule_on_the_fds_object(fake, tree) -> None:
    os.setxattr(tree.ins / "f", "user.k", b"v")
    ctx = host(fake, tree)
    mine = ctx.fds.open(tree.w / "f")       # read-only fds: the rule decides
    theirs = ctx.fds.open(tree.ins / "f")
    assert drive(ctx, "fchmod", mine, 0o640) == Value(0)
    assert mode_of(tree.w / "f") == 0o640
    before = mode_of(tree.ins / "f")
    assert drive(ctx, "fchmod", theirs, 0o777) == Errno(errno.EACCES)
    assert mode_of(tree.ins / "f") == before
    assert drive(ctx, "fchmod", mine, 0o2755) == Errno(errno.EPERM)
    assert drive(ctx, "fchown", mine, os.getuid(), os.getgid()) == Value(0)
    assert drive(ctx, "fchown", theirs, os.getuid(), os.getgid()) == Errno(errno.EACCES)
    value = ctx.mem.put(b"xy")
    assert drive(ctx, "fsetxattr", mine, ctx.mem.cstr("user.b"), value, 2, 0) == Value(0)
    assert os.getxattr(tree.w / "f", "user.b") == b"xy"
    assert drive(ctx, "fsetxattr", theirs, ctx.mem.cstr("user.b"), value, 2, 0) == Errno(errno.EACCES)
    assert drive(ctx, "fremovexattr", mine, ctx.mem.cstr("user.b")) == Value(0)
    assert "user.b" not in os.listxattr(tree.w / "f")
    assert drive(ctx, "fremovexattr", theirs, ctx.mem.cstr("user.k")) == Errno(errno.EACCES)
    assert os.getxattr(tree.ins / "f", "user.k") == b"v"


# --- locks and inotify instances -------------------------------------------------------------------

def locked_elsewhere(path: Path) -> bool:
    """Is an exclusive flock of `path` held (tried from a description of our own)?"""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, LOCK_EX | LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@pytest.mark.rows("flock")
def test_flock_is_taken_on_behalf_waits_in_a_worker_and_needs_a_write_rule(fake, tree) -> None:
    ctx = host(fake, tree)
    first = ctx.fds.open(tree.w / "f")
    second = ctx.fds.open(tree.w / "f")
    assert drive(ctx, "flock", first, LOCK_EX) == Value(0)
    assert locked_elsewhere(tree.w / "f")
    assert drive(ctx, "flock", second, LOCK_EX | LOCK_NB) == Errno(errno.EWOULDBLOCK)
    waiting = begin(ctx, "flock", second, LOCK_EX)
    time.sleep(0.1)
    assert not answered(ctx, waiting)
    fcntl.flock(ctx.fds[first], fcntl.LOCK_UN)  # the holder lets go: the worker takes it
    assert answer(ctx, waiting) == Value(0)
    read_only = ctx.fds.open(tree.ins / "f")
    assert drive(ctx, "flock", read_only, LOCK_SH) == Errno(errno.EACCES)
    assert not locked_elsewhere(tree.ins / "f")
    assert drive(ctx, "flock", first, 3) == Errno(errno.EINVAL)


@pytest.mark.rows("fcntl")
def test_fcntl_record_locks_are_taken_as_ofd_locks_and_need_a_write_rule(fake, tree) -> None:
    ctx = host(fake, tree)
    mine = ctx.fds.open(tree.w / "f", os.O_RDWR)
    lock = ctx.mem.put(FLOCK.pack(F_WRLCK, 0, 0, 0, 0))
    assert drive(ctx, "fcntl", mine, F_SETLK, lock) == Value(0)
    probe = os.open(tree.w / "f", os.O_RDWR | os.O_CLOEXEC)
    try:
        got = fcntl.fcntl(probe, F_OFD_GETLK, FLOCK.pack(F_WRLCK, 0, 0, 0, 0))
    finally:
        os.close(probe)
    assert FLOCK.unpack(got)[0] == F_WRLCK  # held, by another open file description
    other = ctx.fds.open(tree.w / "f", os.O_RDWR)
    query = ctx.mem.put(FLOCK.pack(F_WRLCK, 0, 0, 0, 0))
    assert drive(ctx, "fcntl", other, F_GETLK, query) == Value(0)
    assert FLOCK.unpack(ctx.mem.read(query, FLOCK.size))[0] == F_WRLCK
    theirs = ctx.fds.open(tree.ins / "f")
    assert drive(ctx, "fcntl", theirs, F_SETLK, ctx.mem.put(FLOCK.pack(F_RDLCK, 0, 0, 0, 0))) == Errno(errno.EACCES)
    assert drive(ctx, "fcntl", mine, 12, lock) == Errno(errno.EINVAL)


@pytest.mark.rows("inotify_init", "inotify_init1")
def test_inotify_instances_are_made_on_behalf_with_the_flags_asked(fake, tree) -> None:
    ctx = host(fake, tree)
    got = drive(ctx, "inotify_init")
    assert isinstance(got, Value)
    assert os.readlink(f"/proc/self/fd/{ctx.fds[got.value]}") == "anon_inode:inotify"
    got = drive(ctx, "inotify_init1", IN_NONBLOCK)
    assert isinstance(got, Value)
    assert fcntl.fcntl(ctx.fds[got.value], fcntl.F_GETFL) & os.O_NONBLOCK
    assert drive(ctx, "inotify_init1", 0x1) == Errno(errno.EINVAL)


# --- renames and links: another run's workdir container stays where it is ---------------------------------

RENAME_NOREPLACE = 1
AT_SYMLINK_FOLLOW = 0x400


@pytest.fixture
def box(tree) -> Path:  # type: ignore[no-untyped-def]
    """Another run's container in w/, holding a file of its layer."""
    layer = tree.w / ".sandlock-0-abc" / "cow-1-x" / "1" / "tree"
    layer.mkdir(parents=True)
    (layer / "secret").write_bytes(b"SECRET")
    return tree.w / ".sandlock-0-abc"


@pytest.mark.rows("rename", "renameat", "renameat2")
def test_rename_is_done_for_the_command_but_never_moves_anything_out_of_or_into_a_container(fake, tree, box) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "rename", ctx.mem.cstr(tree.w / "f"), ctx.mem.cstr(tree.w / "g")) == Value(0)  # control
    assert (tree.w / "g").read_bytes() == b"hello" and not (tree.w / "f").exists()
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "renameat", d, ctx.mem.cstr("g"), d, ctx.mem.cstr("f")) == Value(0)
    assert drive(ctx, "renameat2", d, ctx.mem.cstr("f"), d, ctx.mem.cstr("link"),
                 RENAME_NOREPLACE) == Errno(errno.EEXIST)  # the kernel's answer
    assert drive(ctx, "rename", ctx.mem.cstr(tree.w / "missing"), ctx.mem.cstr(tree.w / "x")) == Errno(errno.ENOENT)
    layer = box / "cow-1-x" / "1" / "tree"
    for old, new in ((box, tree.w / "moved"), (box / "cow-1-x", tree.w / "moved"),
                     (layer / "secret", tree.w / "s"), (tree.w / "f", layer / "f")):
        assert drive(ctx, "rename", ctx.mem.cstr(old), ctx.mem.cstr(new)) == Errno(errno.EACCES), (old, new)
    assert drive(ctx, "renameat", d, ctx.mem.cstr(".sandlock-0-abc"), d, ctx.mem.cstr("m")) == Errno(errno.EACCES)
    assert (layer / "secret").exists() and not (tree.w / "moved").exists() and (tree.w / "f").exists()


@pytest.mark.rows("link", "linkat")
def test_link_is_done_for_the_command_but_never_links_a_file_of_a_container_out(fake, tree, box) -> None:
    ctx = host(fake, tree)
    assert drive(ctx, "link", ctx.mem.cstr(tree.w / "f"), ctx.mem.cstr(tree.w / "h")) == Value(0)  # control
    assert os.stat(tree.w / "h").st_ino == os.stat(tree.w / "f").st_ino
    secret = box / "cow-1-x" / "1" / "tree" / "secret"
    assert drive(ctx, "link", ctx.mem.cstr(secret), ctx.mem.cstr(tree.w / "s")) == Errno(errno.EACCES)
    os.symlink(secret, tree.w / "to-secret")
    d = ctx.fds.open(tree.w, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "linkat", d, ctx.mem.cstr("to-secret"), d, ctx.mem.cstr("s"),
                 AT_SYMLINK_FOLLOW) == Errno(errno.EACCES)
    assert drive(ctx, "linkat", d, ctx.mem.cstr("to-secret"), d, ctx.mem.cstr("sl"), 0) == Value(0)  # the link itself
    assert os.path.islink(tree.w / "sl")
    assert drive(ctx, "linkat", d, ctx.mem.cstr("f"), d, ctx.mem.cstr(".sandlock-0-abc/x"), 0) == Errno(errno.EACCES)
    assert drive(ctx, "linkat", d, ctx.mem.cstr("f"), d, ctx.mem.cstr("y"), 0x1) == Errno(errno.EINVAL)
    assert not (tree.w / "s").exists() and not (box / "x").exists()
