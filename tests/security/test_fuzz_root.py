"""Seeded fuzz of the emulated root: random arguments to every trapped path syscall (issue 5).

A fuzzer (FUZZER below, stdlib random, seed printed) runs INSIDE the
Debian rootfs under ``--root`` as the guest's /usr/bin/python3, as root and
as the unprivileged user.  For a few seconds it issues the syscalls an
emulated root traps (open/openat/openat2/creat, stat/lstat/newfstatat/statx/
statfs, access family, readlink(at), mkdir(at), mknod(at), rename(at/at2),
link(at), symlink(at), unlink(at), rmdir, chdir/fchdir/getcwd,
execve/execveat, connect/bind/sendto/sendmsg/getsockname/getpeername,
chmod/chown/utime families, xattrs, inotify_add_watch, truncate) with
structured but hostile arguments: NULL, 0x1, 0xdeadbeef000, kernel
addresses, strings without a NUL that run into an unmapped page (two pages
mapped, the second unmapped), a path in a read-only page, paths of
PATH_MAX+1 bytes and names of NAME_MAX+1, non-UTF-8 bytes, negative and
stale fds, huge sizes and flags, unterminated sun_path, and the host path of
a canary spelled every way (absolute, /proc/self/root, /proc/1/root, `..`
out of an --fs-mount, ...).  exec can never succeed: its argv is always
unreadable.

Every 64 calls it probes the canary with valid buffers (open + read, stat
and statx compared with the canary's device and inode, readlink of the
magic links and getcwd compared with the host path of the root) and
records a leak if any reaches the host; a call that succeeds with AT_*
flags the kernel refuses (EINVAL there, so done on behalf by mistake) is
recorded as a leak too.  It never makes a FIFO (a creat of one would wait
for a reader).  It prints a JSON summary (calls, errnos seen per syscall,
leaks) and exits with its own code (42).

Asserted: sandlock exits with the program's code (no crash, no kill),
stderr has no traceback and no "handler ... failed" (--debug prints every
unexpected handler exception), no syscall but an exec was answered CONTINUE
(--debug names each), the fuzzer saw EFAULT, ENAMETOOLONG,
ENOENT and EACCES and no leak, the canary and its directory are unchanged,
nothing named with the run's token exists outside the writable mount (host
/, /tmp, the scratch dir, the rootfs), the shared rootfs and the host's
device nodes are unchanged, and the whole run ends within its timeout.

SAFETY: the fuzzer only ever runs inside the sandbox; it never targets
/dev or /proc with a syscall that changes metadata, keeps its own fds, and
writes only below the --fs-mount of a per-test scratch directory.
The seeds are the fixed list SEEDS (each run by itself, its number in the
test id and printed); SANDLOCK_FUZZ_SEED=random draws a fresh one,
SANDLOCK_FUZZ_SEED=N[,M...] replays those.  SANDLOCK_FUZZ_SECONDS changes the
time per run (default 3.5 s).
"""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

from conftest import find_processes, fuzz_seeds, kill_marked

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the fuzzer uses x86_64 syscall numbers")

SECONDS = float(os.environ.get("SANDLOCK_FUZZ_SECONDS", "3.5"))
EXIT_CODE = 42
PER_SYSCALL = ', "per_syscall"'  # where the summary line gets long
SECRET = "CANARY-fuzz-root-91c2e7"
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx")
# Rootfs entries a stray write would change.
WATCHED = ("", "etc", "etc/passwd", "tmp", "root", "usr", "usr/bin", "usr/bin/python3", "bin", "var/tmp", "dev",
           "proc", "fz")

