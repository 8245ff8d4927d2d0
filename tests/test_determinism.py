"""Deterministic runs (README "Deterministic runs"): with --random-seed, --time-start and
--no-randomize-memory two runs of a program that prints random bytes (getrandom,
/dev/urandom, /dev/random, AT_RANDOM; Python's random, os.urandom, uuid4), the wall clock
(time, gettimeofday, clock_gettime through the vDSO and as raw syscalls) and addresses
(malloc, the stack, a C library function, mmap) print the same bytes; without the flags
(the control) they differ and the clock is the host's.

The probe is tests/progs/determinism.c built three ways (glibc static from progs, glibc
dynamic and musl static built here) and Python; as root and unprivileged (`who`), on the
host and in the busybox and Debian roots.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import PROGS_SRC
from rootcase import PY, show
from rootcase import deb_shared, deb, busybox_shared, bb  # noqa: F401  (fixtures)

from sandlock import _policy, _table
from sandlock._errors import PolicyError

START = "2000-01-01T00:00:00Z"
EPOCH = 946684800
FLAGS = ["--random-seed", "42", "--time-start", START, "--no-randomize-memory", "--deterministic-dirs"]
RANDOM_KEYS = ("at_random", "getrandom", "urandom", "random")
ADDRESS_KEYS = ("malloc", "stack", "mmap")
CLOCK_KEYS = ("time", "gettimeofday", "clock_gettime", "syscall_time", "syscall_clock_gettime", "adjtimex")
PY_PROBE = ("import os, random, time, uuid\n"
            "print('random', random.random(), random.getrandbits(64))\n"
            "print('urandom', os.urandom(16).hex())\n"
            "print('uuid4', uuid.uuid4())\n"
            "with open('/dev/urandom', 'rb') as f: print('device', f.read(16).hex())\n"
            "print('time', int(time.time()), time.strftime('%Y-%m-%d', time.gmtime()))\n"
            "print('hash', hash('sandlock'))\n"
            "import sys\n"
            "if len(sys.argv) > 1: print('listdir', ','.join(os.listdir(sys.argv[1])))\n")
NAMES = ["zeta", "alpha", "Mid", "_x", "9", "beta", "omega", "delta"] + ["n%04d" % i for i in range(300, 0, -1)]


def lines(stdout: str) -> Dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in stdout.splitlines() if " " in line}


@pytest.fixture(scope="session")
def built(session_dir: Path) -> Dict[str, str]:
    """tests/progs/determinism.c, dynamic with glibc and static with musl."""
    out: Dict[str, str] = {}
    for name, argv in (("glibc-dynamic", ["gcc"]), ("musl-static", [shutil.which("musl-gcc") or "musl-gcc", "-static"])):
        target = session_dir / f"determinism-{name}"
        subprocess.run(argv + ["-O1", "-Wall", "-o", str(target), str(PROGS_SRC / "determinism.c")], check=True)
        target.chmod(0o755)
        out[name] = str(target)
    return out


@pytest.fixture(params=["glibc-static", "glibc-dynamic", "musl-static"])
def probe(request: pytest.FixtureRequest, progs, built: Dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    if request.param == "glibc-static":
        assert progs.static, "tests/progs were not built static"
        return progs["determinism"]
    return built[request.param]


def twice(who, argv: List[str]) -> List[subprocess.CompletedProcess]:  # type: ignore[no-untyped-def]
    runs = [who.run(argv) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, show(r)
    return runs


# --- the policy -------------------------------------------------------------------------------

def test_the_syscalls_are_trapped_only_under_their_flag() -> None:
    plain = _table.traps_for(_policy.make_policy(), 6)
    assert not {"getrandom", "clock_gettime", "gettimeofday", "time", "adjtimex", "clock_adjtime",
                "set_tid_address", "getdents64"} & set(plain)
    seeded = _table.traps_for(_policy.make_policy(random_seed=1), 6)
    assert "getrandom" in seeded and "set_tid_address" in seeded and "clock_gettime" not in seeded
    timed = _table.traps_for(_policy.make_policy(time_start=0), 6)
    assert {"clock_gettime", "gettimeofday", "time", "adjtimex", "clock_adjtime", "set_tid_address"} <= set(timed)
    assert "getrandom" not in timed and "getdents64" not in timed
    assert "getdents64" in _table.traps_for(_policy.make_policy(deterministic_dirs=True), 6)
    assert [t.k for t in timed["clock_gettime"]] == [0, 5, 8, 11]  # the wall clocks only


@pytest.mark.parametrize("value, seconds", [("0", 0), (946684800, 946684800), ("2000-01-01", 946684800),
                                            ("2000-01-01T01:00:00+01:00", 946684800), ("1.5", 1.5)])
def test_a_start_time_is_a_unix_time_or_an_iso_date(value: object, seconds: float) -> None:
    assert _policy.make_policy(time_start=value).time_start == int(seconds * 10**9)


@pytest.mark.parametrize("flag, bad", [("--random-seed", "-1"), ("--random-seed", "x"), ("--random-seed", str(1 << 64)),
                                       ("--time-start", "yesterday"), ("--time-start", "-5"),
                                       ("--time-start", "10000-01-01")])
def test_a_bad_seed_or_start_time_is_a_usage_error_naming_the_flag(who, flag: str, bad: str) -> None:
    r = who.run([flag, bad, "--", "true"])
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and flag in r.stderr, r.stderr
    with pytest.raises(PolicyError):
        _policy.make_policy(**{flag[2:].replace("-", "_"): bad})


# --- on the host ------------------------------------------------------------------------------

def test_the_c_probe_prints_the_same_bytes_twice_with_the_flags_and_differs_without(who, probe: str) -> None:
    read = ["-r", os.path.dirname(probe), "--", probe]
    a, b = twice(who, FLAGS + read)
    assert a.stdout == b.stdout, (a.stdout, b.stdout)
    got = lines(a.stdout)
    assert [got[k] for k in CLOCK_KEYS] == [str(EPOCH)] * len(CLOCK_KEYS), a.stdout
    assert len(set(got[k] for k in RANDOM_KEYS)) == len(RANDOM_KEYS) and "error" not in a.stdout
    c, d = twice(who, read)  # the control
    one, two = lines(c.stdout), lines(d.stdout)
    for key in RANDOM_KEYS + ADDRESS_KEYS:
        assert one[key] != two[key], key
        assert one[key] != got[key], key
    now = int(time.time())
    assert all(abs(int(one[k]) - now) < 600 for k in CLOCK_KEYS), c.stdout


def test_each_flag_alone_fixes_its_own_part_only(who, probe: str) -> None:
    read = ["-r", os.path.dirname(probe), "--", probe]
    seeded = [lines(r.stdout) for r in twice(who, ["--random-seed", "42"] + read)]
    assert all(seeded[0][k] == seeded[1][k] for k in RANDOM_KEYS)
    assert seeded[0]["stack"] != seeded[1]["stack"] and int(seeded[0]["time"]) > EPOCH + 10**8
    other = lines(who.run(["--random-seed", "43"] + read).stdout)
    assert all(other[k] != seeded[0][k] for k in RANDOM_KEYS)
    fixed = [lines(r.stdout) for r in twice(who, ["--no-randomize-memory"] + read)]
    assert all(fixed[0][k] == fixed[1][k] for k in ADDRESS_KEYS) and fixed[0]["urandom"] != fixed[1]["urandom"]
    timed = lines(who.run(["--time-start", "1234567890"] + read).stdout)
    assert [timed[k] for k in CLOCK_KEYS] == ["1234567890"] * len(CLOCK_KEYS)


def test_python_s_random_urandom_uuid4_hash_and_clock_repeat_with_the_flags(who) -> None:
    a, b = twice(who, FLAGS + ["--", "python3", "-c", PY_PROBE])
    assert a.stdout == b.stdout
    assert lines(a.stdout)["time"] == f"{EPOCH} 2000-01-01"
    c, d = twice(who, ["--", "python3", "-c", PY_PROBE])
    one, two = lines(c.stdout), lines(d.stdout)
    assert all(one[k] != two[k] for k in ("random", "urandom", "uuid4", "device", "hash"))


def test_the_stream_follows_the_order_of_processes_and_execs(who) -> None:
    """A shell that runs the probe twice, then Python: every exec gets its own AT_RANDOM,
    every process its own bytes, the same in both runs."""
    script = "python3 -c 'import os; print(os.urandom(4).hex())'; head -c 8 /dev/urandom | od -An -tx1"
    a, b = twice(who, ["--random-seed", "9", "--", "sh", "-c", script + "; " + script])
    assert a.stdout == b.stdout
    assert len(set(a.stdout.split("\n")[:2])) == 2, a.stdout  # two processes, two pieces of the stream


def test_dev_urandom_gives_megabytes_then_its_stated_end(who) -> None:
    r = who.run(["--random-seed", "1", "--", "sh", "-c", "head -c 8388608 /dev/urandom | wc -c; "
                 "head -c 1048576 /dev/urandom | od -An -tx1 | sort -u | wc -l"])
    assert r.returncode == 0, show(r)
    size, distinct = (int(x) for x in r.stdout.split())
    assert 4 << 20 <= size <= 8 << 20
    assert distinct > 1000  # not a repeated pattern


# --- in a root --------------------------------------------------------------------------------

def make_tree(who, top: Path) -> Path:  # type: ignore[no-untyped-def]
    """A directory whose entries the filesystem lists in another order than by name."""
    tree = who.make_dir(top / "tree")
    for name in NAMES:
        who.make_file(tree / name)
    return tree


def test_deterministic_dirs_lists_by_name_for_ls_and_python_and_the_control_does_not(who, scratch: Path) -> None:
    tree = make_tree(who, scratch)
    by_name = sorted(NAMES + [".", ".."])
    script = f"ls -f {tree}; python3 -c 'import os; print(*os.listdir(\"{tree}\"), sep=\"\\n\")'"
    r = who.run(["--deterministic-dirs", "-r", str(scratch), "--", "sh", "-c", script])
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == by_name + sorted(NAMES)
    control = who.run(["-r", str(scratch), "--", "sh", "-c", script])
    assert control.returncode == 0 and sorted(control.stdout.split()) == sorted(by_name + NAMES)
    assert control.stdout.split() != by_name + sorted(NAMES)


def test_a_long_listing_read_in_small_pieces_keeps_its_order_and_count(who, scratch: Path) -> None:
    tree = who.make_dir(scratch / "big")
    for i in range(3000, 0, -1):
        who.make_file(tree / ("f%05d-%s" % (i, "x" * (i % 50))))
    code = ("import ctypes, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
            "buf = ctypes.create_string_buffer(200)\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "names = []\n"
            "while True:\n"
            "    n = libc.syscall(217, fd, buf, 200)\n"
            "    assert n >= 0, ctypes.get_errno()\n"
            "    if n == 0: break\n"
            "    at = 0\n"
            "    while at < n:\n"
            "        reclen = int.from_bytes(buf.raw[at + 16:at + 18], 'little')\n"
            "        names.append(buf.raw[at + 19:at + reclen].split(b'\\0')[0].decode())\n"
            "        at += reclen\n"
            "print(len(names), names == sorted(names))\n")
    r = who.run(["--deterministic-dirs", "-r", str(scratch), "--", "python3", "-c", code, str(tree)])
    assert r.stdout == "3002 True\n", show(r)


def test_a_listing_on_behalf_refuses_what_the_kernel_refuses_with_the_same_errno(who, scratch: Path) -> None:
    """An O_PATH fd of a directory (EBADF), a file (ENOTDIR), a closed fd (EBADF) and a
    buffer the caller may not write (EFAULT): the same errno with and without the flag."""
    tree = make_tree(who, scratch)
    code = ("import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "buf = ctypes.create_string_buffer(4096)\n"
            "def err(fd, ptr=buf):\n"
            "    n = libc.syscall(217, fd, ptr, 4096)\n"
            "    return ctypes.get_errno() if n < 0 else 'ok'\n"
            "print(err(os.open(sys.argv[1], os.O_PATH)), err(os.open(sys.argv[1] + '/alpha', os.O_RDONLY)),\n"
            "      err(999), err(os.open(sys.argv[1], os.O_RDONLY), ctypes.c_void_p(16)),\n"
            "      err(os.open(sys.argv[1], os.O_RDONLY)))\n")
    outputs = [who.run(flag + ["-r", str(scratch), "--", "python3", "-c", code, str(tree)]).stdout
               for flag in (["--deterministic-dirs"], [])]
    assert outputs[0] == outputs[1] == "9 20 9 14 ok\n", outputs


def test_in_a_busybox_root_the_musl_probe_and_the_shell_repeat(who, bb: Path, built: Dict[str, str]) -> None:
    shutil.copy(built["musl-static"], bb / "probe")
    (bb / "probe").chmod(0o755)
    tree = make_tree(who, bb)
    a, b = twice(who, ["--root", str(bb)] + FLAGS + ["--", "/bin/sh", "-c", "/probe; date -u +%F; find /tree"])
    assert a.stdout == b.stdout
    assert "2000-01-01" in a.stdout.splitlines()
    assert a.stdout.split()[-len(NAMES):] == ["/tree/" + name for name in sorted(NAMES)], a.stdout
    assert tree.is_dir()
    c, d = twice(who, ["--root", str(bb), "--", "/probe"])
    assert lines(c.stdout)["getrandom"] != lines(d.stdout)["getrandom"]


def test_in_a_debian_root_python_repeats(who, deb: Path) -> None:
    etc = sorted(os.listdir(deb / "etc"))  # the shared root is not changed: its /etc is listed
    a, b = twice(who, ["--root", str(deb)] + FLAGS + ["--", PY, "-c", PY_PROBE, "/etc"])
    assert a.stdout == b.stdout
    assert lines(a.stdout)["time"] == f"{EPOCH} 2000-01-01"
    assert lines(a.stdout)["listdir"] == ",".join(etc)
    r = who.run(["--root", str(deb), "--deterministic-dirs", "--", "ls", "-f", "/etc"])
    assert r.stdout.split() == sorted(etc + [".", ".."]), show(r)
    control = who.run(["--root", str(deb), "--", "ls", "-f", "/etc"])
    assert sorted(control.stdout.split()) == sorted(etc + [".", ".."]) != control.stdout.split()
    c, d = twice(who, ["--root", str(deb), "--", PY, "-c", PY_PROBE])
    assert lines(c.stdout)["uuid4"] != lines(d.stdout)["uuid4"]


def test_the_api_keywords_do_what_the_flags_do() -> None:
    import sandlock
    box = sandlock.Sandbox(random_seed=42, time_start=START, deterministic_dirs=True, no_randomize_memory=True)
    runs = [box.run(["python3", "-c", PY_PROBE, "/etc"]) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    got = lines(runs[0].stdout.decode())
    assert got["time"] == f"{EPOCH} 2000-01-01" and got["listdir"] == ",".join(sorted(os.listdir("/etc")))
    with pytest.raises(PolicyError, match="time_start"):
        sandlock.Sandbox(time_start="soon")
