"""In-process unit tests of the determinism handlers (_determinism, README "Deterministic
runs"): getrandom(2) answered from the seeded stream, the wall clocks (clock_gettime,
gettimeofday, time) answered as T + elapsed, set_tid_address let through; driven through
decode -> do with a fake context (tests/fakectx.py).
"""

from __future__ import annotations

import errno
import os
import struct
import time

import pytest

from fakectx import CONTINUE, Errno, Value, module
from fakectx import drive, fake  # noqa: F401  (fixture)

D = module("_determinism")
START = 946684800 * 10**9  # 2000-01-01T00:00:00Z


def _ctx(fake, seed=None, start=None):  # type: ignore[no-untyped-def]
    ctx = fake(random_seed=seed, time_start=start)
    ctx.resolver.determinism = D.Determinism(seed, start, "x86_64")
    return ctx


@pytest.mark.rows("getrandom")
def test_getrandom_gives_the_seed_s_stream_call_after_call_and_another_seed_another(fake) -> None:
    runs = []
    for seed in (7, 7, 8):
        ctx = _ctx(fake, seed=seed)
        got = []
        for size in (16, 5):
            buf = ctx.mem.buffer(size)
            assert drive(ctx, "getrandom", buf, size, 0) == Value(size)
            got.append(ctx.mem.read(buf, size))
        runs.append(got)
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert runs[0][0] != runs[0][1][:5] + bytes(11)  # two calls: two different pieces
    assert runs[0][0] == D.stream(7, b"getrandom", 0, 16)


@pytest.mark.rows("getrandom")
def test_getrandom_checks_its_flags_and_buffer_and_answers_at_most_a_chunk(fake) -> None:
    ctx = _ctx(fake, seed=1)
    buf = ctx.mem.buffer(16)
    assert drive(ctx, "getrandom", buf, 16, 8) == Errno(errno.EINVAL)
    assert drive(ctx, "getrandom", buf, 16, D.GRND_RANDOM | D.GRND_INSECURE) == Errno(errno.EINVAL)
    assert drive(ctx, "getrandom", buf, 16, D.GRND_NONBLOCK | D.GRND_RANDOM) == Value(16)
    assert drive(ctx, "getrandom", buf, 0, 0) == Value(0)
    assert drive(ctx, "getrandom", 0, 16, 0) == Errno(errno.EFAULT)
    assert drive(ctx, "getrandom", ctx.mem.buffer(16, readonly=True), 16, 0) == Errno(errno.EFAULT)
    big = ctx.mem.buffer(D.CHUNK + 100)
    assert drive(ctx, "getrandom", big, D.CHUNK + 100, 0) == Value(D.CHUNK)
    assert ctx.mem.read(big + D.CHUNK, 100) == bytes(100)  # nothing past what it says it wrote


@pytest.mark.rows("clock_gettime")
def test_clock_gettime_of_the_wall_clock_is_the_start_plus_the_time_elapsed(fake) -> None:
    ctx = _ctx(fake, start=START)
    buf = ctx.mem.buffer(16)
    for clock in D.REALTIME_CLOCKS:
        assert drive(ctx, "clock_gettime", clock, buf) == Value(0)
        seconds, nanoseconds = struct.unpack("=qq", ctx.mem.read(buf, 16))
        assert START <= seconds * 10**9 + nanoseconds < START + 60 * 10**9
        assert 0 <= nanoseconds < 10**9
    assert drive(ctx, "clock_gettime", 1, buf) == Errno(errno.EINVAL)  # never notified (the filter)
    assert drive(ctx, "clock_gettime", 0, 0) == Errno(errno.EFAULT)


@pytest.mark.rows("gettimeofday")
def test_gettimeofday_is_the_start_plus_the_time_elapsed_and_a_zero_timezone(fake) -> None:
    ctx = _ctx(fake, start=START)
    tv, tz = ctx.mem.buffer(16), ctx.mem.put(b"\xff" * 8)
    assert drive(ctx, "gettimeofday", tv, tz) == Value(0)
    seconds, microseconds = struct.unpack("=qq", ctx.mem.read(tv, 16))
    assert START // 10**9 <= seconds < START // 10**9 + 60 and 0 <= microseconds < 10**6
    assert ctx.mem.read(tz, 8) == bytes(8)
    assert drive(ctx, "gettimeofday", 0, 0) == Value(0)
    assert drive(ctx, "gettimeofday", ctx.mem.buffer(16, readonly=True), 0) == Errno(errno.EFAULT)


@pytest.mark.rows("time")
def test_time_returns_the_start_plus_the_time_elapsed_and_stores_it_where_asked(fake) -> None:
    ctx = _ctx(fake, start=START)
    got = drive(ctx, "time", 0)
    assert isinstance(got, Value) and START // 10**9 <= got.value < START // 10**9 + 60
    buf = ctx.mem.buffer(8)
    got = drive(ctx, "time", buf)
    assert struct.unpack("=q", ctx.mem.read(buf, 8))[0] == got.value
    assert drive(ctx, "time", ctx.mem.buffer(8, readonly=True)) == Errno(errno.EFAULT)
    assert time.time() - got.value > 10**8  # not the host's clock (2026 here, 2000 there)