FUZZER = r'''
import ctypes, errno, json, os, random, socket, sys, time

cfg = json.loads(os.environ["FUZZ_CFG"])
rng = random.Random(cfg["seed"])
W = cfg["wdir"].encode()
TOKEN = cfg["token"].encode()
SECRET = cfg["secret"].encode()
HOSTROOT = cfg["hostroot"].encode()
CANARY_IDS = {tuple(x) for x in cfg["canary_ids"]}
CANARY = cfg["canary"].encode()
NR = {"open": 2, "stat": 4, "lstat": 6, "access": 21, "sendto": 44, "sendmsg": 46, "connect": 42, "bind": 49,
      "getsockname": 51, "getpeername": 52, "execve": 59, "truncate": 76, "getcwd": 79, "chdir": 80,
      "fchdir": 81, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86, "unlink": 87,
      "symlink": 88, "readlink": 89, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94,
      "utime": 132, "mknod": 133, "statfs": 137, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
      "getxattr": 191, "lgetxattr": 192, "listxattr": 194, "llistxattr": 195, "removexattr": 197,
      "lremovexattr": 198, "fremovexattr": 199, "utimes": 235, "inotify_add_watch": 254, "openat": 257,
      "mkdirat": 258, "mknodat": 259, "fchownat": 260, "futimesat": 261, "newfstatat": 262, "unlinkat": 263,
      "renameat": 264, "linkat": 265, "symlinkat": 266, "readlinkat": 267, "fchmodat": 268, "faccessat": 269,
      "utimensat": 280, "renameat2": 316, "execveat": 322, "statx": 332, "openat2": 437, "faccessat2": 439,
      "fchmodat2": 452}
# argument kinds of each syscall (p: path, d: dirfd, f: fd, s: socket fd, b: out buffer, n: size,
# F: open flags, A: AT_* flags, m: mode, u: uid/gid, a: sockaddr, l: socklen, v: argv/envp, x: other)
SIG = {"open": "pFm", "openat": "dpFm", "openat2": "dphn", "creat": "pm", "stat": "pb", "lstat": "pb",
       "newfstatat": "dpbA", "statx": "dpAxb", "statfs": "pb", "access": "pm", "faccessat": "dpm",
       "faccessat2": "dpmA", "readlink": "pbn", "readlinkat": "dpbn", "mkdir": "pm", "mkdirat": "dpm",
       "mknod": "pMx", "mknodat": "dpMx", "rename": "pp", "renameat": "dpdp", "renameat2": "dpdpx",
       "link": "pp", "linkat": "dpdpA", "symlink": "pp", "symlinkat": "pdp", "unlink": "p", "unlinkat": "dpA",
       "rmdir": "p", "chdir": "p", "fchdir": "f", "getcwd": "bn", "execve": "pvv", "execveat": "dpvvA",
       "connect": "sal", "bind": "sal", "getsockname": "sbL", "getpeername": "sbL", "sendto": "sbnxal",
       "sendmsg": "shx", "chmod": "pm", "fchmod": "fm", "fchmodat": "dpm", "fchmodat2": "dpmA",
       "chown": "puu", "lchown": "puu", "fchown": "fuu", "fchownat": "dpuuA", "utime": "pb", "utimes": "pb",
       "futimesat": "dpb", "utimensat": "dpbA", "getxattr": "pkbn", "lgetxattr": "pkbn", "listxattr": "pbn",
       "llistxattr": "pbn", "setxattr": "pkbnx", "lsetxattr": "pkbnx", "fsetxattr": "fkbnx",
       "removexattr": "pk", "lremovexattr": "pk", "fremovexattr": "fk", "inotify_add_watch": "ipx",
       "truncate": "pn"}
NR = {k: v for k, v in NR.items() if k in SIG}
MODIFIES = {"chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "utime", "utimes", "futimesat",
            "utimensat", "setxattr", "lsetxattr", "removexattr", "lremovexattr", "truncate"}

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
PAGE = os.sysconf("SC_PAGE_SIZE")
# page 0: read-write; page 1: unmapped; page 2: read-only (a path string in it)
base = libc.mmap(None, 3 * PAGE, 3, 0x22, -1, 0)
assert base not in (None, ctypes.c_void_p(-1).value)
EDGE = base + PAGE
libc.munmap(ctypes.c_void_p(EDGE), ctypes.c_size_t(PAGE))
RO = EDGE + PAGE
ctypes.memmove(RO, CANARY + b"\0", len(CANARY) + 1)
libc.mprotect(ctypes.c_void_p(RO), ctypes.c_size_t(PAGE), 1)
# slack after the three slots: a result the kernel rightly writes at a pointer near
# their end (a stat buffer at SB + 24500) must not land in the allocator's headers
SCRATCH = ctypes.create_string_buffer(3 * 8192 + 4096)
SB = ctypes.addressof(SCRATCH)
OUT = ctypes.create_string_buffer(8192)
OB = ctypes.addressof(OUT)
slot = [0]

def put(data):  # a NUL-terminated copy in scratch memory (rotating slots)
    slot[0] = (slot[0] + 1) % 3
    addr = SB + slot[0] * 8192
    ctypes.memmove(addr, data + b"\0", min(len(data) + 1, 8192))
    return addr

def straddle(data):  # no NUL: the string runs into the unmapped page
    data = data[-(PAGE - 1):]
    ctypes.memmove(EDGE - len(data), data, len(data))
    return EDGE - len(data)

names = [TOKEN + b"-" + s for s in (b"a", b"b", b"dir", b"lnk", b"sock", b"\xff\xfe")]
PATHS = [CANARY, b"/proc/self/root" + CANARY, b"/proc/1/root" + CANARY, b"/proc/%d/root" % os.getppid() + CANARY,
         b"/proc/self/cwd/../../../.." + CANARY, b"/../../../.." + CANARY, W + b"/../../.." + CANARY,
         W + b"/" + names[3] + b"/x", HOSTROOT, HOSTROOT + b"/etc/passwd", b"/proc/self/fd/0", b"/dev/fd/1",
         b"/proc/self/exe", b"/proc/self/root", b"/proc/self/cwd", b"/proc/1/cwd", b"/proc/self/mem", b"/", b".",
         b"..", b"", b"/etc/passwd", b"/bin/sh", b"/etc", b"/tmp", b"/dev/null", b"/proc", b"/proc/self/fd",
         b"/" + b"a" * 4096, b"/" + b"b" * 4094, W + b"/" + b"c" * 256, (b"../" * 1400)[:4095],
         b"/" + TOKEN + b"-top"] + [W + b"/" + n for n in names] + list(names)

def path_bytes(modify=False):
    k = rng.randrange(10)
    if k < 6:
        p = rng.choice(PATHS)
    elif k < 8:
        p = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 64)))
        if rng.random() < 0.5:
            p = W + b"/" + TOKEN + p.replace(b"/", b"_")
    else:
        p = W + b"/" + rng.choice(names) + rng.choice([b"", b"/", b"/.", b"/..", b"/x"])
    if modify and p.startswith((b"/dev", b"/proc")):
        p = W + b"/" + names[0]  # never change the host's devices through a bug
    return p

def pointer():
    k = rng.randrange(12)
    if k == 0: return 0
    if k == 1: return 1
    if k == 2: return 0xdeadbeef000
    if k == 3: return rng.choice([0xffffffff81000000, 0xffff888000000000, 1 << 63, (1 << 64) - 1, (1 << 47)])
    if k == 4: return rng.randrange(1 << 47)
    if k == 5: return EDGE - rng.randrange(1, 16)
    if k == 6: return RO
    if k == 7: return EDGE
    return SB + rng.randrange(3 * 8192)

def big():
    return rng.choice([0, 1, 2, 4095, 4096, 4097, 1 << 31, (1 << 32) - 1, (1 << 63) - 1, (1 << 64) - 1,
                       rng.randrange(1 << 64), rng.randrange(-5, 300) & 0xFFFFFFFFFFFFFFFF])

def arg(kind, name):
    if rng.random() < 0.12:  # anything at all
        return rng.choice([pointer(), big()])
    if kind == "p":
        r = rng.random()
        if r < 0.6: return put(path_bytes(name in MODIFIES))
        if r < 0.8: return straddle(path_bytes(name in MODIFIES) or b"x")
        return pointer()
    if kind in "df":
        return rng.choice(FDS + [-100, -100, -1, -5, 1 << 31, 0x7fffffff, rng.randrange(1024)]) & 0xFFFFFFFFFFFFFFFF
    if kind == "s":
        return rng.choice(SOCKS + [rng.randrange(-3, 64) & 0xFFFFFFFFFFFFFFFF])
    if kind == "i":
        return rng.choice([INO, INO, -1 & 0xFFFFFFFFFFFFFFFF, rng.randrange(64)])
    if kind == "b":
        return rng.choice([OB, OB, OB, RO, EDGE - rng.choice([1, 8, 64, 200]), 0, 1, 0xdeadbeef000, 1 << 63])
    if kind == "n":
        return rng.choice([8192, 8192, 0, 1, 16, 255, 4096, big()])
    if kind == "F":
        return (rng.choice([0, 1, 2, 0o100, 0o1000, 0o200000, 0o10000000, 0o20200000 | 0o100, rng.randrange(1 << 32)])
                | os.O_NONBLOCK)
    if kind == "A":
        return rng.choice([0, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x1000 | 0x100, 0x6000, rng.randrange(1 << 32)])
    if kind == "m":
        return rng.choice([0o644, 0o755, 0o7777, 0o4755, 0, rng.randrange(1 << 32)])
    if kind == "M":  # mknod mode: never a FIFO (a FIFO open would block the fuzzer itself)
        m = rng.choice([0o100644, 0o140755, 0o20644, 0o60644, 0o644, rng.randrange(1 << 32)])
        return (m & ~0o170000) | 0o100000 if (m & 0o170000) == 0o010000 else m
    if kind == "u":
        return rng.choice([0, 65534, os.getuid(), -1 & 0xFFFFFFFF, rng.randrange(1 << 32)])
    if kind == "k":  # xattr name
        return rng.choice([put(b"user.fz"), put(b"security.capability"), put(b"trusted.x"), put(b""),
                           put(b"user." + b"n" * 300), straddle(b"user.fz"), pointer()])
    if kind == "v":  # argv/envp: always unreadable, so no exec can ever succeed
        arr = EDGE - 8
        ctypes.c_uint64.from_address(arr).value = put(b"/bin/sh")
        return rng.choice([1, 0xdeadbeef000, 1 << 63, arr, EDGE, EDGE - 4])
    if kind == "a":
        return sockaddr()
    if kind == "l":
        return rng.choice([110, 110, 0, 1, 2, 3, 16, 109, 111, 128, 4096, (1 << 32) - 1, big()])
    if kind == "L":  # socklen_t pointer
        ctypes.c_uint32.from_address(OB + 4096).value = rng.choice([0, 2, 110, 4096, (1 << 32) - 1])
        return rng.choice([OB + 4096, OB + 4096, RO, EDGE - 2, 0, 1])
    if kind == "h":  # open_how or msghdr: random bytes, sometimes a valid open_how
        raw = bytes(rng.randrange(256) for _ in range(64))
        if rng.random() < 0.5:
            raw = (rng.choice([0, 0o100 | 2, 0o10000000]) | os.O_NONBLOCK).to_bytes(8, "little") + \
                  rng.choice([0, 0o644]).to_bytes(8, "little") + rng.choice([0, 8, 16, 0x10, 0xff]).to_bytes(8, "little")
        return rng.choice([put(raw), straddle(raw[:24]), pointer()])
    return rng.choice([0, 1, 2, 4, rng.randrange(1 << 32), big()])

def sockaddr():
    p = path_bytes()
    k = rng.randrange(6)
    if k == 0:
        raw = b"\x01\x00" + p[:108].ljust(108, b"\0")
    elif k == 1:  # sun_path with no NUL at all
        raw = b"\x01\x00" + (p + b"x" * 108)[:108]
    elif k == 2:  # abstract
        raw = b"\x01\x00\x00" + bytes(rng.randrange(256) for _ in range(20))
    elif k == 3:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 128)))
    elif k == 4:
        return straddle(b"\x01\x00" + p[:40])
    else:
        return pointer()
    return put(raw)

def syscall(name, args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args])
    return r, (ctypes.get_errno() if r < 0 else 0)

os.chdir(W)
FDS = [os.open(W, os.O_RDONLY | os.O_DIRECTORY), os.open("/", os.O_RDONLY | os.O_DIRECTORY),
       os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY), os.open("/etc/passwd", os.O_RDONLY)]
SOCKS = [socket.socket(socket.AF_UNIX, t | socket.SOCK_NONBLOCK).detach()
         for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)]
INO = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
KEEP = set(FDS + SOCKS + [INO, 0, 1, 2])
leaks = []
# AT_* flags the kernel accepts (fs/stat.c, open.c, utimes.c; int arguments): a call
# with any other bit must fail (EINVAL), so success means the supervisor acted anyway
AT_FLAGS = {"newfstatat": (3, 0x7900), "statx": (2, 0x7900), "faccessat2": (3, 0x1300), "fchownat": (4, 0x1100),
            "utimensat": (3, 0x1100), "fchmodat2": (3, 0x1100), "linkat": (4, 0x1400), "unlinkat": (2, 0x200),
            "execveat": (4, 0x1100)}

def bad_flags(name, args):
    if name not in AT_FLAGS:
        return False
    index, valid = AT_FLAGS[name]
    flags = args[index] & 0xFFFFFFFF
    if name == "statx" and ((flags & 0x6000) == 0x6000 or args[3] & 0x80000000):
        return True
    return bool(flags & ~valid)
seen = {}

def record(name, r, e):
    key = "ok" if r >= 0 else errno.errorcode.get(e, str(e))
    seen.setdefault(name, {}).setdefault(key, 0)
    seen[name][key] += 1

def probe_canary():
    """Targeted probes with valid buffers: the canary must stay out of reach."""
    for p in PATHS[:8]:
        fd, e = syscall("openat", [-100, put(p), os.O_RDONLY | os.O_NONBLOCK, 0])
        if fd >= 0:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            os.close(fd)
            if SECRET in data:
                leaks.append("read %r" % p)
        for nr, args in (("newfstatat", [-100, put(p), OB, 0]), ("statx", [-100, put(p), 0, 0xfff, OB])):
            OUT[:256] = b"\0" * 256
            r, e = syscall(nr, args)
            if r == 0:
                if nr == "newfstatat":
                    dev, ino = ctypes.c_uint64.from_address(OB).value, ctypes.c_uint64.from_address(OB + 8).value
                else:
                    ino = ctypes.c_uint64.from_address(OB + 32).value
                    dev = os.makedev(ctypes.c_uint32.from_address(OB + 136).value,
                                     ctypes.c_uint32.from_address(OB + 140).value)
                if (dev, ino) in CANARY_IDS:
                    leaks.append("%s %r" % (nr, p))
    for p in (b"/proc/self/exe", b"/proc/self/cwd", b"/proc/self/root", b"/proc/self/fd/%d" % FDS[0]):
        n = libc.readlink(p, OUT, 8192)
        if n > 0 and OUT.raw[:n].startswith(HOSTROOT):
            leaks.append("readlink %r -> %r" % (p, OUT.raw[:n]))
    n = libc.syscall(NR["getcwd"], ctypes.c_void_p(OB), ctypes.c_ulong(8192))
    if n > 0 and OUT.value.startswith(HOSTROOT):
        leaks.append("getcwd %r" % OUT.value)

calls = 0
start = time.monotonic()
order = sorted(NR)
while calls < cfg["max_calls"] and time.monotonic() - start < cfg["seconds"]:
    name = rng.choice(order)
    args = [arg(kind, name) for kind in SIG[name]]
    args += [rng.randrange(1 << 64) for _ in range(6 - len(args))]
    if name in ("mknod", "mknodat"):  # never a FIFO, even from a random mode: the next
        at = SIG[name].index("M")     # creat of it would wait for a reader, kernel or not
        if args[at] & 0o170000 == 0o010000:
            args[at] = args[at] & ~0o170000 | 0o100000
    r, e = syscall(name, args)
    calls += 1
    record(name, r, e)
    if r >= 0 and bad_flags(name, args):
        leaks.append("%s succeeded with flags the kernel refuses: %s" % (name, [hex(a) for a in args]))
    if r >= 0 and name in ("open", "openat", "openat2", "creat", "inotify_add_watch") and r not in KEEP:
        if name != "inotify_add_watch":
            os.close(r)
    if r >= 0 and (name in MODIFIES or name in ("fchmod", "fchown", "fsetxattr")):
        try:
            os.chmod(W, 0o777)  # the fuzzer keeps its own working directory usable
        except OSError:
            pass
    if name == "fchdir" or name == "chdir":
        if r == 0 and rng.random() < 0.5:
            try:
                os.chdir(W)
            except OSError:
                pass
    if calls % 64 == 0:
        probe_canary()
        # fds a failed exec or an interrupted open may leave behind (README: known limits)
        for fd in range(3, 1024):
            if fd not in KEEP:
                try:
                    os.close(fd)
                except OSError:
                    pass
probe_canary()
errnos = sorted({k for v in seen.values() for k in v})
print(json.dumps({"calls": calls, "seconds": round(time.monotonic() - start, 2), "errnos": errnos,
                  "leaks": leaks, "per_syscall": seen}))
sys.exit(cfg["exit_code"])
'''


