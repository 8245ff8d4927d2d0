"""In-process unit tests of the machine handlers (_identity): uname(2) answered on behalf
with --hostname, sysinfo(2) with --max-memory, sched_getaffinity(2) with --num-cpus and
sched_setaffinity(2) with --cpu-cores or --num-cpus, driven through decode -> do with a fake
context (tests/fakectx.py).
"""

from __future__ import annotations

import errno
import math
import os
import struct
import sys
from typing import List

import pytest

from fakectx import Errno, Value, module
from fakectx import drive, fake  # noqa: F401  (fixture)

NAME = "sandbox-7q"


@pytest.mark.rows("uname")
def test_uname_is_answered_with_the_name_and_the_kernel_s_other_fields(fake) -> None:
    ctx = fake(hostname=NAME)
    buf = ctx.mem.buffer(390)
    assert drive(ctx, "uname", buf) == Value(0)
    fields = [ctx.mem.read(buf + 65 * i, 65).rstrip(b"\0").decode() for i in range(6)]
    real = os.uname()
    assert fields[:5] == [real.sysname, NAME, real.release, real.version, real.machine]
    assert drive(ctx, "uname", 0) == Errno(errno.EFAULT)
    assert drive(ctx, "uname", ctx.mem.buffer(390, readonly=True)) == Errno(errno.EFAULT)


def _sysinfo(data: bytes) -> dict:
    names = ("uptime", "l1", "l5", "l15", "totalram", "freeram", "sharedram", "bufferram", "totalswap", "freeswap")
    out = dict(zip(names, struct.unpack_from("=q9Q", data)))
    out["procs"] = struct.unpack_from("=H", data, 80)[0]
    out["totalhigh"], out["freehigh"], out["mem_unit"] = struct.unpack_from("=QQI", data, 88)
    return out


@pytest.mark.rows("sysinfo")
def test_sysinfo_under_max_memory_is_a_machine_of_that_size(fake) -> None:
    ctx = fake(max_memory=256 << 20)
    ctx.resolver.memory_used = 10 << 20  # the supervisor's last measure
    buf = ctx.mem.buffer(112)
    assert drive(ctx, "sysinfo", buf) == Value(0)
    got = _sysinfo(ctx.mem.read(buf, 112))
    unit = got["mem_unit"]
    assert (got["totalram"] * unit, got["freeram"] * unit) == (256 << 20, 246 << 20)
    assert got["sharedram"] == got["bufferram"] == got["totalswap"] == got["freeswap"] == 0
    assert got["procs"] > 0 and got["uptime"] > 0
    assert drive(ctx, "sysinfo", 0) == Errno(errno.EFAULT)


# --- CPUs (README "CPU") ----------------------------------------------------------------------

_identity = module("_identity")
MINE = sorted(os.sched_getaffinity(0))
OUTSIDE = 1  # init: never a member of the fake sandbox


@pytest.fixture
def keep_affinity():  # type: ignore[no-untyped-def]
    """The handlers set the affinity of the test's own thread (the fake caller): put it back."""
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)


def mask(cpus, size: int = 128) -> bytes:  # type: ignore[no-untyped-def]
    return sum(1 << c for c in cpus).to_bytes(size, sys.byteorder if size == 8 else "little")


def bits(raw: bytes) -> set:
    number = int.from_bytes(raw, "little")
    return {b for b in range(len(raw) * 8) if number >> b & 1}


@pytest.mark.rows("sched_getaffinity")
def test_sched_getaffinity_with_num_cpus_is_a_machine_of_that_many_cpus_in_the_kernel_s_sizes(fake) -> None:
    ctx = fake(num_cpus=3)
    buf = ctx.mem.buffer(128)
    assert drive(ctx, "sched_getaffinity", 0, 128, buf) == Value(8)  # the kernel's cpumask_size() of 3 CPUs
    assert bits(ctx.mem.read(buf, 8)) == {0, 1, 2}
    assert drive(ctx, "sched_getaffinity", os.getpid(), 8, buf) == Value(8)  # a thread of the sandbox
    assert drive(ctx, "sched_getaffinity", 0, 4, buf) == Errno(errno.EINVAL)  # not a multiple of a long
    assert drive(ctx, "sched_getaffinity", 0, 0, buf) == Errno(errno.EINVAL)
    assert drive(ctx, "sched_getaffinity", OUTSIDE, 128, buf) == Errno(errno.ESRCH)
    assert drive(ctx, "sched_getaffinity", 0, 128, 0) == Errno(errno.EFAULT)
    big = fake(num_cpus=100)
    assert drive(big, "sched_getaffinity", 0, 8, big.mem.buffer(8)) == Errno(errno.EINVAL)  # 64 bits < 100 CPUs
    buf = big.mem.buffer(128)
    assert drive(big, "sched_getaffinity", 0, 128, buf) == Value(16)
    assert bits(big.mem.read(buf, 16)) == set(range(100))


@pytest.mark.rows("sched_getaffinity")
def test_sched_getaffinity_shows_the_view_cpus_of_a_narrowed_thread_only(fake, keep_affinity) -> None:
    ctx = fake(num_cpus=4, cpu_cores=tuple(MINE))
    os.sched_setaffinity(0, {MINE[0]})
    buf = ctx.mem.buffer(8)
    assert drive(ctx, "sched_getaffinity", 0, 8, buf) == Value(8)
    step = len(MINE)
    assert bits(ctx.mem.read(buf, 8)) == set(range(0, 4, step))  # view CPU k is real MINE[k % len]


