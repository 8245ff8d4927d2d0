"""_rootexec's reading of an exec's arguments (arguments_fit), on fake memory (tests/fakectx.py).

The strings of one exec are measured through a cache of the last page read
(`page`): one read serves every string on that page.  Both sides are tested:
with the cache and without it (page=None, the reading of before), the same
lengths and the same errors, EFAULT where the memory ends and E2BIG past
MAX_ARG_STRLEN.
"""

import errno
import os
import threading
import types

import pytest

from fakectx import FakeHot, Memory
from sandlock import _rootexec as RX


def _ctx(mem):
    return types.SimpleNamespace(tracees=types.SimpleNamespace(hot=FakeHot(mem)))


def _counted(size=1 << 20):
    mem = Memory(size)
    reads = []
    mem.after_read = lambda address, size: reads.append((address, size))
    return mem, reads


def test_strings_on_one_page_are_measured_with_one_read_of_that_page():
    mem, reads = _counted()
    addresses = [mem.cstr(b"x" * n) for n in (0, 1, 10, 100, 300)]
    page = {}
    assert [RX._arg_length(_ctx(mem), 0, a, page) for a in addresses] == [1, 2, 11, 101, 301]
    assert len(reads) == 1
    reads.clear()
    assert [RX._arg_length(_ctx(mem), 0, a) for a in addresses] == [1, 2, 11, 101, 301]
    assert len(reads) == 5  # without the cache: a read per string


def test_strings_alternating_between_pages_read_each_page_once_and_the_pages_kept_are_bounded():
    mem, reads = _counted()
    here = mem.cstr(b"a" * 10)
    mem.put(b"-" * RX.PAGE_SIZE)
    there = mem.cstr(b"b" * 20)
    page = {}
    for _ in range(5):
        assert RX._arg_length(_ctx(mem), 0, here, page) == 11
        assert RX._arg_length(_ctx(mem), 0, there, page) == 21
    assert len(reads) == 2
    far = [mem.cstr(b"c" * 7) for _ in range(RX.PAGES_KEPT + 3) if mem.put(b"-" * RX.PAGE_SIZE)]
    assert [RX._arg_length(_ctx(mem), 0, a, page) for a in far] == [8] * len(far)
    assert len(page) <= RX.PAGES_KEPT


@pytest.mark.parametrize("cached", [True, False])
def test_a_string_across_a_page_boundary_is_measured_across_it(cached):
    mem, _ = _counted()
    mem.put(b"a" * (RX.PAGE_SIZE - 40))
    address = mem.cstr(b"y" * 100)
    assert address % RX.PAGE_SIZE > RX.PAGE_SIZE - 100
    assert RX._arg_length(_ctx(mem), 0, address, {} if cached else None) == 101


@pytest.mark.parametrize("cached", [True, False])
def test_a_string_that_runs_into_unmapped_memory_is_efault(cached):
    size = 2 * RX.PAGE_SIZE
    mem, _ = _counted(size)
    address = mem.put(b"z" * size)  # no NUL before the end of the memory
    with pytest.raises(OSError) as info:
        RX._arg_length(_ctx(mem), 0, address, {} if cached else None)
    assert info.value.errno == errno.EFAULT
    with pytest.raises(OSError) as info:
        RX._arg_length(_ctx(mem), 0, mem.base + size + 64, {} if cached else None)
    assert info.value.errno == errno.EFAULT


@pytest.mark.parametrize("cached", [True, False])
def test_a_string_longer_than_max_arg_strlen_is_e2big_and_one_just_under_fits(cached):
    mem, _ = _counted(2 * RX.MAX_ARG_STRLEN + 64)
    fits = mem.cstr(b"q" * (RX.MAX_ARG_STRLEN - 1))
    long = mem.cstr(b"q" * RX.MAX_ARG_STRLEN)
    assert RX._arg_length(_ctx(mem), 0, fits, {} if cached else None) == RX.MAX_ARG_STRLEN
    with pytest.raises(OSError) as info:
        RX._arg_length(_ctx(mem), 0, long, {} if cached else None)
    assert info.value.errno == errno.E2BIG