def _meta(path: Path, times: bool = True) -> Tuple:
    """What a stray chmod, chown, setxattr, write or create would change.  times=False for
    the host's shared device nodes, whose times any process of the host moves (a pty
    allocated elsewhere changes /dev/ptmx's): their mode, owner and xattrs still count."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ("absent",)
    xattrs: Tuple = ()
    if not stat.S_ISLNK(st.st_mode):
        try:
            xattrs = tuple(sorted(os.listxattr(path)))
        except OSError:
            pass
    listing = tuple(sorted(os.listdir(path))) if stat.S_ISDIR(st.st_mode) else ()
    stamps = (st.st_mtime_ns, st.st_ctime_ns) if times else ()
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size) + stamps + (xattrs, listing)


def _host_state(root: Path, outside: Path) -> Dict[str, Tuple]:
    state = {f"root:{rel}": _meta(root / rel) for rel in WATCHED}
    state.update({f"dev:{d}": _meta(Path(d), times=False) for d in DEVICES})
    for p in [outside, *sorted(outside.iterdir())]:
        state[f"outside:{p}"] = _meta(p)
        if p.is_file():
            state[f"content:{p}"] = (p.read_bytes(),)
    return state


def _token_hits(token: str, *dirs: Path) -> list:
    """Entries named with the run's token directly in dirs (where a wrongly resolved create lands)."""
    hits = []
    for d in dirs:
        try:
            hits += [str(d / n) for n in os.listdir(d) if token in os.fsdecode(n)]
        except OSError:
            pass
    return hits


