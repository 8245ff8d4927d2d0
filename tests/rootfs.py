"""Cached root filesystems and musl programs for the emulated-root (--root) tests.

Every fixture is built once, into a directory keyed by what built it, under
``shared_cache_dir()`` (/var/cache/sandlock-tests, mode 0755, so the
unprivileged test user can read it; ~/.cache is not readable when HOME=/root is
0700).  A build goes into a temporary directory next to its final place and is
renamed there only when complete, under an fcntl lock, so an interrupted build
never looks finished and two test processes never build the same thing twice.

- ``debian_rootfs()``: Debian bookworm minbase + python3, procps (debootstrap,
  from the mirror apt on this machine uses); takes a minute or two the first time;
- ``debian_testsuite_rootfs()``: a copy of ``debian_rootfs()`` with CPython's
  regression tests (Debian's libpython3.11-testsuite, apt-get in a chroot);
- ``debian_tools_rootfs()``: a copy of ``debian_rootfs()`` with git, gcc, make,
  libc6-dev, xz-utils and python3-venv (the same way);
- ``busybox_rootfs()``: /bin/busybox of busybox-static plus one symlink per applet;
- ``musl_programs()``: tests/progs/legacy.c (static) and hello_musl.c (dynamic,
  interpreter /lib/ld-musl-x86_64.so.1) compiled with musl-gcc.

A missing tool raises ``MissingPackage`` (a RuntimeError) naming the Debian
package to install; ``APT_PACKAGES`` lists them all for .ci/run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

APT_PACKAGES = ["debootstrap", "busybox-static", "musl-tools", "debian-archive-keyring"]

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ["python3", "procps"]
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
BUSYBOX = Path("/bin/busybox")
MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")
PROGS = Path(__file__).resolve().parent / "progs"
# The lines legacy-static prints, in order (see tests/progs/legacy.c).
LEGACY_CALLS = ("chdir", "getcwd", "mkdir", "creat", "open", "stat", "access", "chmod",
                "chown", "symlink", "lstat", "readlink", "lchown", "link", "rename",
                "utimes", "mknod", "getdents64", "unlink", "rmdir", "open_enoent")
_VERSION = "v1"  # bump when a build recipe changes


class MissingPackage(RuntimeError):
    """A tool needed to build a fixture is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} is missing: install the Debian package {package} "
                         f"(apt-get install -y {package})")
        self.package = package


def cache_dir() -> Path:
    """~/.cache/sandlock-tests, for caches only root needs to read."""
    path = Path.home() / ".cache" / "sandlock-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_cache_dir() -> Path:
    """/var/cache/sandlock-tests (0755): caches the unprivileged test user reads."""
    path = Path("/var/cache/sandlock-tests")
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    return path


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise MissingPackage(tool, package)
    return found


