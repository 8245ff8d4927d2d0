"""In-process unit tests of the emulated root's rows (_table.root_rows(): _rootops, _rootexec and the
socket rows that show guest paths), driven through decode -> check -> do with a fake
context (tests/fakectx.py) whose root is a small tree in a test directory: every path
the command names is a guest path, and what changes is checked on the host.

The guest root: /bin/prog (an ELF the supervisor may plan an exec of: /bin/true made
static; never run here), /etc/hostname, /etc/dir/, /tmp/ under a write rule.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from fakectx import AT_FDCWD, AT_SYMLINK_NOFOLLOW, CONTINUE, Errno, Value, _syscalls, module
from fakectx import drive, fake  # noqa: F401  (fixture)

_elf = module("_elf")

AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = 0x200, 0x400, 0x1000
RENAME_NOREPLACE, RENAME_WHITEOUT = 1, 4
PT_INTERP, PT_NULL = 3, 0


def static_program() -> bytes:
    """/bin/true with its PT_INTERP entry made PT_NULL: an ELF without an interpreter."""
    data = bytearray(Path("/bin/true").read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        at = phoff + i * phentsize
        if struct.unpack_from("<I", data, at)[0] == PT_INTERP:
            struct.pack_into("<I", data, at, PT_NULL)
    assert _elf.parse_elf(lambda off, size: bytes(data[off:off + size]), _syscalls.machine()).interp is None
    return bytes(data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for d in ("bin", "etc/dir", "tmp"):
        (r / d).mkdir(parents=True)
    (r / "bin/prog").write_bytes(static_program())
    (r / "bin/prog").chmod(0o755)
    (r / "etc/hostname").write_bytes(b"guest\n")
    (r / "tmp").chmod(0o1777)
    return r


def in_root(fake, root: Path):  # type: ignore[no-untyped-def]
    return fake(root=root, writable=[root / "tmp"])


@pytest.mark.root_rows("mkdir", "mkdirat")
def test_mkdir_makes_directories_where_a_write_rule_is_only(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    assert drive(ctx, "mkdir", ctx.mem.cstr("/tmp/d"), 0o755) == Value(0)
    assert (root / "tmp/d").is_dir()
    assert drive(ctx, "mkdir", ctx.mem.cstr("/tmp/d"), 0o755) == Errno(errno.EEXIST)
    assert drive(ctx, "mkdir", ctx.mem.cstr("/etc/new"), 0o755) == Errno(errno.EACCES)
    assert not (root / "etc/new").exists()
    tmp = ctx.fds.open(root / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "mkdirat", tmp, ctx.mem.cstr("e"), 0o700) == Value(0)
    assert (root / "tmp/e").is_dir()


@pytest.mark.root_rows("mkdir")
def test_mkdir_of_the_root_dot_or_dotdot_where_writing_is_refused_says_it_exists(fake, root: Path) -> None:
    # the kernel's lookup finds "/", "." and ".." before any permission check; mkdir -p
    # (busybox's) walks from "/" and stops on anything but EEXIST
    ctx = in_root(fake, root)
    for path in ("/", "/etc/.", "/etc/dir/..", "/etc/dir/."):
        assert drive(ctx, "mkdir", ctx.mem.cstr(path), 0o755) == Errno(errno.EEXIST), path
    assert drive(ctx, "mkdir", ctx.mem.cstr("/etc/dir/new/.."), 0o755) == Errno(errno.ENOENT)
    assert drive(ctx, "mkdir", ctx.mem.cstr("/etc/new"), 0o755) == Errno(errno.EACCES)


@pytest.mark.root_rows("mknod", "mknodat")
def test_mknod_makes_fifos_and_files_but_never_devices(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    assert drive(ctx, "mknod", ctx.mem.cstr("/tmp/fifo"), stat.S_IFIFO | 0o644, 0) == Value(0)
    assert stat.S_ISFIFO(os.lstat(root / "tmp/fifo").st_mode)
    assert drive(ctx, "mknod", ctx.mem.cstr("/tmp/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3)) == Errno(errno.EPERM)
    assert not (root / "tmp/null").exists()
    assert drive(ctx, "mknod", ctx.mem.cstr("/etc/fifo"), stat.S_IFIFO | 0o644, 0) == Errno(errno.EACCES)
    tmp = ctx.fds.open(root / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "mknodat", tmp, ctx.mem.cstr("plain"), stat.S_IFREG | 0o600, 0) == Value(0)
    assert stat.S_ISREG(os.lstat(root / "tmp/plain").st_mode)


@pytest.mark.root_rows("unlink", "unlinkat", "rmdir")
def test_removals_happen_where_a_write_rule_is_only(fake, root: Path) -> None:
    (root / "tmp/f").write_bytes(b"")
    (root / "tmp/d").mkdir()
    (root / "tmp/e").mkdir()
    ctx = in_root(fake, root)
    assert drive(ctx, "unlink", ctx.mem.cstr("/tmp/f")) == Value(0)
    assert not (root / "tmp/f").exists()
    assert drive(ctx, "unlink", ctx.mem.cstr("/etc/hostname")) == Errno(errno.EACCES)
    assert (root / "etc/hostname").exists()
    assert drive(ctx, "unlink", ctx.mem.cstr("/tmp/d")) == Errno(errno.EISDIR)
    assert drive(ctx, "unlinkat", AT_FDCWD, ctx.mem.cstr("/tmp/d"), AT_REMOVEDIR) == Value(0)
    assert not (root / "tmp/d").exists()
    assert drive(ctx, "unlinkat", AT_FDCWD, ctx.mem.cstr("/tmp/e"), 0x1) == Errno(errno.EINVAL)
    assert drive(ctx, "rmdir", ctx.mem.cstr("/tmp/e")) == Value(0)
    assert not (root / "tmp/e").exists()
    assert drive(ctx, "rmdir", ctx.mem.cstr("/etc/dir")) == Errno(errno.EACCES)
    assert (root / "etc/dir").is_dir()


@pytest.mark.root_rows("rename", "renameat", "renameat2")
def test_renames_stay_where_a_write_rule_is(fake, root: Path) -> None:
    (root / "tmp/a").write_bytes(b"a")
    (root / "tmp/x").write_bytes(b"x")
    ctx = in_root(fake, root)
    assert drive(ctx, "rename", ctx.mem.cstr("/tmp/a"), ctx.mem.cstr("/tmp/b")) == Value(0)
    assert (root / "tmp/b").read_bytes() == b"a" and not (root / "tmp/a").exists()
    assert drive(ctx, "rename", ctx.mem.cstr("/etc/hostname"), ctx.mem.cstr("/tmp/h")) == Errno(errno.EACCES)
    assert (root / "etc/hostname").exists() and not (root / "tmp/h").exists()
    tmp = ctx.fds.open(root / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "renameat", tmp, ctx.mem.cstr("b"), tmp, ctx.mem.cstr("c")) == Value(0)
    assert (root / "tmp/c").read_bytes() == b"a"
    assert drive(ctx, "renameat2", AT_FDCWD, ctx.mem.cstr("/tmp/c"), AT_FDCWD, ctx.mem.cstr("/tmp/x"),
                 RENAME_NOREPLACE) == Errno(errno.EEXIST)
    assert (root / "tmp/x").read_bytes() == b"x"
    assert drive(ctx, "renameat2", AT_FDCWD, ctx.mem.cstr("/tmp/c"), AT_FDCWD, ctx.mem.cstr("/tmp/y"),
                 RENAME_WHITEOUT) == Errno(errno.EPERM)
    assert drive(ctx, "renameat2", AT_FDCWD, ctx.mem.cstr("/tmp/c"), AT_FDCWD, ctx.mem.cstr("/tmp/y"),
                 RENAME_NOREPLACE) == Value(0)
    assert (root / "tmp/y").read_bytes() == b"a"


@pytest.mark.root_rows("link", "linkat")
def test_hard_links_need_a_write_rule_on_the_source_too(fake, root: Path) -> None:
    (root / "tmp/x").write_bytes(b"x")
    ctx = in_root(fake, root)
    assert drive(ctx, "link", ctx.mem.cstr("/tmp/x"), ctx.mem.cstr("/tmp/y")) == Value(0)
    assert os.stat(root / "tmp/x").st_ino == os.stat(root / "tmp/y").st_ino
    assert drive(ctx, "link", ctx.mem.cstr("/etc/hostname"), ctx.mem.cstr("/tmp/h")) == Errno(errno.EACCES)
    assert not (root / "tmp/h").exists()
    assert drive(ctx, "linkat", AT_FDCWD, ctx.mem.cstr("/tmp/x"), AT_FDCWD, ctx.mem.cstr("/tmp/z"),
                 0x1) == Errno(errno.EINVAL)
    assert drive(ctx, "linkat", AT_FDCWD, ctx.mem.cstr("/tmp/x"), AT_FDCWD, ctx.mem.cstr("/tmp/z"),
                 AT_SYMLINK_FOLLOW) == Value(0)
    assert os.stat(root / "tmp/z").st_ino == os.stat(root / "tmp/x").st_ino


@pytest.mark.root_rows("symlink", "symlinkat", "readlink", "readlinkat")
def test_symlinks_keep_the_guest_path_as_written_and_read_back_as_written(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    assert drive(ctx, "symlink", ctx.mem.cstr("/etc/hostname"), ctx.mem.cstr("/tmp/s")) == Value(0)
    assert os.readlink(root / "tmp/s") == "/etc/hostname"  # a guest path, resolved in the root
    assert drive(ctx, "symlink", ctx.mem.cstr("x"), ctx.mem.cstr("/etc/s")) == Errno(errno.EACCES)
    tmp = ctx.fds.open(root / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "symlinkat", ctx.mem.cstr("s"), tmp, ctx.mem.cstr("s2")) == Value(0)
    assert os.readlink(root / "tmp/s2") == "s"
    buf = ctx.mem.buffer(64)
    assert drive(ctx, "readlink", ctx.mem.cstr("/tmp/s"), buf, 64) == Value(13)
    assert ctx.mem.read(buf, 13) == b"/etc/hostname"
    assert drive(ctx, "readlinkat", tmp, ctx.mem.cstr("s2"), buf, 64) == Value(1)
    assert ctx.mem.read(buf, 1) == b"s"
    assert drive(ctx, "readlink", ctx.mem.cstr("/etc/hostname"), buf, 64) == Errno(errno.EINVAL)
    assert drive(ctx, "readlink", ctx.mem.cstr("/proc/self"), buf, 64) == Value(len(str(os.getpid())))
    assert ctx.mem.read(buf, len(str(os.getpid()))) == str(os.getpid()).encode()


@pytest.mark.root_rows("getcwd", "chdir", "fchdir")
def test_the_cwd_is_virtual_kept_by_the_supervisor_and_shown_as_a_guest_path(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    buf = ctx.mem.buffer(64)
    assert drive(ctx, "getcwd", buf, 64) == Value(2)
    assert ctx.mem.read(buf, 2) == b"/\0"
    assert drive(ctx, "chdir", ctx.mem.cstr("/tmp")) == Value(0)
    assert drive(ctx, "getcwd", buf, 64) == Value(5)
    assert ctx.mem.read(buf, 5) == b"/tmp\0"
    assert drive(ctx, "getcwd", buf, 3) == Errno(errno.ERANGE)
    assert drive(ctx, "chdir", ctx.mem.cstr("/etc/hostname")) == Errno(errno.ENOTDIR)
    assert drive(ctx, "chdir", ctx.mem.cstr("/nowhere")) == Errno(errno.ENOENT)
    etc = ctx.fds.open(root / "etc" / "dir", os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "fchdir", etc) == Value(0)
    assert drive(ctx, "getcwd", buf, 64) == Value(9)
    assert ctx.mem.read(buf, 9) == b"/etc/dir\0"
    outside = ctx.fds.open(root.parent, os.O_RDONLY | os.O_DIRECTORY)
    assert drive(ctx, "fchdir", outside) == Errno(errno.EACCES)


@pytest.mark.root_rows("execve", "execveat")
def test_exec_of_a_program_of_the_root_is_continued_on_a_rewritten_path_to_an_injected_fd(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    argv0 = ctx.mem.cstr("prog")
    argv, envp = ctx.mem.pointers(argv0), ctx.mem.pointers()
    path = ctx.mem.cstr("/bin/prog")
    before = set(ctx.fds.fds)
    assert drive(ctx, "execve", path, argv, envp) is CONTINUE
    # the kernel is given a name in the anchor directory that leads to the injected fd
    injected = set(ctx.fds.fds) - before
    assert len(injected) == 1
    assert os.fstat(ctx.fds[injected.pop()]).st_size == os.stat(root / "bin/prog").st_size
    assert ctx.mem.string(path) != b"/bin/prog"
    assert ctx.mem.string(argv0) == b"prog"
    assert drive(ctx, "execve", ctx.mem.cstr("/etc/hostname"), argv, envp) == Errno(errno.EACCES)
    assert drive(ctx, "execve", ctx.mem.cstr("/bin/none"), argv, envp) == Errno(errno.ENOENT)
    bin_dir = ctx.fds.open(root / "bin", os.O_RDONLY | os.O_DIRECTORY)
    os.link(root / "bin/prog", root / "bin/a-program-with-a-long-name")
    assert drive(ctx, "execveat", bin_dir, ctx.mem.cstr("a-program-with-a-long-name"), argv, envp, 0) is CONTINUE
    # README: a relative path shorter than the /proc/self/fd/N name it becomes cannot be rewritten
    assert drive(ctx, "execveat", bin_dir, ctx.mem.cstr("prog"), argv, envp, 0) == Errno(errno.ENAMETOOLONG)
    assert drive(ctx, "execveat", bin_dir, ctx.mem.cstr("prog"), argv, envp, 0x1) == Errno(errno.EINVAL)


@pytest.mark.root_rows("bind", "getsockname", "getpeername")
def test_unix_sockets_are_bound_in_the_guest_tree_and_named_by_their_guest_path(fake, root: Path) -> None:
    ctx = in_root(fake, root)
    server = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
    address = struct.pack("=H", socket.AF_UNIX) + b"/tmp/sock\0"
    assert drive(ctx, "bind", server, ctx.mem.put(address), len(address)) == Value(0)
    assert stat.S_ISSOCK(os.lstat(root / "tmp/sock").st_mode)
    elsewhere = struct.pack("=H", socket.AF_UNIX) + b"/etc/sock\0"
    other = ctx.fds.add(socket.socket(socket.AF_UNIX).detach())
    assert drive(ctx, "bind", other, ctx.mem.put(elsewhere), len(elsewhere)) == Errno(errno.EACCES)
    assert not (root / "etc/sock").exists()
    buf, size = ctx.mem.buffer(128), ctx.mem.put(struct.pack("=I", 128))
    assert drive(ctx, "getsockname", server, buf, size) == Value(0)
    assert ctx.mem.read(buf, ctx.mem.u32(size)) == address
    socket.socket(fileno=os.dup(ctx.fds[server])).listen(1)
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(root / "tmp/sock"))
    peer = ctx.fds.add(client.detach())
    assert drive(ctx, "getpeername", peer, buf, size) == Value(0)
    assert ctx.mem.read(buf, ctx.mem.u32(size)) == address


@pytest.mark.root_rows("newfstatat")
def test_stat_in_a_root_sees_guest_paths_and_the_guest_tree(fake, root: Path) -> None:
    """(newfstatat is a root row of its own once the emulated-root stat leaves the host handler.)"""
    ctx = in_root(fake, root)
    buf = ctx.mem.buffer(256)
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr("/etc/hostname"), buf, 0) == Value(0)
    assert int.from_bytes(ctx.mem.read(buf + 48, 8), "little") == 6
    os.symlink("hostname", root / "etc/link")
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr("/etc/link"), buf, AT_SYMLINK_NOFOLLOW) == Value(0)
    assert int.from_bytes(ctx.mem.read(buf + 48, 8), "little") == len("hostname")
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr("/../../etc/hostname"), buf, 0) == Value(0)
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr("/nope"), buf, 0) == Errno(errno.ENOENT)
    # the host's name of that file means nothing in the root
    assert drive(ctx, "newfstatat", AT_FDCWD, ctx.mem.cstr(str(root / "etc/hostname")), buf, 0) == Errno(errno.ENOENT)


@pytest.mark.parametrize("path, normal", [
    (b"/a/.git/objects/ab", b"/a/.git/objects/ab"),   # a dotfile is a name: as it is
    (b"/a/..b/c.", b"/a/..b/c."),
    (b"/", b"/"),
    (b"/a/./b/../c/", b"/a/c"),
    (b"//a//b/.", b"/a/b"),
    (b"/a/b/..", b"/a"),
    (b"/..", b"/"),
    (b"/proc/1/cwd/../x", b"/proc/1/cwd/../x"),       # '..' after a process's cwd is not lexical
    (b"/proc/1/task/2/root/./../y", b"/proc/1/task/2/root/../y"),
])
def test_a_path_routed_in_a_root_is_in_its_lexical_normal_form(path: bytes, normal: bytes) -> None:
    """_rootfs.normalise (a path already normal is returned as it is, without the loop)."""
    rootfs = module("_rootfs")
    assert rootfs.normalise(path) == normal
    # taken as it is exactly when no component is '', '.' or '..' (no trailing '/')
    assert rootfs._clean_absolute(path) == (path not in (b"/", b"/proc/1/cwd/../x") and path == normal)
