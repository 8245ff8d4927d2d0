"""With -m SIZE, /proc/meminfo, `free` and sysinfo(2) inside describe a machine of SIZE (README "Memory"):
MemTotal is the limit, MemFree and MemAvailable what the sandbox has left of it, no cache
and no swap; without -m the host's file.  As root and unprivileged, with and without --root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from rootcase import PY, show
from rootcase import deb_shared, deb  # noqa: F401  (fixtures)

from sandlock import _procfs

HOST_MEMINFO = (b"MemTotal:       24683784 kB\n"
                b"MemFree:        22001272 kB\n"
                b"MemAvailable:   23949660 kB\n"
                b"Buffers:          190996 kB\n"
                b"Cached:          1647820 kB\n"
                b"Active:           700000 kB\n"
                b"Active(anon):     100000 kB\n"
                b"Active(file):     600000 kB\n"
                b"SwapTotal:       4000000 kB\n"
                b"Dirty:              7192 kB\n"
                b"HugePages_Total:       0\n"
                b"Hugepagesize:       2048 kB\n")
READ = ("fields = dict(line.split(':') for line in open('/proc/meminfo'))\n"
        "print(*(fields[k].split()[0] for k in ('MemTotal', 'MemFree', 'MemAvailable', 'SwapTotal')))\n")


def fields(data: bytes) -> Dict[str, int]:
    out = {}
    for line in data.decode().splitlines():
        key, rest = line.split(":")
        out[key] = int(rest.split()[0])
    return out


def test_meminfo_of_a_limit_is_that_machine_and_keeps_the_kernel_s_layout() -> None:
    view = _procfs.meminfo_view(HOST_MEMINFO, 256 << 20, 10 << 20)
    got = fields(view)
    assert (got["MemTotal"], got["MemFree"], got["MemAvailable"]) == (262144, 262144 - 10240, 262144 - 10240)
    assert got["Buffers"] == got["Cached"] == got["SwapTotal"] == got["Active(file)"] == 0
    assert (got["Active"], got["Dirty"], got["Hugepagesize"]) == (100000, 7192, 2048)
    assert got["HugePages_Total"] == 0
    lines = view.splitlines()
    assert lines[0] == b"MemTotal:         262144 kB"
    assert [len(a) for a in lines] == [len(b) for b in HOST_MEMINFO.splitlines()]


def test_meminfo_never_shows_more_than_the_host_has() -> None:
    got = fields(_procfs.meminfo_view(HOST_MEMINFO, 1 << 50, 0))
    assert (got["MemTotal"], got["MemAvailable"]) == (24683784, 23949660)
    got = fields(_procfs.meminfo_view(HOST_MEMINFO, 256 << 20, 300 << 20))  # over the limit: nothing left
    assert (got["MemFree"], got["MemAvailable"]) == (0, 0)


def _host_total() -> int:
    return fields(Path("/proc/meminfo").read_bytes())["MemTotal"]


def test_python_and_free_see_the_limit_and_the_host_without_it(who) -> None:
    code = "import time; time.sleep(0.2)\n" + READ  # after the supervisor's first measure (50 ms)
    r = who.run(["-m", "256M", "--", "python3", "-c", code])
    assert r.returncode == 0, r.stderr
    total, free, available, swap = map(int, r.stdout.split())
    assert (total, swap) == (262144, 0)
    assert 0 < free == available < 262144  # the interpreter itself is counted
    r = who.run(["-m", "256M", "--", "free", "-k"])
    assert r.returncode == 0, r.stderr
    row = r.stdout.splitlines()[1].split()
    assert row[0] == "Mem:" and row[1] == "262144" and int(row[2]) + int(row[3]) == 262144, r.stdout
    control = who.run(["--", "python3", "-c", READ])
    assert int(control.stdout.split()[0]) == _host_total()


def test_sysconf_phys_pages_sees_the_limit_and_the_host_without_it(who) -> None:
    code = "import os; print(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))"
    r = who.run(["-m", "256M", "--", "python3", "-c", code])
    assert (r.returncode, r.stdout) == (0, f"{256 << 20}\n"), r.stderr
    control = who.run(["--", "python3", "-c", code])
    assert int(control.stdout) == _host_total() << 10


def test_in_a_debian_root_free_and_python_see_the_limit(who, deb: Path) -> None:
    r = who.run(["--root", str(deb), "-m", "128M", "--", "/bin/sh", "-c", f"free -k; {PY} -c \"{READ}\""])
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert lines[1].split()[:2] == ["Mem:", "131072"], r.stdout
    assert lines[-1].split()[0] == "131072"
    control = who.run(["--root", str(deb), "--", PY, "-c", READ])
    assert int(control.stdout.split()[0]) == _host_total(), show(control)