# Replayed by default (CI is deterministic); each found a bug or was run clean by hand.
# 2231370973: newfstatat with AT_SYMLINK_FOLLOW (0x400) was done on behalf and its stat
# buffer, past the end of the fuzzer's scratch, overwrote a malloc header (glibc then
# aborted with "double free or corruption"); the kernel refuses that flag (EINVAL).
# The next four, from 273 random seeds run by hand, saw stat, statx, fchmodat2 and
# utimensat succeed with flags the kernel refuses (before the fix; clean since).
# 1410403012 made a FIFO by mknodat with a random mode and then hung in creat of it,
# as it would without sandlock (now the fuzzer never makes a FIFO).
SEEDS = (2231370973, 1257879498, 1629840322, 3290133763, 1702865596, 1410403012)


@pytest.mark.parametrize("seed", fuzz_seeds(SEEDS))
def test_random_arguments_in_a_debian_root_get_an_errno_and_reach_nothing_outside(who, deb_root: Path, scratch: Path,
                                                                                  seed: int) -> None:
    print(f"fuzz seed {seed} ({who.name}); replay with SANDLOCK_FUZZ_SEED={seed}")
    token = f"FZ{seed:08x}"
    outside = who.make_dir(scratch / "outside", 0o755)
    canary = who.make_file(outside / "canary", SECRET + "\n", 0o644)
    wdir = who.make_dir(scratch / "fzw", 0o777)
    ids = [[os.stat(p).st_dev, os.stat(p).st_ino] for p in (canary, outside)]
    cfg = {"seed": seed, "wdir": "/fz", "token": token, "secret": SECRET, "hostroot": str(deb_root),
           "canary": str(canary), "canary_ids": ids, "max_calls": 200_000, "seconds": SECONDS,
           "exit_code": EXIT_CODE}
    before = _host_state(deb_root, outside)
    try:
        # the configuration goes in the environment, the argv holds only the token
        r = who.run(["--debug", "--root", str(deb_root), "--fs-mount", f"/fz:{wdir}",
                     "--env", f"FUZZ_CFG={json.dumps(cfg)}", "--", "/usr/bin/python3", "-c", FUZZER, token],
                    input="", timeout=SECONDS + 60)
    except subprocess.TimeoutExpired:
        kill_marked(token)
        pytest.fail(f"seed {seed}: the fuzz run did not finish within {SECONDS + 60} s (a hang in sandlock?)")
    finally:
        leftover = find_processes(token)
        kill_marked(token)
    where = (f"seed {seed} ({who.name}): exit {r.returncode}\n--- stderr\n{r.stderr[:4000]}\n"
             f"--- stdout (summary)\n{r.stdout.split(PER_SYSCALL)[0][:1500]}")
    assert not leftover, f"left running: {leftover}; {where}"
    assert r.returncode == EXIT_CODE, where
    assert "Traceback" not in r.stderr and "failed:" not in r.stderr, where
    # --debug names every syscall answered CONTINUE: in a root only an exec the supervisor
    # prepared may be (its argv here is always unreadable, so the kernel refuses it)
    continued = {line.split()[-1] for line in r.stderr.splitlines() if line.startswith("sandlock: continue ")}
    assert continued <= {"execve", "execveat"}, f"continued: {continued}; {where}"
    report = json.loads(r.stdout)
    print(f"fuzz seed {seed}: {report['calls']} calls in {report['seconds']} s, errnos {report['errnos']}")
    assert report["leaks"] == [], where
    assert report["calls"] >= 1000, where
    assert {"EFAULT", "ENAMETOOLONG", "ENOENT", "EACCES", "ok"} <= set(report["errnos"]), where
    assert _host_state(deb_root, outside) == before, f"a host file outside the root changed; {where}"
    hits = _token_hits(token, Path("/"), Path("/tmp"), Path("/root"), scratch, scratch.parent, outside, deb_root,
                       deb_root / "tmp", deb_root / "etc", deb_root / "root", who.home)
    assert not hits, f"created outside the root: {hits}; {where}"