def test_an_exec_s_arguments_leave_the_room_each_string_alone_would_leave(monkeypatch):
    """arguments_fit measures a string whose NUL lies in a unit already read for its
    neighbours from those bytes, without calling _arg_length: the room is the same to
    the byte (E2BIG one byte past it); a string across a page boundary still goes
    through _arg_length."""
    mem, _ = _counted(4 << 20)
    strings = [b"e%d=" % i + b"v" * (i * 37 % 300) for i in range(60)]
    addresses = [mem.cstr(text) for text in strings]
    blob = mem.put(bytes(3 * RX.PAGE_SIZE))
    crossing = (blob + RX.PAGE_SIZE) // RX.PAGE_SIZE * RX.PAGE_SIZE + RX.PAGE_SIZE - 5
    mem.data[crossing - mem.base:crossing - mem.base + 41] = b"x" * 40 + b"\0"
    argv, envp = mem.pointers(*addresses[:10]), mem.pointers(*addresses[10:], crossing)
    call = types.SimpleNamespace(tid=0, ptr=argv, ptr2=envp)
    used = sum(len(text) + 1 for text in strings) + 41 + (len(strings) + 1) * 8
    limit = max(min(RX.STK_LIM // 4 * 3, RX._stack_rlimit(0) // 4), RX.ARG_MAX)
    measured = []
    arg_length = RX._arg_length
    monkeypatch.setattr(RX, "_arg_length", lambda *a: measured.append(a[2]) or arg_length(*a))
    RX.arguments_fit(_ctx(mem), call, limit - used - 1)  # the name's NUL takes the last byte
    with pytest.raises(OSError) as info:
        RX.arguments_fit(_ctx(mem), call, limit - used)
    assert info.value.errno == errno.E2BIG
    assert crossing in measured and len(measured) < 2 * 10  # the first string of each unit, the crossing one


# --- the anchor's links an exec is pointed at (_rootscratch.Cwd.link) ---------------------------

def _cwd(tmp_path):
    from sandlock import _rootscratch
    return _rootscratch.Cwd(str(tmp_path), b"/", lambda: [], lambda pid: False)


def _entries(top):
    return sorted(os.fsencode(os.path.relpath(os.path.join(d, n), top))
                  for d, dirs, files in os.walk(top) for n in dirs + files)


def test_the_same_program_into_the_same_fd_number_reuses_its_link_without_writing(tmp_path):
    cwd = _cwd(tmp_path)
    try:
        first = cwd.link(b"/proc/self/fd/4", b"cc1", 40)
        made = _entries(tmp_path)
        mtime = os.stat(tmp_path / os.fsdecode(first.split(b"/")[0])).st_mtime_ns
        for _ in range(5):
            assert cwd.link(b"/proc/self/fd/4", b"cc1", 40) == first
        assert _entries(tmp_path) == made  # nothing made, nothing left behind
        assert os.stat(tmp_path / os.fsdecode(first.split(b"/")[0])).st_mtime_ns == mtime
        assert os.readlink(os.path.join(tmp_path, os.fsdecode(first))) == "/proc/self/fd/4"
        assert first.endswith(b"/cc1") and len(first) <= 40
    finally:
        cwd.close()


def test_another_fd_number_on_the_same_stable_name_gets_a_rotating_name_and_changes_nothing(tmp_path):
    cwd = _cwd(tmp_path)
    try:
        stable = cwd.link(b"/proc/self/fd/4", b"cc1", 40)
        other = cwd.link(b"/proc/self/fd/132", b"cc1", 40)  # 132 % 128 == 4: the same name
        assert other != stable and other.endswith(b"/cc1")
        assert os.readlink(os.path.join(tmp_path, os.fsdecode(stable))) == "/proc/self/fd/4"
        assert os.readlink(os.path.join(tmp_path, os.fsdecode(other))) == "/proc/self/fd/132"
        # a target that is not an fd, or no room for the name: rotating names, as before
        plain = cwd.link(b"/some/where", b"cc1", 40)
        assert plain not in (stable, other)
        short = cwd.link(b"/proc/self/fd/4", b"cc1", 4)
        assert len(short) == 1 and os.readlink(os.path.join(tmp_path, os.fsdecode(short))) == "/proc/self/fd/4"
    finally:
        cwd.close()


def test_past_stable_max_links_names_rotate_as_before(tmp_path, monkeypatch):
    from sandlock import _rootscratch
    monkeypatch.setattr(_rootscratch.Cwd, "STABLE_MAX", 2)
    cwd = _cwd(tmp_path)
    try:
        a, b = cwd.link(b"/proc/self/fd/3", b"a", 40), cwd.link(b"/proc/self/fd/3", b"b", 40)
        c1, c2 = cwd.link(b"/proc/self/fd/3", b"c", 40), cwd.link(b"/proc/self/fd/3", b"c", 40)
        assert a[:1] == b[:1] == bytes([0x83])
        assert c1 != c2 and c1[:1] != bytes([0x83]) and c2[:1] != bytes([0x83])  # rotating: a new one each time
        assert cwd.link(b"/proc/self/fd/3", b"a", 40) == a
    finally:
        cwd.close()


# --- the stack limit that sizes the arguments' room ----------------------------------------------

def _expected_stack():
    import resource
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return 1 << 64 if soft == resource.RLIM_INFINITY else soft


def _refuse_prlimit(monkeypatch):
    """prlimit64 refused (EPERM, a caller of other credentials): /proc/TID/limits is read."""
    call = RX._syscalls._call

    def refused(name, *args):
        if name == "prlimit64":
            raise PermissionError(errno.EPERM, "not ours")
        return call(name, *args)
    monkeypatch.setattr(RX._syscalls, "_call", refused)


def test_the_stack_limit_is_asked_with_prlimit_and_read_from_proc_when_prlimit_is_refused(monkeypatch):
    tid = threading.get_native_id()
    assert RX._stack_rlimit(tid) == _expected_stack()
    _refuse_prlimit(monkeypatch)
    assert RX._stack_rlimit(tid) == _expected_stack()


@pytest.mark.parametrize("asked", ["prlimit", "proc"])
def test_an_unlimited_stack_reads_as_more_than_any_arguments_need(monkeypatch, asked):
    """RLIM64_INFINITY from prlimit64 (the raw call: no resource module) and "unlimited"
    from /proc/PID/limits both read as 1 << 64, and a finite limit as its value."""
    import resource
    if asked == "proc":
        _refuse_prlimit(monkeypatch)
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if os.geteuid() == 0:
        hard = resource.RLIM_INFINITY  # the child may raise it (CAP_SYS_RESOURCE): both cases run
    for soft, expected in ((resource.RLIM_INFINITY, 1 << 64), (1 << 20, 1 << 20)):
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            continue  # not ours to raise (an unprivileged user's hard limit): the other case runs
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            os._exit(0)
        try:
            os.read(ready_r, 1)
            assert RX._stack_rlimit(pid) == expected, (asked, soft)
        finally:
            os.write(go_w, b"x")
            os.waitpid(pid, 0)
            for fd in (ready_r, ready_w, go_r, go_w):
                os.close(fd)


def test_the_stack_limit_of_a_process_that_is_gone_is_efault():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(OSError) as info:
        RX._stack_rlimit(pid)
    assert info.value.errno == errno.EFAULT