@pytest.mark.rows("sched_setaffinity")
def test_sched_setaffinity_under_cpu_cores_is_narrowed_and_empty_is_einval(fake, keep_affinity) -> None:
    ctx = fake(cpu_cores=(MINE[-1],))
    wide = ctx.mem.put(mask(range(1024)))
    assert drive(ctx, "sched_setaffinity", 0, 128, wide) == Value(0)
    assert os.sched_getaffinity(0) == {MINE[-1]}
    other = ctx.mem.put(mask([1000]))
    assert drive(ctx, "sched_setaffinity", 0, 128, other) == Errno(errno.EINVAL)
    assert os.sched_getaffinity(0) == {MINE[-1]}
    assert drive(ctx, "sched_setaffinity", OUTSIDE, 128, wide) == Errno(errno.ESRCH)
    assert drive(ctx, "sched_setaffinity", 0, 128, 0) == Errno(errno.EFAULT)
    assert drive(ctx, "sched_setaffinity", 0, 0, wide) == Errno(errno.EINVAL)  # an empty mask


@pytest.mark.rows("sched_setaffinity")
def test_sched_setaffinity_under_num_cpus_takes_view_numbers(fake, keep_affinity) -> None:
    ctx = fake(num_cpus=4, cpu_cores=(MINE[0],))
    assert drive(ctx, "sched_setaffinity", 0, 8, ctx.mem.put(mask([3], 8))) == Value(0)
    assert os.sched_getaffinity(0) == {MINE[0]}
    assert drive(ctx, "sched_setaffinity", 0, 8, ctx.mem.put(mask([4], 8))) == Errno(errno.EINVAL)  # no CPU 4


def test_view_numbers_map_onto_the_base_cpus_round_robin() -> None:
    assert _identity.to_view({5}, (3, 5), 5) == {1, 3}
    assert _identity.to_real({0, 1, 4, 9}, (3, 5), 5) == {3, 5}
    assert _identity.to_real({0, 1, 7}, (1,), None) == {1}
    assert _identity.mask_bits(_identity.mask_bytes({0, 63, 64, 130}, 24)) == {0, 63, 64, 130}


@pytest.mark.rows("sysinfo")
def test_sysinfo_under_max_memory_has_the_sandbox_s_uptime_loads_and_threads(fake) -> None:
    ctx = fake(max_memory=256 << 20)
    machine = _identity.Machine(lambda: 0.0, lambda: (2, 7, 4242), 2)
    machine.start -= 30.0
    ctx.resolver.machine = machine
    buf = ctx.mem.buffer(112)
    assert drive(ctx, "sysinfo", buf) == Value(0)
    got = _sysinfo(ctx.mem.read(buf, 112))
    assert got["uptime"] == 30 and got["procs"] == 7
    assert 0 < got["l1"] < 2 << 16 and got["l1"] > got["l5"] > got["l15"] > 0


def test_load_averages_decay_as_the_kernel_s_towards_the_runnable_count(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_identity, "boottime", lambda: clock[0])
    machine = _identity.Machine(lambda: 1.5, lambda: (1, 3, 99), 2)
    clock[0] += 60.0
    loads, running, threads, last = machine.loadavg()
    assert (running, threads, last) == (1, 3, 99)
    assert loads[0] == pytest.approx(1 - math.exp(-1)) and loads[1] == pytest.approx(1 - math.exp(-0.2))
    assert machine.uptime() == (60.0, 120.0 - 1.5)  # idle: its CPUs' time the sandbox did not use


@pytest.mark.rows("sysinfo")
def test_sysinfo_without_max_memory_has_the_sandbox_s_uptime_and_the_kernel_s_memory(fake) -> None:
    ctx = fake()
    ctx.resolver.machine = _identity.Machine(lambda: 0.0, lambda: (0, 1, 4242), 2)
    buf = ctx.mem.buffer(112)
    assert drive(ctx, "sysinfo", buf) == Value(0)
    got = _sysinfo(ctx.mem.read(buf, 112))
    assert (got["uptime"], got["l1"], got["procs"]) == (0, 0, 1)
    real = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert got["totalram"] * got["mem_unit"] == real


def test_sysinfo_may_reuse_a_load_count_a_second_old_and_the_files_never(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_identity, "boottime", lambda: clock[0])
    samples = []
    machine = _identity.Machine(lambda: 0.0, lambda: samples.append(1) or (len(samples), 1, 1), 1)
    assert machine.loadavg()[1] == 1
    clock[0] += 0.5
    assert machine.loadavg(_identity.SYSINFO_MAX_AGE)[1] == 1 and len(samples) == 1
    assert machine.loadavg()[1] == 2  # /proc/loadavg counts again
    clock[0] += 1.5
    assert machine.loadavg(_identity.SYSINFO_MAX_AGE)[1] == 3


def test_each_reading_walks_only_the_proc_it_needs(monkeypatch) -> None:
    """sysinfo and /proc/loadavg count threads, /proc/uptime the CPU time: neither pays
    for the other's walk of every process's /proc (one walk each per reading)."""
    walks: List[str] = []
    machine = _identity.Machine(lambda: walks.append("cpu") or 2.0,
                                lambda: walks.append("threads") or (1, 2, 3), 2)
    machine.loadavg()
    assert walks == ["threads"]
    walks.clear()
    machine.uptime()
    assert walks == ["cpu"]
