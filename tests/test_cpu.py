"""The CPUs the command sees and may use (README "CPU"): --num-cpus N is the count every
reader reports (sysconf, get_nprocs, sched_getaffinity, nproc, os.cpu_count, /proc/cpuinfo,
/proc/stat, /sys/devices/system/cpu/online); --cpu-cores LIST is an affinity the command
cannot widen; --cpu PCT holds the sandbox's CPU time to PCT percent of one core.

Read the ways real programs read them: tests/progs/cpu.c built static with glibc (progs)
and with musl (built here), Python, coreutils' and busybox's nproc; as root and
unprivileged (`who`), with and without --root, each with a control without the flag.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import musl_static, probe_lines
from rootcase import PY, show
from rootcase import deb_shared, deb, busybox_shared, bb  # noqa: F401  (fixtures)

from sandlock import _policy, _table
from sandlock._errors import PolicyError

MINE = sorted(os.sched_getaffinity(0))
HOST_CPUS = os.cpu_count()
COUNTS = ("onln", "conf", "nprocs", "affinity", "cpuinfo", "stat")
PY_READERS = ("import os, multiprocessing\n"
              "print('cpu_count', os.cpu_count())\n"
              "print('affinity', len(os.sched_getaffinity(0)))\n"
              "print('multiprocessing', multiprocessing.cpu_count())\n"
              "print('cpuinfo', open('/proc/cpuinfo').read().count('processor'))\n")



@pytest.fixture(scope="session")
def musl_cpu(session_dir: Path) -> str:
    """tests/progs/cpu.c, static with musl (its sysconf counts sched_getaffinity's mask)."""
    return musl_static(session_dir, "cpu.c")


@pytest.fixture(params=["glibc", "musl"])
def cpu_probe(request: pytest.FixtureRequest, progs, musl_cpu: str) -> str:  # type: ignore[no-untyped-def]
    if request.param == "glibc":
        assert progs.static, "tests/progs were not built static"
        return progs["cpu"]
    return musl_cpu


# --- in process ----------------------------------------------------------------------------------

def test_affinity_calls_are_trapped_only_under_the_cpu_flags() -> None:
    plain = _table.traps_for(_policy.make_policy(), 6)
    assert "sched_getaffinity" not in plain and plain["sched_setaffinity"] is not None  # other pids only
    cores = _table.traps_for(_policy.make_policy(cpu_cores=str(MINE[0])), 6)
    assert cores["sched_setaffinity"] is None and "sched_getaffinity" not in cores
    view = _table.traps_for(_policy.make_policy(num_cpus=3), 6)
    assert view["sched_setaffinity"] is None and view["sched_getaffinity"] is None


@pytest.mark.parametrize("field, bad, message", [
    ("cpu_cores", "1-0", "invalid CPU list"), ("cpu_cores", "a", "invalid CPU list"),
    ("cpu_cores", "4096", "is not one this process may use"), ("cpu_cores", [-1], "expected CPU numbers"),
    ("num_cpus", 0, "must be a positive integer"), ("num_cpus", 1025, "too large"),
    ("cpu", 0, "must be a positive integer"), ("cpu", 100 * len(MINE) + 1, "too large"), ("cpu", "x", "expected"),
])
def test_wrong_cpu_values_are_policy_errors_naming_the_flag(field: str, bad: object, message: str) -> None:
    with pytest.raises(PolicyError, match=f"^--{field.replace('_', '-')}: .*{message}"):
        _policy.make_policy(labels={field: "--" + field.replace("_", "-")}, **{field: bad})


def test_cpu_lists_take_taskset_s_spelling() -> None:
    cores = ",".join(str(c) for c in MINE)
    assert _policy.make_policy(cpu_cores=cores).cpu_cores == tuple(MINE)
    assert _policy.make_policy(cpu_cores=f"{MINE[0]}-{MINE[-1]}").cpu_cores == tuple(MINE)
    assert _policy.make_policy(cpu_cores=[MINE[0], MINE[0]]).cpu_cores == (MINE[0],)


def test_a_bad_cpu_flag_is_one_line_and_exit_125(who) -> None:
    for args in (["--cpu-cores", "9999"], ["--num-cpus", "0"], ["--cpu", "0"]):
        r = who.run(args + ["--", "true"])
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, show(r)
        assert r.stderr.startswith(f"sandlock: {args[0]}: "), r.stderr


# --- --num-cpus ----------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 3])
def test_num_cpus_is_what_every_c_reader_reports_and_the_host_s_without_it(who, cpu_probe: str, count: int) -> None:
    read = ["-r", os.path.dirname(cpu_probe), "--", cpu_probe]
    r = who.run(["--num-cpus", str(count)] + read)
    assert r.returncode == 0, show(r)
    got = probe_lines(r.stdout)
    assert [got[k] for k in COUNTS] == [str(count)] * len(COUNTS), r.stdout
    control = probe_lines(who.run(read).stdout)
    assert [control[k] for k in ("onln", "nprocs", "cpuinfo", "stat")] == [str(HOST_CPUS)] * 4, control
    assert control["affinity"] == str(len(MINE))


def test_num_cpus_makes_the_sys_cpu_lists_that_machine_s_where_sys_is_readable(who, cpu_probe: str) -> None:
    read = ["-r", "/sys", "-r", os.path.dirname(cpu_probe), "--", cpu_probe]
    got = probe_lines(who.run(["--num-cpus", "3"] + read).stdout)
    assert (got["online"], got["onln"], got["conf"]) == ("0-2", "3", "3"), got
    got = probe_lines(who.run(["--num-cpus", "1"] + read).stdout)
    assert (got["online"], got["onln"]) == ("0", "1"), got
    with open("/sys/devices/system/cpu/online") as f:
        assert probe_lines(who.run(read).stdout)["online"] == f.read().strip()


def test_python_and_nproc_see_num_cpus_and_the_host_s_without_it(who) -> None:
    r = who.run(["--num-cpus", "3", "--", "python3", "-c", PY_READERS])
    assert r.returncode == 0, show(r)
    assert set(probe_lines(r.stdout).values()) == {"3"}, r.stdout
    r = who.run(["--num-cpus", "3", "--", "sh", "-c", "nproc; nproc --all; grep -c '^cpu[0-9]' /proc/stat"])
    assert r.stdout == "3\n3\n3\n", show(r)
    control = who.run(["--", "sh", "-c", "nproc --all; grep -c '^cpu[0-9]' /proc/stat"])
    assert control.stdout == f"{HOST_CPUS}\n{HOST_CPUS}\n", show(control)


def test_in_a_debian_root_python_and_nproc_see_num_cpus(who, deb: Path) -> None:
    r = who.run(["--root", str(deb), "--num-cpus", "3", "--", PY, "-c", PY_READERS])
    assert r.returncode == 0, show(r)
    assert set(probe_lines(r.stdout).values()) == {"3"}, r.stdout
    r = who.run(["--root", str(deb), "--num-cpus", "3", "--", "sh", "-c", "nproc; nproc --all"])
    assert r.stdout == "3\n3\n", show(r)
    control = who.run(["--root", str(deb), "--", "sh", "-c", "nproc --all"])
    assert control.stdout == f"{HOST_CPUS}\n", show(control)


def test_in_a_busybox_root_the_static_probes_and_busybox_see_num_cpus(who, bb: Path, cpu_probe: str) -> None:
    shutil.copy(cpu_probe, bb / "cpu")
    (bb / "cpu").chmod(0o755)
    r = who.run(["--root", str(bb), "--num-cpus", "3", "--", "/cpu"])
    assert r.returncode == 0, show(r)
    got = probe_lines(r.stdout)
    assert [got[k] for k in COUNTS] == ["3"] * len(COUNTS), r.stdout
    r = who.run(["--root", str(bb), "--num-cpus", "3", "--", "/bin/sh", "-c", "nproc"])
    assert r.stdout == "3\n", show(r)
    control = probe_lines(who.run(["--root", str(bb), "--", "/cpu"]).stdout)
    assert (control["onln"], control["cpuinfo"]) == (str(HOST_CPUS), str(HOST_CPUS)), control


# --- --cpu-cores ---------------------------------------------------------------------------------

@pytest.mark.parametrize("root", [False, True], ids=["host", "root"])
def test_cpu_cores_pins_the_command_and_a_wider_mask_is_narrowed(who, cpu_probe: str, bb: Path, root: bool) -> None:
    if root:
        shutil.copy(cpu_probe, bb / "cpu")
        (bb / "cpu").chmod(0o755)
        run = ["--root", str(bb), "--", "/cpu"]
    else:
        run = ["-r", os.path.dirname(cpu_probe), "--", cpu_probe]
    r = who.run(["--cpu-cores", str(MINE[-1])] + run)
    assert r.returncode == 0, show(r)
    got = probe_lines(r.stdout)
    assert (got["affinity"], got["widen"], got["after"]) == ("1", "0 0", "1"), r.stdout
    control = probe_lines(who.run(run).stdout)
    assert (control["affinity"], control["widen"], control["after"]) == (str(len(MINE)), "0 0", str(len(MINE)))


def test_cpu_cores_holds_for_python_threads_children_and_taskset(who) -> None:
    code = ("import os, threading, errno\n"
            "os.sched_setaffinity(0, range(1024))\n"
            "print('main', sorted(os.sched_getaffinity(0)))\n"
            "t = threading.Thread(target=lambda: print('thread', sorted(os.sched_getaffinity(0))))\n"
            "t.start(); t.join()\n"
            "try:\n    os.sched_setaffinity(0, {1023})\nexcept OSError as e:\n    print('outside', e.errno)\n"
            "print('status', [l.split()[1] for l in open('/proc/self/status')"
            " if l.startswith('Cpus_allowed_list')][0])\n")
    r = who.run(["--cpu-cores", str(MINE[-1]), "--", "python3", "-c", code])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [f"main [{MINE[-1]}]", f"thread [{MINE[-1]}]", "outside 22",
                                     f"status {MINE[-1]}"], r.stdout
    r = who.run(["--cpu-cores", str(MINE[-1]), "--", "sh", "-c", f"taskset -pc {MINE[0]}-{MINE[-1]} $$ >/dev/null; "
                 "sh -c 'grep Cpus_allowed_list /proc/self/status'"])
    assert r.stdout.split() == ["Cpus_allowed_list:", str(MINE[-1])], show(r)
    control = who.run(["--", "sh", "-c", f"taskset -pc {MINE[-1]} $$ >/dev/null; taskset -pc {MINE[0]}-{MINE[-1]} $$"
                       " >/dev/null; grep Cpus_allowed_list /proc/self/status"])
    assert control.stdout.split()[1] == (f"{MINE[0]}-{MINE[-1]}" if len(MINE) > 1 else str(MINE[0])), show(control)


OPENS_KEEP = ("import os\n"
              "before = sorted(os.sched_getaffinity(0))\n"
              "for _ in range(300):\n"
              "    os.close(os.open('/etc/passwd', os.O_RDONLY))\n"
              "print('full', before == sorted(os.sched_getaffinity(0)), len(before))\n"
              "os.sched_setaffinity(0, {%d})\n"
              "for _ in range(300):\n"
              "    os.close(os.open('/etc/passwd', os.O_RDONLY))\n"
              "print('one', sorted(os.sched_getaffinity(0)))\n"
              "print('status', [l.split()[1] for l in open('/proc/self/status')"
              " if l.startswith('Cpus_allowed_list')][0])\n")


def test_opens_leave_the_command_its_own_affinity(who) -> None:
    """Every fd opened on behalf is taken with the caller held on the supervisor's CPU
    (_syscalls.CpuHold, README "How it works"): afterwards its affinity is its own again,
    all of its CPUs or the one it chose."""
    r = who.run(["--", "python3", "-c", OPENS_KEEP % MINE[-1]])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [f"full True {len(MINE)}", f"one [{MINE[-1]}]", f"status {MINE[-1]}"], show(r)


# --- --cpu ---------------------------------------------------------------------------------------

BUSY = ("import os, sys, time\n"
        "start = time.monotonic()\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        while time.monotonic() - start < 3.0:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "os.wait(); os.wait()\n"
        "t = os.times()\n"
        "print(time.monotonic() - start, t.children_user + t.children_system)\n")


def test_cpu_holds_two_busy_processes_to_the_share_and_they_run_freely_without_it(who) -> None:
    r = who.run(["--cpu", "10", "--", "python3", "-c", BUSY])
    assert r.returncode == 0, show(r)
    wall, used = map(float, r.stdout.split())
    assert used <= 0.10 * wall + 0.15, r.stdout  # a loaded machine gives less, never more
    assert used >= 0.10 * wall * 0.5, r.stdout   # ... and throttled, not frozen
    wall, used = map(float, who.run(["--", "python3", "-c", BUSY]).stdout.split())
    assert used > 0.10 * wall + 0.15, (wall, used)
