"""Device files are content-only: nothing in the sandbox changes their metadata.

Found by the red-team suite: in an emulated root, /dev/null is the host's
device, granted for writing; a sandboxed root's chmod was performed on
behalf by the supervisor, which has the uid that owns /dev/null, and set
the host's /dev/null to mode 0000.  The fixture puts every probed device
back as it was even if a regression lets a change through.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import SYSTEM_READ

from .conftest import SecProgs

DEVICES = ["/dev/null", "/dev/zero", "/dev/full"]


@pytest.fixture
def guarded() -> Iterator[List[Tuple[str, os.stat_result]]]:
    saved = [(path, os.stat(path)) for path in DEVICES]
    try:
        yield saved
    finally:
        for path, st in saved:  # undo whatever got through, then let the test say it
            now = os.stat(path)
            if stat.S_IMODE(now.st_mode) != stat.S_IMODE(st.st_mode) and os.geteuid() == 0:
                os.chmod(path, stat.S_IMODE(st.st_mode))
            if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
                os.chown(path, st.st_uid, st.st_gid)
            if now.st_mtime_ns != st.st_mtime_ns and os.geteuid() == 0:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


PROBE = ('for d in /dev/null /dev/zero /dev/full; do chmod 600 $d; echo "chmod $d $?"; '
         'chown 12345 $d; echo "chown $d $?"; touch -d @1000000000 $d; echo "utime $d $?"; done; '
         'echo data > /dev/null; echo "write $?"')


@pytest.mark.parametrize("mode", ["host", "root"])
def test_device_metadata_cannot_be_changed(who, guarded, mode: str, request: pytest.FixtureRequest) -> None:
    options: List[str] = []
    if mode == "root":
        options = ["--root", str(request.getfixturevalue("busybox_root"))]
    r = who.run([*options, "--", "sh", "-c", PROBE])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "write 0" in lines, r.stdout  # the content stays usable
    refused = [line for line in lines if line.split()[0] in ("chmod", "chown", "utime")]
    assert len(refused) == 9 and all(line.split()[-1] != "0" for line in refused), r.stdout
    for path, st in guarded:
        now = os.stat(path)
        assert (stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid, now.st_mtime_ns) == \
               (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns), f"{path} was changed: {r.stdout}"



# --- which devices the sandbox may open -----------------------------------------------------------
#
# README "What the sandbox allows": /dev/null, zero, full, random, urandom,
# /dev/tty, the terminals sandlock's stdin/stdout/stderr are, /dev/ptmx and
# the pseudo-terminals the sandbox allocates.  Any other device node, under
# any name, by any way of opening it, is EACCES.  dev_open (progs/dev_open.c)
# prints one line per way: "<way> <path> ok <bytes>" or "<way> <path> err <errno>".

WAYS = {"open", "open_wait", "openat_root", "openat2", "rdwr", "o_path", "reopen", "exec"}


class Probe:
    """Where dev_open runs: host mode with some rules, a busybox root, or a workdir."""

    def __init__(self, who, secprogs: SecProgs, scratch: Path, mode: str,  # type: ignore[no-untyped-def]
                 guest: Optional[Path]) -> None:
        self.who, self.mode, self.guest, self.scratch = who, mode, guest, scratch
        if guest is not None:
            shutil.copy(secprogs.musl("dev_open"), guest / "dev_open")
            (guest / "dev_open").chmod(0o755)
            self.prog = "/dev_open"
        else:
            self.prog = str(secprogs.host("dev_open"))
        self.progs_dir = str(secprogs.host_dir)

    def options(self) -> List[str]:
        if self.mode == "root":
            return ["--root", str(self.guest)]
        prog = ["-r", self.progs_dir]
        if self.mode == "default":
            return SYSTEM_READ + prog + ["-r", str(self.scratch)]
        if self.mode == "slash":
            return ["-r", "/"]
        if self.mode == "deny":
            denied = self.scratch / "denied"
            denied.mkdir(exist_ok=True)
            return ["-r", "/", "--fs-deny", str(denied)]
        assert self.mode == "workdir"
        work = self.scratch / "work"
        work.mkdir(exist_ok=True)
        self.who.own(work)
        return ["-r", "/", "--workdir", str(work), "-w", str(work)]

    def command(self, *paths: str) -> List[str]:
        return [*self.options(), "--", self.prog, *paths]

    def run(self, *paths: str) -> subprocess.CompletedProcess:
        return self.who.run(self.command(*paths), timeout=120)

    def run_on(self, terminal: int, *paths: str) -> subprocess.CompletedProcess:
        """Run with `terminal` (an fd) as sandlock's stdin, stdout and stderr... but keep the output."""
        cli = self.who._cli
        return subprocess.run(cli.command(self.command(*paths), self.who.is_user), stdin=terminal,
                              capture_output=True, text=True, timeout=120, cwd="/",
                              env=cli.environment(self.who.is_user, None))