# Each call carries a flag its syscall refuses (AT_SYMLINK_FOLLOW, both statx sync
# types, a reserved statx mask bit): the kernel says EINVAL and writes nothing.
FLAGS_PROBE = r'''
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
path = sys.argv[1].encode()
buf = ctypes.create_string_buffer(b"\xaa" * 512, 512)
calls = {"newfstatat": (262, -100, path, buf, 0x400), "statx-flags": (332, -100, path, 0x400, 0xfff, buf),
         "statx-sync": (332, -100, path, 0x6000, 0xfff, buf), "statx-mask": (332, -100, path, 0, 0x80000000, buf),
         "faccessat2": (439, -100, path, 4, 0x400), "fchownat": (260, -100, path, -1, -1, 0x400),
         "utimensat": (280, -100, path, None, 0x400), "fchmodat2": (452, -100, path, 0o600, 0x400)}
before = os.stat(path)
out = {}
for name, (nr, *args) in calls.items():
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    out[name] = [r, os.strerror(ctypes.get_errno()) if r < 0 else "", buf.raw == b"\xaa" * 512]
after = os.stat(path)
out["file unchanged"] = (before.st_mode, before.st_mtime_ns) == (after.st_mode, after.st_mtime_ns)
print(json.dumps(out, sort_keys=True))
'''


