"""The sandbox's own time and load (README "Uptime and load", "CPU"): /proc/uptime counts
from the sandbox's start, /proc/loadavg counts the sandbox's threads, always; with -m,
sysinfo(2) tells the same; with --num-cpus, /proc/cpuinfo and /proc/stat describe that
many CPUs.  The views in process, then read by C (glibc, static musl), Python and the
shell tools, as root and unprivileged, with and without --root; the control is the
host's file, read outside.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rootcase import PY, show
from rootcase import deb_shared, deb, busybox_shared, bb  # noqa: F401  (fixtures)

from sandlock import _procfs

CPUINFO = (b"processor\t: 0\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 0\n"
           b"cpu cores\t: 2\napicid\t\t: 0\nflags\t\t: fpu sse\n\n"
           b"processor\t: 1\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 1\n"
           b"cpu cores\t: 2\napicid\t\t: 2\nflags\t\t: fpu sse2\n\n")
STAT = (b"cpu  30 0 30 300 0 0 0 0 0 0\ncpu0 10 0 10 100 0 0 0 0 0 0\ncpu1 20 0 20 200 0 0 0 0 0 0\n"
        b"intr 5 0\nctxt 99\nbtime 1700000000\nprocs_running 3\n")
UPTIME = "print(open('/proc/uptime').read().split()[0])"


def host_uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


# --- the views, in process --------------------------------------------------------------------

def test_cpuinfo_of_n_cpus_repeats_the_real_blocks_numbered_as_one_package() -> None:
    view = _procfs.cpuinfo_view(CPUINFO, (1,), 3).decode()
    blocks = [b for b in view.split("\n\n") if b]
    assert len(blocks) == 3
    assert [b.splitlines()[0] for b in blocks] == ["processor\t: 0", "processor\t: 1", "processor\t: 2"]
    assert all("flags\t\t: fpu sse2" in b and "siblings\t: 3" in b and "cpu cores\t: 3" in b for b in blocks)
    assert [line for line in view.splitlines() if line.startswith("apicid")] == ["apicid\t\t: 0", "apicid\t\t: 1",
                                                                                 "apicid\t\t: 2"]
    assert _procfs.cpuinfo_view(CPUINFO, (0, 1), 2) .count(b"processor") == 2


def test_stat_of_n_cpus_has_n_lines_and_their_sum_and_the_rest_as_the_kernel_s() -> None:
    view = _procfs.stat_view(STAT, (0, 1), 3).decode().splitlines()
    assert view[:4] == ["cpu  40 0 40 400 0 0 0 0 0 0", "cpu0 10 0 10 100 0 0 0 0 0 0",
                        "cpu1 20 0 20 200 0 0 0 0 0 0", "cpu2 10 0 10 100 0 0 0 0 0 0"]
    assert view[4:] == ["intr 5 0", "ctxt 99", "btime 1700000000", "procs_running 3"]


def test_the_cpu_lists_and_the_time_files_have_the_kernel_s_format() -> None:
    assert (_procfs.cpu_list(1), _procfs.cpu_list(4)) == (b"0\n", b"0-3\n")
    assert _procfs.uptime_file(12.345, 20.0) == b"12.35 20.00\n"
    assert _procfs.loadavg_file((1.0, 0.5, 0.25), 2, 7, 4321) == b"1.00 0.50 0.25 2/7 4321\n"


# --- read in the sandbox ------------------------------------------------------------------------

def test_uptime_counts_from_the_sandbox_s_start_and_the_host_s_outside(who) -> None:
    r = who.run(["--", "sh", "-c", "cat /proc/uptime; sleep 1; cat /proc/uptime"])
    assert r.returncode == 0, show(r)
    (up1, idle1), (up2, _) = [map(float, line.split()) for line in r.stdout.splitlines()]
    assert 0 <= up1 < 10 and up2 >= up1 + 0.9, r.stdout
    assert 0 <= idle1 <= up1 * len(__import__("os").sched_getaffinity(0)) + 0.01
    assert host_uptime() > 60 and host_uptime() > up2 + 50  # the control: the host's, outside


def test_python_reads_the_sandbox_s_uptime_in_a_debian_root(who, deb: Path) -> None:
    r = who.run(["--root", str(deb), "--", PY, "-c", UPTIME])
    assert r.returncode == 0, show(r)
    assert 0 <= float(r.stdout) < 10, r.stdout
    assert host_uptime() > 60


def test_loadavg_counts_the_sandbox_s_threads_and_runnable_ones(who) -> None:
    code = ("import os, time, threading\n"
            "for _ in range(2):\n"
            "    if os.fork() == 0:\n"
            "        end = time.monotonic() + 2\n"
            "        while time.monotonic() < end: pass\n"
            "        os._exit(0)\n"
            "time.sleep(1.5)\n"
            "print(open('/proc/loadavg').read().strip())\n"
            "os.wait(); os.wait()\n"
            "print(open('/proc/loadavg').read().strip())\n")
    r = who.run(["--", "python3", "-c", code])
    assert r.returncode == 0, show(r)
    busy, idle = [line.split() for line in r.stdout.splitlines()]
    running, threads = map(int, busy[3].split("/"))
    assert threads == 3 and 1 <= running <= 2, r.stdout  # the reader waits for its answer: not counted
    assert 0 < float(busy[0]) < 2 and float(busy[0]) > float(busy[1]) >= float(busy[2]) >= 0, r.stdout
    assert idle[3] == "0/1", r.stdout
    assert float(idle[0]) <= float(busy[0]) + 0.5


def test_in_a_busybox_root_uptime_and_loadavg_are_the_sandbox_s(who, bb: Path) -> None:
    r = who.run(["--root", str(bb), "--", "/bin/sh", "-c", "cat /proc/uptime /proc/loadavg; uptime"])
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert float(lines[0].split()[0]) < 10 and lines[1].split()[3] == "0/2", r.stdout  # sh and cat
    assert "up 0 min" in lines[2], r.stdout


def test_sysinfo_has_the_sandbox_s_uptime_with_and_without_max_memory(who, deb: Path) -> None:
    code = ("import ctypes\n"
            "buf = ctypes.create_string_buffer(112)\n"
            "assert ctypes.CDLL(None, use_errno=True).sysinfo(buf) == 0\n"
            "print(int.from_bytes(buf.raw[:8], 'little'), int.from_bytes(buf.raw[80:82], 'little'))\n")
    for root in ([], ["--root", str(deb)]):
        for memory in (["-m", "512M"], []):
            r = who.run(root + memory + ["--", "python3" if not root else PY, "-c", code])
            assert r.returncode == 0, show(r)
            uptime, procs = map(int, r.stdout.split())
            assert uptime < 10 and 1 <= procs <= 4, r.stdout
    outside = who.python(code)  # the control: the host's, outside the sandbox
    assert int(outside.stdout.split()[0]) > 60, outside


def test_num_cpus_shapes_cpuinfo_and_stat_in_host_mode_and_in_a_root(who, bb: Path, progs) -> None:
    shutil.copy(progs["cpu"], bb / "cpu")
    (bb / "cpu").chmod(0o755)
    for root in ([], ["--root", str(bb)]):
        r = who.run(root + ["--num-cpus", "5", "--", "sh" if not root else "/bin/sh", "-c",
                            "grep -c ^processor /proc/cpuinfo; grep -c '^cpu[0-9]' /proc/stat; "
                            "grep '^cpu ' /proc/stat | wc -l"])
        assert r.stdout.split() == ["5", "5", "1"], show(r)


def test_btime_and_start_times_count_from_the_sandbox_s_start() -> None:
    assert _procfs.btime_view(STAT, 100.4) == STAT.replace(b"btime 1700000000", b"btime 1700000100")
    line = b"42 (a) b) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5000 1 2 3\n"
    assert _procfs.pid_stat_view(line, 4000) == line.replace(b" 5000 ", b" 1000 ")
    assert _procfs.pid_stat_view(line, 6000) == line.replace(b" 5000 ", b" 0 ")


def test_ps_and_python_find_the_start_time_and_age_of_a_process_in_the_sandbox(who, deb: Path) -> None:
    """/proc/uptime is the sandbox's: btime and the start times move with it, so ps's
    ELAPSED and a start time from btime + starttime stay true."""
    code = ("import os, time\n"
            "btime = int([l for l in open('/proc/stat') if l.startswith('btime')][0].split()[1])\n"
            "start = int(open('/proc/self/stat').read().rpartition(')')[2].split()[19])\n"
            "print(round(btime + start / os.sysconf('SC_CLK_TCK') - time.time()))\n")
    for root in ([], ["--root", str(deb)]):
        r = who.run(root + ["--", "python3" if not root else PY, "-c", code])
        assert r.returncode == 0, show(r)
        assert abs(int(r.stdout)) <= 2, r.stdout
    r = who.run(["--", "sh", "-c", "sleep 1; ps -o etimes= -p $$"])
    assert r.returncode == 0 and 1 <= int(r.stdout) <= 10, show(r)