def ways(r: subprocess.CompletedProcess, path: str) -> Dict[str, List[str]]:
    """{way: [ok|err, value]} of dev_open's lines about `path`."""
    out = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[1] == path:
            out[fields[0]] = fields[2:]
    return out


def assert_refused(r: subprocess.CompletedProcess, path: str, errnos=(errno.EACCES,)) -> None:
    seen = ways(r, path)
    assert seen, f"no line about {path}: {r.stdout}\n{r.stderr}"
    assert {w for w in seen} <= WAYS and "open" in seen, r.stdout
    opened = {w: v for w, v in seen.items() if v[0] == "ok"}
    assert not opened, f"{path} was opened: {opened}\n{r.stdout}"
    wrong = {w: v for w, v in seen.items() if int(v[1]) not in errnos}
    assert not wrong, f"{path}: unexpected errno {wrong} (expected {errnos})\n{r.stdout}"


def assert_opened(r: subprocess.CompletedProcess, path: str) -> None:
    seen = ways(r, path)
    opened = {w for w, v in seen.items() if v[0] == "ok"}
    assert opened >= {"open", "open_wait", "openat2", "rdwr", "o_path", "reopen"}, f"{path}: {r.stdout}\n{r.stderr}"


@pytest.fixture
def other_session(who) -> Iterator[Tuple[int, str]]:  # type: ignore[no-untyped-def]
    """A pseudo-terminal of 'another session' of the same user, with keystrokes waiting in it."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    if os.geteuid() == 0:
        os.chown(name, who.uid, who.gid)
    os.write(master, b"typed-password\n")
    try:
        yield master, name
    finally:
        os.close(slave)
        os.close(master)


HOST_MODES = ["default", "slash", "deny", "workdir"]


@pytest.fixture(params=HOST_MODES + ["root"])
def probe(request: pytest.FixtureRequest, who, secprogs: SecProgs, scratch: Path) -> Probe:  # type: ignore[no-untyped-def]
    guest = request.getfixturevalue("busybox_root") if request.param == "root" else None
    return Probe(who, secprogs, scratch, request.param, guest)


def test_another_sessions_terminal_cannot_be_opened(probe: Probe, other_session) -> None:  # type: ignore[no-untyped-def]
    master, name = other_session
    r = probe.run(name, "/dev/null")
    assert r.returncode == 0, r.stderr
    assert_refused(r, name)
    assert_opened(r, "/dev/null")
    os.set_blocking(master, False)
    assert os.read(master, 64).startswith(b"typed-password"), "the keystrokes were taken"  # echoed, never read


def test_the_terminal_the_command_runs_on_can_be_opened_by_name(probe: Probe, other_session) -> None:  # type: ignore[no-untyped-def]
    master, name = other_session
    fd = os.open(name, os.O_RDWR | os.O_NOCTTY)
    try:
        r = probe.run_on(fd, name)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert_opened(r, name)


def test_a_terminal_the_sandbox_allocates_can_be_opened_by_name(probe: Probe) -> None:
    r = probe.run("+pty", "+pty")
    assert r.returncode == 0, r.stderr
    names = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("openpty ")]
    assert len(names) == 2 and all(n.startswith("/dev/pts/") for n in names), r.stdout
    for name in names:
        assert_opened(r, name)


def make_nodes(directory: Path) -> List[str]:
    """Harmless device nodes (null, zero, full, and a block node opened read-only) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for name, kind, major, minor in (("null", stat.S_IFCHR, 1, 3), ("zero", stat.S_IFCHR, 1, 5),
                                     ("full", stat.S_IFCHR, 1, 7), ("disk", stat.S_IFBLK, 7, 0)):
        os.mknod(directory / name, kind | 0o666, os.makedev(major, minor))
        os.chmod(directory / name, 0o666)
        made.append(name)
    return made


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device node needs root")


@needs_root
def test_device_nodes_made_in_a_granted_tree_cannot_be_opened(probe: Probe) -> None:
    if probe.guest is not None:
        base, inside = probe.guest / "opt" / "img", "/opt/img"
    else:
        base = probe.scratch / "img"
        inside = str(base)
    names = make_nodes(base)
    r = probe.run(*[f"{inside}/{n}" for n in names], "/dev/zero")
    assert r.returncode == 0, r.stderr
    for name in names:
        assert_refused(r, f"{inside}/{name}")
    assert_opened(r, "/dev/zero")


