"""In-process unit tests of the identity handlers (_identity): uname(2) answered on behalf
with --hostname, driven through decode -> do with a fake context (tests/fakectx.py).
"""

from __future__ import annotations

import errno
import os

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