def _remove_tree(path: Path) -> None:
    """Remove a stale partial build, unmounting anything left mounted inside it."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(shared_cache_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return shared_cache_dir()/name, running build(tmp) then renaming if it is absent."""
    final = shared_cache_dir() / name
    if final.is_dir():  # fast path: readable without the lock (unprivileged user)
        return final
    with _locked(name):
        if final.is_dir():
            return final
        for stale in final.parent.glob(f".{name}.tmp-*"):
            _remove_tree(stale)
        tmp = final.parent / f".{name}.tmp-{os.getpid()}"
        tmp.mkdir()
        tmp.chmod(0o755)  # our own directory: "/" of a rootfs is 0755
        try:
            build(tmp)
            os.rename(tmp, final)
        except BaseException:
            _remove_tree(tmp)
            raise
    return final


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses for the suite (not -security)."""
    sources = Path("/etc/apt/sources.list.d")
    files = [Path("/etc/apt/sources.list")] + sorted(sources.glob("*.list")) + sorted(sources.glob("*.sources"))
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text()
        if file.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split()
                        and fields.get("Enabled", "yes").lower() != "no"):
                    return fields["URIs"].split()[0]
        else:  # one-line style: deb [options] URI SUITE COMPONENTS
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == SUITE:
                    return m.group(1)
    raise RuntimeError(f"no apt source for Debian {SUITE} in /etc/apt/sources.list(.d)")


def debian_rootfs() -> Path:
    """A Debian bookworm minbase rootfs with python3 and procps (built by debootstrap)."""
    name = f"debian-{SUITE}-{VARIANT}-{'-'.join(INCLUDE)}-{_VERSION}"
    if (shared_cache_dir() / name).is_dir():
        return shared_cache_dir() / name
    debootstrap = _require("debootstrap", "debootstrap")
    _require("gpgv", "gpgv")
    if not KEYRING.is_file():
        raise MissingPackage(str(KEYRING), "debian-archive-keyring")
    if os.geteuid() != 0:
        raise RuntimeError("building the Debian rootfs with debootstrap needs root")
    mirror = apt_mirror()

    def build(tmp: Path) -> None:
        cmd = [debootstrap, f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}",
               f"--keyring={KEYRING}", SUITE, str(tmp), mirror]
        log = tmp.parent / f".{name}.log"
        with open(log, "w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, umask=0o022).returncode
        if rc != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed with status {rc}:\n{tail}")

    return _build_once(name, build)


# netbase: /etc/services and /etc/protocols, which test_socket looks names up in
TESTSUITE_PACKAGES = ["libpython3.11-testsuite", "netbase"]
_TESTSUITE_VERSION = "v2"  # bump when debian_testsuite_rootfs's recipe changes
# debootstrap writes no /etc/hosts; the socket tests bind "localhost".
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def debian_testsuite_rootfs() -> Path:
    """``debian_rootfs()`` plus CPython's own regression tests (``python3 -m test``).

    Derived from a copy of the shared Debian root (never changed in place): its
    apt, pointed at the same mirror debootstrap used, installs
    TESTSUITE_PACKAGES in a chroot, so the test suite matches the root's
    python3.11 exactly; /etc/hosts names localhost.  Needs root and the network, the first time only.
    """
    return _derived_rootfs(TESTSUITE_PACKAGES, _TESTSUITE_VERSION, hosts=True)


# The real tools of tests/test_root_tools.py: git; gcc, make and libc6-dev (with the
# static libc for -static); xz-utils for tar's J; python3-venv (ensurepip's bundled pip).
TOOLS_PACKAGES = ["git", "gcc", "make", "libc6-dev", "xz-utils", "python3-venv"]
_TOOLS_VERSION = "v1"  # bump when debian_tools_rootfs's recipe changes


def debian_tools_rootfs() -> Path:
    """``debian_rootfs()`` plus TOOLS_PACKAGES, derived like ``debian_testsuite_rootfs()``."""
    return _derived_rootfs(TOOLS_PACKAGES, _TOOLS_VERSION, hosts=False)


def _derived_rootfs(packages: List[str], version: str, hosts: bool) -> Path:
    """A copy of ``debian_rootfs()`` with packages installed by its own apt-get in a chroot,
    cached under a name made of the base's, the packages and version."""
    base = debian_rootfs()
    name = f"{base.name}+{'+'.join(packages)}-{version}"
    if (shared_cache_dir() / name).is_dir():
        return shared_cache_dir() / name
    if os.geteuid() != 0:
        raise RuntimeError(f"deriving the Debian rootfs {name} (apt-get in a chroot) needs root")

    def build(tmp: Path) -> None:
        log = tmp.parent / f".{name}.log"
        subprocess.run(["cp", "-a", f"{base}/.", str(tmp)], check=True)
        shutil.copyfile("/etc/resolv.conf", tmp / "etc" / "resolv.conf")  # for apt's downloads only
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C", "HOME": "/root"}
        steps = [["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", *packages],
                 ["apt-get", "clean"]]
        with open(log, "w") as out:
            for step in steps:
                cmd = ["chroot", str(tmp), *step]
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, umask=0o022).returncode
                if rc != 0:
                    out.flush()
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{' '.join(cmd)} failed with status {rc}:\n{tail}")
        shutil.copyfile(base / "etc" / "resolv.conf", tmp / "etc" / "resolv.conf")
        if hosts:
            (tmp / "etc" / "hosts").write_text(HOSTS)
            (tmp / "etc" / "hosts").chmod(0o644)
        for lists in (tmp / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
            lists.unlink()  # 40+ MB of package indexes nothing here reads again

    return _build_once(name, build)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def busybox_rootfs() -> Path:
    """A tiny rootfs: static busybox, a symlink per applet, /etc/passwd and /etc/group."""
    if not BUSYBOX.is_file() or elf_interpreter(BUSYBOX) is not None:
        raise MissingPackage(f"a static {BUSYBOX}", "busybox-static")
    name = f"busybox-{_sha256(BUSYBOX)[:16]}-{_VERSION}"

    def build(tmp: Path) -> None:
        applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True,
                                 text=True).stdout.split()
        for d in ("bin", "sbin", "usr/bin", "etc", "tmp", "dev", "proc"):
            (tmp / d).mkdir(parents=True, mode=0o755)
            (tmp / d).chmod(0o755)
        (tmp / "tmp").chmod(0o1777)
        shutil.copy(BUSYBOX, tmp / "bin" / "busybox")
        (tmp / "bin" / "busybox").chmod(0o755)
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", tmp / "bin" / applet)
        (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        (tmp / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
        for f in ("passwd", "group"):
            (tmp / "etc" / f).chmod(0o644)

    return _build_once(name, build)


def musl_loader() -> Path:
    """Host path of musl's dynamic loader /lib/ld-musl-x86_64.so.1 (package musl)."""
    if not MUSL_LOADER.exists():
        raise MissingPackage(str(MUSL_LOADER), "musl")
    return MUSL_LOADER


def libc_musl() -> Path:
    """The real file behind the loader: musl's libc.so *is* its loader (one file).

    A rootfs needs both names: /lib/ld-musl-x86_64.so.1 (a symlink on the host)
    and the file it points to, /usr/lib/x86_64-linux-musl/libc.so.
    """
    return musl_loader().resolve()


def musl_programs() -> Dict[str, Path]:
    """{'legacy-static': ..., 'hello-dynamic': ...} compiled with musl-gcc, cached by source hash."""
    sources = {"legacy-static": (PROGS / "legacy.c", ["-static"]),
               "hello-dynamic": (PROGS / "hello_musl.c", [])}
    digest = hashlib.sha256()
    for prog, (src, flags) in sorted(sources.items()):
        digest.update(f"{prog} {' '.join(flags)}\n".encode() + src.read_bytes())
    name = f"musl-progs-{digest.hexdigest()[:16]}-{_VERSION}"
    cached = shared_cache_dir() / name
    if not cached.is_dir():
        musl_gcc = _require("musl-gcc", "musl-tools")

        def build(tmp: Path) -> None:
            for prog, (src, flags) in sources.items():
                cmd = [musl_gcc, "-O2", "-Wall", *flags, "-o", str(tmp / prog), str(src)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")

        cached = _build_once(name, build)
    return {prog: cached / prog for prog in sources}


def elf_interpreter(path: Path) -> Optional[str]:
    """The PT_INTERP of a 64-bit little-endian ELF file, or None if it has none."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        raise ValueError(f"{path} is not a 64-bit ELF file")
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    for i in range(int.from_bytes(data[56:58], "little")):
        ph = data[phoff + i * phentsize: phoff + (i + 1) * phentsize]
        if int.from_bytes(ph[0:4], "little") == 3:  # PT_INTERP
            off, size = int.from_bytes(ph[8:16], "little"), int.from_bytes(ph[32:40], "little")
            return data[off:off + size].rstrip(b"\0").decode()
    return None