@pytest.mark.parametrize("mode", ["host", "root"])
def test_a_call_with_flags_the_kernel_refuses_gets_einval_and_writes_nothing(who, deb_root: Path, scratch: Path,
                                                                              mode: str) -> None:
    work = who.make_dir(scratch / "w", 0o755)
    target = who.make_file(work / "f", "x\n", 0o644)
    bare = subprocess.run([sys.executable, "-c", FLAGS_PROBE, str(target)], capture_output=True, text=True)
    expected = json.loads(bare.stdout)
    assert all(v == [-1, "Invalid argument", True] for k, v in expected.items() if k != "file unchanged"), bare.stdout
    if mode == "host":
        r = who.run(["-w", str(work), "--", "/usr/bin/python3", "-c", FLAGS_PROBE, str(target)])
    else:
        r = who.run(["--root", str(deb_root), "--fs-mount", f"/w:{work}", "-w", "/w", "--",
                     "/usr/bin/python3", "-c", FLAGS_PROBE, "/w/f"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == expected
    # control: the same calls with valid flags do reach the file
    valid = FLAGS_PROBE.replace("0x400", "0").replace("0x6000", "0").replace("0x80000000", "0xfff")
    r = who.run(["-w", str(work), "--", "/usr/bin/python3", "-c", valid, str(target)])
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert all(v[0] == 0 for k, v in done.items() if k != "file unchanged"), done
    assert done["file unchanged"] is False  # utimensat(NULL) set the times, fchmodat2 the mode
