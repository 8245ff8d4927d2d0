"""In-process unit tests of the machine handlers (_identity): uname(2) answered on behalf
with --hostname, sysinfo(2) with --max-memory, driven through decode -> do with a fake
context (tests/fakectx.py).
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from fakectx import Errno, Value
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