@needs_root
def test_the_root_images_own_dev_nodes_are_never_reached(who, secprogs: SecProgs, scratch: Path,  # type: ignore[no-untyped-def]
                                                        busybox_root: Path) -> None:
    """In a root, /dev is the emulated one: the image's own dev/ nodes are reached by no
    name (openat from an fd of / included); a link of the image into its dev/ is refused."""
    probe = Probe(who, secprogs, scratch, "root", busybox_root)
    for name in ("zero", "kmsg"):
        (busybox_root / "dev" / name).unlink(missing_ok=True)
    os.mknod(busybox_root / "dev" / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    os.mknod(busybox_root / "dev" / "kmsg", stat.S_IFCHR | 0o666, os.makedev(1, 11))
    os.chmod(busybox_root / "dev" / "zero", 0o666)
    os.chmod(busybox_root / "dev" / "kmsg", 0o666)
    (busybox_root / "opt").mkdir(exist_ok=True)
    os.symlink("../dev/zero", busybox_root / "opt" / "zero-link")
    r = probe.run("/dev/zero", "/dev/kmsg", "/opt/zero-link")
    assert r.returncode == 0, r.stderr
    assert_opened(r, "/dev/zero")
    assert ways(r, "/dev/zero")["openat_root"][0] == "ok", r.stdout  # dev/zero from an fd of /: the emulated one
    assert_refused(r, "/dev/kmsg", (errno.ENOENT,))    # not a device of the emulated /dev
    assert_refused(r, "/opt/zero-link")


def test_debian_images_dev_nodes_are_not_the_devices_the_command_gets(who, secprogs: SecProgs, scratch: Path,  # type: ignore[no-untyped-def]
                                                                      deb_root: Path) -> None:
    """The Debian image ships dev/console (the host's console, mode 0666): never reached."""
    if not (deb_root / "dev" / "console").exists():
        pytest.skip("this Debian image has no dev/console node")
    r = who.run(["--root", str(deb_root), "--", "python3", "-c",
                 "import os\n"
                 "for way, open_ in (('path', lambda: os.open('/dev/console', os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)),\n"
                 "                   ('below', lambda: os.open('dev/console', os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY,"
                 " dir_fd=os.open('/', os.O_RDONLY)))):\n"
                 "    try:\n"
                 "        open_(); print(way, 'opened')\n"
                 "    except OSError as e:\n"
                 "        print(way, e.errno)\n"
                 "print('null', os.open('dev/null', os.O_RDWR, dir_fd=os.open('/', os.O_RDONLY)) >= 0)\n"],
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == [f"path {errno.ENOENT}", f"below {errno.ENOENT}", "null True"], r.stdout


@needs_root
@pytest.mark.parametrize("mode", ["slash", "deny"])
def test_host_devices_under_a_grant_of_slash_are_refused(who, secprogs: SecProgs, scratch: Path,  # type: ignore[no-untyped-def]
                                                         mode: str) -> None:
    probe = Probe(who, secprogs, scratch, mode, None)
    r = probe.run("/dev/loop0", "/dev/kmsg", "/dev/console")
    assert r.returncode == 0, r.stderr
    for path in ("/dev/loop0", "/dev/kmsg", "/dev/console"):
        if os.path.exists(path):
            assert_refused(r, path)


CONFINED = """
import errno, os, sys, sandlock
sandlock.confine(fs_readable=["/"])
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY))
        print(path, "opened")
    except OSError as exc:
        print(path, exc.errno)
"""


def test_landlock_itself_refuses_other_devices_under_a_grant_of_slash(who, other_session) -> None:  # type: ignore[no-untyped-def]
    """No supervisor here: Landlock alone (what a thread racing the supervisor would meet)."""
    _, name = other_session
    paths = [name, "/dev/loop0", "/dev/null", "/dev/shm"]
    r = who.python(CONFINED, args=paths)
    assert r.returncode == 0, r.stderr
    result = dict(line.split() for line in r.stdout.decode().splitlines())
    assert result[name] == str(errno.EACCES), result
    if os.path.exists("/dev/loop0"):
        assert result["/dev/loop0"] == str(errno.EACCES), result
    assert result["/dev/null"] == "opened" and result["/dev/shm"] == "opened", result  # controls


def test_the_ptys_a_run_remembers_are_bounded_and_a_freed_number_is_not_the_sandboxs() -> None:
    from sandlock import _resolve
    devices = _resolve.Devices(["/dev/null"], "/dev/pts")
    devices.KEPT = 2
    ptys = [os.openpty() for _ in range(3)]
    try:
        for master, slave in ptys:
            with pytest.raises(PermissionError):
                devices.check(slave, os.fstat(slave).st_mode)  # not allocated by the sandbox
            devices.allocated(master, os.fstat(master).st_mode)
        allowed = []
        for _, slave in ptys:
            try:
                devices.check(slave, os.fstat(slave).st_mode)
                allowed.append(True)
            except PermissionError:
                allowed.append(False)
        assert allowed == [False, True, True]  # the oldest was forgotten
        # a pty that goes frees its number; whoever gets it next is not the sandbox
        master, slave = ptys.pop()
        name = os.ttyname(slave)
        held = os.open(name, os.O_PATH)
        os.close(slave)
        os.close(master)
        assert os.fstat(held).st_nlink == 0  # what Devices relies on
        os.close(held)
        ptys.append(os.openpty())
        with pytest.raises(PermissionError):
            devices.check(ptys[-1][1], os.fstat(ptys[-1][1]).st_mode)
    finally:
        devices.close()
        for master, slave in ptys:
            os.close(master)
            os.close(slave)