@pytest.mark.rows("set_tid_address")
def test_set_tid_address_is_let_through_whatever_its_argument(fake) -> None:
    ctx = _ctx(fake, seed=1, start=START)
    assert drive(ctx, "set_tid_address", 0) is CONTINUE
    assert drive(ctx, "set_tid_address", ctx.mem.buffer(4)) is CONTINUE


def test_the_random_devices_are_one_bounded_memfd_each_open_at_its_own_offset() -> None:
    d = D.Determinism(5, None, "x86_64")
    try:
        assert d.device_open(os.makedev(1, 3)) is None  # /dev/null: the device itself
        fds = [d.device_open(os.makedev(1, 9)) for _ in range(D.DEVICE_STARTS + 1)]
        heads = [os.read(fd, 32) for fd in fds]
        whole = D.stream(5, b"device", 0, D.DEVICE_SIZE)
        assert heads[0] == whole[:32] and heads[1] == whole[D.DEVICE_STRIDE:D.DEVICE_STRIDE + 32]
        assert heads[D.DEVICE_STARTS] == heads[0] and len(set(heads)) == D.DEVICE_STARTS
        st = os.fstat(fds[-1])
        assert st.st_size == D.DEVICE_SIZE
        with pytest.raises(OSError):
            os.write(fds[0], b"x")
        for fd in fds:
            os.close(fd)
        assert D.Determinism(None, START, "x86_64").device_open(os.makedev(1, 9)) is None
    finally:
        d.close()


def test_the_vdso_of_this_process_has_the_functions_that_are_patched() -> None:
    symbols = D.own_vdso_symbols()
    if os.uname().machine == "x86_64":
        for name in D.VDSO_CODE:
            assert 0 < symbols[name.encode()] < D.VDSO_MAX
        assert symbols[b"__vdso_clock_gettime"] == symbols[b"clock_gettime"]  # an alias: patched once
    with pytest.raises(OSError):
        D.vdso_symbols(b"\x7fELF\x01\x01" + bytes(58))  # not ELF64: nothing is guessed


@pytest.mark.rows("getdents64")
def test_getdents64_lists_the_directory_sorted_by_name_from_the_description_s_position(fake, tmp_path) -> None:
    ctx = fake(deterministic_dirs=True)
    ctx.resolver.listings = D.Listings()
    tree = tmp_path / "d"
    tree.mkdir()
    names = ["zeta", "alpha", "Mid", "_x", "9"] + ["n%03d" % i for i in range(100)]
    for name in names:
        (tree / name).write_text("")
    (tree / "sub").mkdir()
    fd = ctx.fds.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    got = []
    buf = ctx.mem.buffer(512)
    while True:
        reply = drive(ctx, "getdents64", fd, buf, 512)
        assert isinstance(reply, Value), reply
        if reply.value == 0:
            break
        got += D.parse_dirents(ctx.mem.read(buf, reply.value))
    listed = [name.decode() for name, _, _ in got]
    assert listed == sorted(names + [".", "..", "sub"])
    kinds = {name: kind for name, _, kind in got}
    assert kinds[b"sub"] == 4 and kinds[b"alpha"] == 8  # DT_DIR, DT_REG
    assert dict((n, i) for n, i, _ in got)[b"alpha"] == os.stat(tree / "alpha").st_ino
    os.lseek(ctx.fds[fd], 0, os.SEEK_SET)  # rewinddir: listed again
    assert drive(ctx, "getdents64", fd, buf, 512).value > 0
    assert drive(ctx, "getdents64", fd, buf, 20) == Errno(errno.EINVAL)  # not even one entry fits
    assert drive(ctx, "getdents64", fd, 0, 512) == Errno(errno.EFAULT)
    assert drive(ctx, "getdents64", ctx.fds.open(tree / "alpha"), buf, 512) == Errno(errno.ENOTDIR)
    assert drive(ctx, "getdents64", ctx.fds.open(tree, os.O_PATH), buf, 512) == Errno(errno.EBADF)
    assert drive(ctx, "getdents64", 999, buf, 512) == Errno(errno.EBADF)


@pytest.mark.rows("adjtimex", "clock_adjtime")
def test_adjtimex_reads_the_clock_state_with_the_run_s_time_and_refuses_a_change(fake) -> None:
    ctx = _ctx(fake, start=START)
    for name, args in (("adjtimex", ()), ("clock_adjtime", (0,))):
        buf = ctx.mem.buffer(208)
        reply = drive(ctx, name, *args, buf)
        assert isinstance(reply, Value) and 0 <= reply.value <= 5, reply  # TIME_OK .. TIME_ERROR
        seconds = struct.unpack_from("=q", ctx.mem.read(buf, 208), 72)[0]
        assert START // 10**9 <= seconds < START // 10**9 + 60
        change = ctx.mem.put(struct.pack("=I", 1) + bytes(204))  # ADJ_OFFSET: needs CAP_SYS_TIME
        assert drive(ctx, name, *args, change) == Errno(errno.EPERM)
        assert struct.unpack_from("=q", ctx.mem.read(change, 208), 72)[0] == 0  # nothing written
        assert drive(ctx, name, *args, 0) == Errno(errno.EFAULT)
    assert drive(ctx, "clock_adjtime", 1, ctx.mem.buffer(208)) == Errno(errno.EINVAL)  # never notified
