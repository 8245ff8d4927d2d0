"""The supervisor's reading of executables (_elf): ELF and #! as execve reads them.

Parsing is checked on this machine's own programs, on damaged copies of
/bin/true and on hand-written #! lines; every refusal and every #! split is
also checked against the running kernel, by executing the same file.  The
patched and rewritten copies are executed from sealed memfds, as the
supervisor hands them to the kernel.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import pytest

from sandlock import _elf
from sandlock._elf import Elf, Shebang

ARCH = os.uname().machine
OTHER_ARCH = {"x86_64": "aarch64", "aarch64": "x86_64"}[ARCH]
LOADER = {"x86_64": b"/lib64/ld-linux-x86-64.so.2", "aarch64": b"/lib/ld-linux-aarch64.so.1"}[ARCH]
STATIC = "/bin/busybox"      # busybox-static
PT_INTERP = 3

Outcome = Tuple[str, object]   # ("errno", n) or ("argv", [...]) or ("ran", returncode)


# --- helpers --------------------------------------------------------------------------------

def reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, size: data[offset:offset + size]


def parse(data: bytes, arch: str = ARCH) -> Elf:
    return _elf.parse_elf(reader(data), arch)


def program(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


def phdrs(data: bytes) -> List[Tuple[int, Tuple[int, ...]]]:
    """(file offset, fields) of each program header, read independently of _elf."""
    e_phoff, = struct.unpack_from("<Q", data, 32)
    e_phnum, = struct.unpack_from("<H", data, 56)
    return [(at, struct.unpack_from("<IIQQQQQQ", data, at)) for at in range(e_phoff, e_phoff + 56 * e_phnum, 56)]


def interp_at(data: bytes) -> int:
    return next(at for at, fields in phdrs(data) if fields[0] == PT_INTERP)


def execute(path: Union[str, Path], args: Tuple[str, ...] = (), pass_fds: Tuple[int, ...] = ()) -> Outcome:
    """Run a program; ("errno", n) if execve refused it, else ("ran", returncode, stdout)."""
    try:
        done = subprocess.run([str(path), *args], capture_output=True, pass_fds=pass_fds, timeout=30)
    except OSError as e:
        return ("errno", e.errno)
    return ("ran", done.returncode, done.stdout)


def install(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def true_bytes() -> bytes:
    return program("/bin/true")


# --- constants ------------------------------------------------------------------------------

def test_elf_structures_have_the_sizes_of_elf_h():
    assert (_elf.Elf64_Ehdr.size, _elf.Elf64_Phdr.size) == (64, 56)


def test_machine_for_maps_uname_names_to_e_machine():
    assert _elf.machine_for("x86_64") == 62
    assert _elf.machine_for("aarch64") == 183
    with pytest.raises(ValueError):
        _elf.machine_for("mips")


# --- parse_elf on real programs --------------------------------------------------------------

def test_a_dynamic_program_names_the_loader_and_where_its_header_is(true_bytes):
    elf = parse(true_bytes)
    assert elf.interp == LOADER
    assert elf.interp_offset == interp_at(true_bytes)


def test_parse_elf_reads_through_a_file_descriptor():
    fd = os.open("/bin/true", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert _elf.parse_elf(lambda offset, size: os.pread(fd, size, offset), ARCH).interp == LOADER
    finally:
        os.close(fd)


def test_a_static_program_has_no_interpreter():
    if not os.path.exists(STATIC):
        pytest.skip(f"{STATIC} (busybox-static) is not installed")
    assert parse(program(STATIC)) == Elf(None, -1)


def test_a_position_independent_program_without_pt_interp_is_static(true_bytes):
    data = bytearray(true_bytes)
    struct.pack_into("<I", data, interp_at(true_bytes), 0)   # PT_NULL
    assert struct.unpack_from("<H", data, 16)[0] == 3         # still ET_DYN
    assert parse(bytes(data)) == Elf(None, -1)


def test_a_program_for_the_other_architecture_is_enoexec(true_bytes):
    assert errno_of(lambda: parse(true_bytes, OTHER_ARCH)) == errno.ENOEXEC


# --- parse_elf on damaged programs, and what the kernel says of them ---------------------------

Mutation = Callable[[bytearray], Optional[bytes]]


def put(fmt: str, where: Callable[[bytes], int], value: int) -> Mutation:
    return lambda d: struct.pack_into(fmt, d, where(d), value)


def at(offset: int) -> Callable[[bytes], int]:
    return lambda d: offset


def interp_field(offset: int) -> Callable[[bytes], int]:
    return lambda d: interp_at(d) + offset


def phdrs_moved_to_end(count: int) -> Mutation:
    """The program header table copied to the end of the file and padded with PT_NULL to `count`."""
    def mutate(d: bytearray) -> None:
        table = b"".join(struct.pack("<IIQQQQQQ", *fields) for _, fields in phdrs(d))
        struct.pack_into("<QH", d, 32, len(d), 0)
        struct.pack_into("<H", d, 56, count)
        d += table + bytes(56 * count - len(table))
    return mutate


# name -> (damage done to /bin/true, errno the kernel's execve gives)
REFUSED: Dict[str, Tuple[Mutation, int]] = {
    "other machine": (put("<H", at(18), _elf.machine_for(OTHER_ARCH)), errno.ENOEXEC),
    "ET_REL": (put("<H", at(16), 1), errno.ENOEXEC),
    "ET_CORE": (put("<H", at(16), 4), errno.ENOEXEC),
    "bad magic": (put("<B", at(0), 0x7e), errno.ENOEXEC),
    "e_phentsize 32": (put("<H", at(54), 32), errno.ENOEXEC),
    "e_phnum 0": (put("<H", at(56), 0), errno.ENOEXEC),
    "e_phnum 1171 (over 64 KiB)": (phdrs_moved_to_end(1171), errno.ENOEXEC),
    "phdrs past the end": (lambda d: struct.pack_into("<Q", d, 32, len(d) - 100), errno.ENOEXEC),
    "e_phoff 2**63": (put("<Q", at(32), 1 << 63), errno.ENOEXEC),
    "PT_INTERP p_filesz 1": (put("<Q", interp_field(32), 1), errno.ENOEXEC),
    "PT_INTERP p_filesz 4097": (put("<Q", interp_field(32), 4097), errno.ENOEXEC),
    "PT_INTERP without NUL": (lambda d: struct.pack_into("<Q", d, interp_at(d) + 32, len(LOADER)), errno.ENOEXEC),
    "PT_INTERP past the end": (lambda d: struct.pack_into("<Q", d, interp_at(d) + 8, len(d) - 10), errno.EIO),
    "PT_INTERP at 2**63": (put("<Q", interp_field(8), 1 << 63), errno.EINVAL),
    "PT_INTERP ends past 2**63": (put("<Q", interp_field(8), (1 << 63) - 10), errno.EINVAL),
    "empty PT_INTERP": (lambda d: d.__setitem__(struct.unpack_from("<Q", d, interp_at(d) + 8)[0], 0),
                        errno.EACCES),
    "40 bytes": (lambda d: bytes(d[:40]), errno.ENOEXEC),
    "200 bytes": (lambda d: bytes(d[:200]), errno.ENOEXEC),
    "magic only": (lambda d: b"\x7fELF", errno.ENOEXEC),
    "garbage": (lambda d: b"garbage!" * 40, errno.ENOEXEC),
    "empty file": (lambda d: b"", errno.ENOEXEC),
}


def damaged(true_bytes: bytes, mutation: Mutation) -> bytes:
    data = bytearray(true_bytes)
    replaced = mutation(data)
    return bytes(data) if replaced is None else replaced


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_parse_elf_refuses_a_damaged_program_with_the_errno_of_execve(true_bytes, name):
    mutation, code = REFUSED[name]
    assert errno_of(lambda: parse(damaged(true_bytes, mutation))) == code


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_running_kernel_refuses_the_same_program_with_the_same_errno(true_bytes, tmp_path, name):
    mutation, code = REFUSED[name]
    assert execute(install(tmp_path / "prog", damaged(true_bytes, mutation))) == ("errno", code)


@pytest.mark.parametrize("mutation", [
    put("<B", at(4), 1), put("<B", at(5), 2),
], ids=["ELFCLASS32", "ELFDATA2MSB"])
def test_a_file_not_labelled_64_bit_little_endian_is_refused_although_the_native_loader_ignores_the_label(
        true_bytes, tmp_path, mutation):
    data = damaged(true_bytes, mutation)
    assert errno_of(lambda: parse(data)) == errno.ENOEXEC
    assert execute(install(tmp_path / "prog", data))[:2] == ("ran", 0)


def test_two_pt_interp_headers_are_refused_although_the_kernel_would_take_the_first(true_bytes, tmp_path):
    data = bytearray(true_bytes)
    note = next(at for at, fields in phdrs(data) if fields[0] == 4)   # a PT_NOTE becomes a second PT_INTERP
    data[note:note + 56] = data[interp_at(data):interp_at(data) + 56]
    assert errno_of(lambda: parse(bytes(data))) == errno.ENOEXEC
    assert execute(install(tmp_path / "prog", bytes(data)))[:2] == ("ran", 0)


def test_the_interpreter_path_ends_at_its_first_nul_as_open_exec_reads_it(true_bytes, tmp_path):
    data = bytearray(true_bytes)
    start = struct.unpack_from("<Q", data, interp_at(data) + 8)[0]
    data[start + 5] = 0                                       # "/lib6\0..."
    assert parse(bytes(data)).interp == LOADER[:5]
    assert execute(install(tmp_path / "prog", bytes(data))) == ("errno", errno.ENOENT)


@pytest.mark.parametrize("mutation", [
    put("<Q", interp_field(32), 4096), phdrs_moved_to_end(1170),
], ids=["PT_INTERP p_filesz 4096", "e_phnum 1170 (64 KiB)"])
def test_limits_the_kernel_accepts_are_accepted(true_bytes, mutation):
    data = bytearray(true_bytes)
    data += bytes(8192)                                       # room for the longer PT_INTERP read
    assert parse(damaged(bytes(data), mutation)).interp == LOADER


# --- patch_interp ---------------------------------------------------------------------------

@pytest.fixture
def loader_link(tmp_path: Path) -> Path:
    """A new path of the host loader, which only a patched PT_INTERP can name."""
    link = tmp_path / "my-ld.so"
    link.symlink_to(os.path.realpath(LOADER))
    return link


def run_from_memfd(data: bytes, args: Tuple[str, ...], env: Optional[Dict[str, str]] = None) -> Outcome:
    fd = _elf.sealed_memfd("prog", data)
    try:
        done = subprocess.run([f"/proc/self/fd/{fd}", *args], capture_output=True, pass_fds=(fd,),
                              env=env, timeout=30)
    except OSError as e:
        return ("errno", e.errno)
    finally:
        os.close(fd)
    return ("ran", done.returncode, done.stdout)


def test_a_patched_program_runs_from_a_sealed_memfd_with_the_new_interpreter(loader_link):
    patched = _elf.patch_interp(program("/bin/echo"), os.fsencode(loader_link))
    assert run_from_memfd(patched, ("hello", "world")) == ("ran", 0, b"hello world\n")


def test_a_patched_program_runs_the_way_true_version_does(loader_link):
    patched = _elf.patch_interp(program("/bin/true"), os.fsencode(loader_link))
    outcome = run_from_memfd(patched, ("--version",))
    assert outcome[:2] == ("ran", 0) and b"true" in outcome[2]


def test_the_kernel_loads_the_patched_interpreter_path_not_the_original(loader_link):
    patched = _elf.patch_interp(program("/bin/echo"), os.fsencode(loader_link))
    loader_link.unlink()
    assert run_from_memfd(patched, ("hello",)) == ("errno", errno.ENOENT)


def test_a_patch_to_a_nonexistent_path_fails_exec_with_enoent(true_bytes):
    patched = _elf.patch_interp(true_bytes, b"/nonexistent/ld.so")
    assert run_from_memfd(patched, ()) == ("errno", errno.ENOENT)


def test_the_loader_still_knows_itself_by_the_original_name(loader_link):
    # glibc's ld.so lists itself under the PT_INTERP name it reads through p_vaddr
    patched = _elf.patch_interp(program("/bin/echo"), os.fsencode(loader_link))
    outcome = run_from_memfd(patched, (), env={"LD_TRACE_LOADED_OBJECTS": "1"})
    assert outcome[:2] == ("ran", 0)
    assert LOADER in outcome[2] and os.fsencode(loader_link) not in outcome[2]


def test_patching_changes_only_p_offset_and_p_filesz_and_appends_the_path(true_bytes):
    new = b"/guest/lib64/ld.so"
    true_bytes += b"odd"                                      # the path goes after padding to 8 bytes
    patched = _elf.patch_interp(true_bytes, new)
    entry = interp_at(true_bytes)
    before = dict(phdrs(true_bytes))[entry]
    after = dict(phdrs(patched))[entry]
    assert after[2] % 8 == 0 and after[2] >= len(true_bytes)
    assert patched[after[2]:] == new + b"\0" and after[5] == len(new) + 1
    assert after[:2] + after[3:5] + after[6:] == before[:2] + before[3:5] + before[6:]   # p_vaddr, p_memsz...
    changed = [i for i in range(len(true_bytes)) if patched[i] != true_bytes[i]]
    assert changed and all(entry + 8 <= i < entry + 16 or entry + 32 <= i < entry + 40 for i in changed)
    assert patched[before[2]:before[2] + before[5]] == LOADER + b"\0"          # at p_vaddr's bytes too
    assert parse(patched) == Elf(new, entry)


@pytest.mark.parametrize("new", [b"lib/ld.so", b"", b"/a\0b", b"/" + b"a" * 4095])
def test_patch_interp_rejects_a_path_the_kernel_could_not_open(true_bytes, new):
    with pytest.raises(ValueError):
        _elf.patch_interp(true_bytes, new)


def test_patch_interp_accepts_the_longest_path(true_bytes):
    new = b"/" + b"a" * 4094
    assert parse(_elf.patch_interp(true_bytes, new)).interp == new


def test_patch_interp_of_a_static_program_is_a_value_error():
    if not os.path.exists(STATIC):
        pytest.skip(f"{STATIC} (busybox-static) is not installed")
    with pytest.raises(ValueError):
        _elf.patch_interp(program(STATIC), b"/lib/ld.so")


def test_patch_interp_of_a_non_elf_is_enoexec():
    assert errno_of(lambda: _elf.patch_interp(b"#!/bin/sh\n", b"/lib/ld.so")) == errno.ENOEXEC


# --- sealed_memfd ---------------------------------------------------------------------------

def test_sealed_memfd_is_read_only_sealed_and_close_on_exec():
    data = os.urandom(3 << 20)                     # more than one write may take
    before = set(os.listdir("/proc/self/fd"))
    fd = _elf.sealed_memfd("sealed", data)
    try:
        assert set(os.listdir("/proc/self/fd")) - before == {str(fd)}   # the writable fd is gone
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:sealed")
        assert errno_of(lambda: os.write(fd, b"x")) == errno.EBADF
        assert fcntl.fcntl(fd, _elf.F_GET_SEALS) == _elf.SEALS == 1 | 2 | 4 | 8
        assert not os.get_inheritable(fd)
        assert os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)


def test_sealed_memfd_retries_without_mfd_exec_on_kernels_before_6_3(monkeypatch):
    real_memfd_create = os.memfd_create
    calls = []

    def old_kernel(name: str, flags: int) -> int:
        calls.append(flags)
        if flags & _elf.MFD_EXEC:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_memfd_create(name, flags)

    monkeypatch.setattr(os, "memfd_create", old_kernel)
    fd = _elf.sealed_memfd("old", b"data")
    monkeypatch.undo()
    os.close(fd)
    assert [bool(flags & _elf.MFD_EXEC) for flags in calls] == [True, False]


def test_sealed_memfd_writes_everything_when_writes_are_short(monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:1000]))
    data = os.urandom(10_000)
    fd = _elf.sealed_memfd("short", data)
    monkeypatch.undo()
    try:
        assert os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)


def test_sealed_memfd_content_cannot_change_even_through_a_writable_reopen():
    fd = _elf.sealed_memfd("sealed", b"content")
    try:
        writable = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            assert errno_of(lambda: os.write(writable, b"x")) == errno.EPERM        # F_SEAL_WRITE
            assert errno_of(lambda: os.ftruncate(writable, 1)) == errno.EPERM       # F_SEAL_SHRINK
            assert errno_of(lambda: os.ftruncate(writable, 100)) == errno.EPERM     # F_SEAL_GROW
            assert errno_of(lambda: fcntl.fcntl(writable, _elf.F_ADD_SEALS, 0)) == errno.EPERM   # F_SEAL_SEAL
        finally:
            os.close(writable)
        assert os.pread(fd, 100, 0) == b"content"
    finally:
        os.close(fd)


# --- parse_shebang --------------------------------------------------------------------------

@pytest.mark.parametrize("head, expected", [
    (b"#!/bin/sh\n", Shebang(b"/bin/sh", None)),
    (b"#! /usr/bin/env  python3 -u \n", Shebang(b"/usr/bin/env", b"python3 -u")),
    (b"#!/bin/sh", Shebang(b"/bin/sh", None)),
    (b"#!/bin/sh -e", Shebang(b"/bin/sh", b"-e")),
    (b"#!\t/bin/sh\t-e\t\nexit 0\n", Shebang(b"/bin/sh", b"-e")),
    (b"#!/bin/sh \n", Shebang(b"/bin/sh", None)),
    (b"#!/bin/sh -e\r\n", Shebang(b"/bin/sh", b"-e\r")),
    (b"#!/bin/sh\0-e\n", Shebang(b"/bin/sh", None)),
    (b"#!/bin/sh -e\0x\n", Shebang(b"/bin/sh", b"-e")),
    (b"#!/bin/sh \0x\n", Shebang(b"/bin/sh", b"")),
    (b"#!/bin/sh " + b"a" * 300 + b"\n", Shebang(b"/bin/sh", b"a" * 245)),
    (b"#!/bin/sh" + b" " * 300, Shebang(b"/bin/sh", None)),
    (b"#!/bin/sh\n" + b"x" * 1000, Shebang(b"/bin/sh", None)),
])
def test_parse_shebang_splits_like_load_script(head, expected):
    assert _elf.parse_shebang(head) == expected


@pytest.mark.parametrize("head", [b"", b"#", b" #!/bin/sh\n", b"\x7fELF\x02\x01\x01", b"#/bin/sh\n", b"!#/bin/sh\n"])
def test_a_file_not_starting_with_hash_bang_is_not_a_script(head):
    assert _elf.parse_shebang(head) is None


@pytest.mark.parametrize("head, code", [
    (b"#!\n", errno.ENOEXEC),
    (b"#!  \t \n", errno.ENOEXEC),
    (b"#!" + b" " * 254, errno.ENOEXEC),
    (b"#!/" + b"a" * 300, errno.ENOEXEC),
    (b"#!/" + b"a" * 300 + b"\n", errno.ENOEXEC),
    (b"#!", errno.EACCES),
    (b"#!   ", errno.EACCES),
    (b"#!\0/bin/sh\n", errno.EACCES),
])
def test_parse_shebang_refuses_a_missing_or_truncated_interpreter(head, code):
    assert errno_of(lambda: _elf.parse_shebang(head)) == code


ARGV_PRINTER = "#!{python}\nimport os, sys\nsys.stdout.write(repr([os.fsencode(a) for a in sys.argv[1:]]))\n"


@pytest.fixture
def argv_printer(tmp_path: Path) -> bytes:
    """An interpreter printing the arguments it gets (a script itself: the kernel nests them)."""
    return os.fsencode(install(tmp_path / "argv", ARGV_PRINTER.format(python=sys.executable).encode()))


def fill(interp: bytes, before: bytes, after: bytes = b"", pad: bytes = b"a") -> bytes:
    """b"#!" + interp + before, padded with `pad` to the whole 256-byte header, + after."""
    line = b"#!" + interp + before
    return line + pad * (_elf.HEADER_SIZE - len(line)) + after


# name -> script text, given the path I of the argv printer
SCRIPTS: Dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda I: b"#!" + I + b"\necho\n",
    "spaces and an argument": lambda I: b"#! " + I + b"  -u  x \n",
    "tabs": lambda I: b"#!\t" + I + b"\t-x\t\n",
    "no newline": lambda I: b"#!" + I,
    "no newline, argument": lambda I: b"#!" + I + b" a b",
    "carriage return": lambda I: b"#!" + I + b" x\r\n",
    "trailing space only": lambda I: b"#!" + I + b" \n",
    "NUL after the interpreter": lambda I: b"#!" + I + b"\0x y\n",
    "NUL in the argument": lambda I: b"#!" + I + b" -x\0y\n",
    "NUL as the argument": lambda I: b"#!" + I + b" \0x\n",
    "NUL first": lambda I: b"#!\0" + I + b"\n",
    "empty line": lambda I: b"#!\n",
    "spaces line": lambda I: b"#!   \n",
    "empty file": lambda I: b"#!",
    "spaces to EOF": lambda I: b"#!   ",
    "all spaces": lambda I: b"#!" + b" " * 254,
    "long argument": lambda I: b"#!" + I + b" " + b"a" * 300 + b"\n",
    "argument and newline fill the header": lambda I: fill(I, b" ", b"", b"a")[:-1] + b"\n",
    "argument fills the header": lambda I: fill(I, b" ", b"\n"),
    "spaces fill the header": lambda I: fill(I, b"", b"zzz", b" "),
    "argument then spaces fill the header": lambda I: fill(I, b" x", b"zzz", b" "),
    "interpreter fills the header": lambda I: b"#!/" + b"a" * 253,
    "interpreter runs past the header": lambda I: b"#!/" + b"a" * 300 + b"\n",
    "interpreter ends at the last byte": lambda I: b"#!/" + b"a" * 252 + b" ",
}


def kernel_view(script: Path) -> Outcome:
    outcome = execute(script)
    if outcome[0] == "errno":
        return outcome
    assert outcome[1] == 0, outcome
    return ("argv", ast.literal_eval(outcome[2].decode()))


def model_view(head: bytes, interp: bytes, script: Path) -> Outcome:
    """What parse_shebang predicts execve does with the script (other interpreters do not exist)."""
    try:
        found = _elf.parse_shebang(head)
    except OSError as e:
        return ("errno", e.errno)
    assert found is not None
    if found.interp != interp:
        return ("errno", errno.ENOENT)
    return ("argv", ([] if found.arg is None else [found.arg]) + [os.fsencode(script)])


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_parse_shebang_agrees_with_the_running_kernel(argv_printer, tmp_path, name):
    text = SCRIPTS[name](argv_printer)
    script = install(tmp_path / "script", text)
    assert model_view(text[:_elf.HEADER_SIZE], argv_printer, script) == kernel_view(script)


# --- rewrite_shebang ------------------------------------------------------------------------

@pytest.mark.parametrize("arg", [None, b"-e", b"python3 -u", b"a\tb", b"", b"\r"])
def test_rewrite_shebang_round_trips_through_parse_shebang(arg):
    script = b"#!/usr/bin/env python3\nprint('hi')\n#!/not/this/one\n"
    rewritten = _elf.rewrite_shebang(script, b"/guest/usr/bin/env", arg)
    assert _elf.parse_shebang(rewritten) == Shebang(b"/guest/usr/bin/env", arg)
    assert rewritten.split(b"\n", 1)[1] == b"print('hi')\n#!/not/this/one\n"


def test_rewrite_shebang_replaces_a_first_line_without_newline():
    assert _elf.rewrite_shebang(b"#!/bin/sh -e", b"/g/bin/sh", None) == b"#!/g/bin/sh\n"


def test_rewrite_shebang_replaces_the_whole_first_line_even_past_the_header():
    script = b"#!/bin/sh " + b"a" * 500 + b"\necho\n"
    assert _elf.rewrite_shebang(script, b"/g/sh", b"x") == b"#!/g/sh x\necho\n"


def test_a_rewritten_line_of_exactly_the_header_size_keeps_its_whole_argument():
    arg = b"a" * (_elf.HEADER_SIZE - len(b"#!/g/sh \n"))
    rewritten = _elf.rewrite_shebang(b"#!/bin/sh\n", b"/g/sh", arg)
    assert len(rewritten.split(b"\n")[0]) + 1 == _elf.HEADER_SIZE
    assert _elf.parse_shebang(rewritten) == Shebang(b"/g/sh", arg)
    assert errno_of(lambda: _elf.rewrite_shebang(b"#!/bin/sh\n", b"/g/sh", arg + b"a")) == errno.ENAMETOOLONG


@pytest.mark.parametrize("interp, arg", [
    (b"", None), (b"/a b", None), (b"/a\tb", None), (b"/a\nb", None), (b"/a\0b", None),
    (b"/a", b" x"), (b"/a", b"x\t"), (b"/a", b"x\ny"), (b"/a", b"x\0y"),
])
def test_rewrite_shebang_rejects_what_load_script_would_split_otherwise(interp, arg):
    with pytest.raises(ValueError):
        _elf.rewrite_shebang(b"#!/bin/sh\n", interp, arg)


def test_a_rewritten_script_from_a_memfd_runs_the_new_interpreter():
    script = b"#!/nonexistent/sh -x\necho rewritten\n"
    assert run_from_memfd(script, ()) == ("errno", errno.ENOENT)
    assert run_from_memfd(_elf.rewrite_shebang(script, b"/bin/sh", None), ()) == ("ran", 0, b"rewritten\n")


@pytest.mark.parametrize("arg", [None, b"one arg", b""])
def test_a_rewritten_script_from_a_memfd_gets_the_new_argument(argv_printer, arg):
    rewritten = _elf.rewrite_shebang(b"#!/nonexistent/x old\nrest\n", argv_printer, arg)
    fd = _elf.sealed_memfd("script", rewritten)
    try:
        done = subprocess.run([f"/proc/self/fd/{fd}"], capture_output=True, pass_fds=(fd,), timeout=30, check=True)
    finally:
        os.close(fd)
    assert ast.literal_eval(done.stdout.decode()) == ([] if arg is None else [arg]) + [b"/proc/self/fd/%d" % fd]


def test_sealing_a_memfd_is_tried_again_while_the_kernel_answers_ebusy_and_fails_after_that(monkeypatch) -> None:
    """F_SEAL_WRITE answers EBUSY while a page of the copy is still held elsewhere (a passing
    state just after the copy): the seal is tried again; an EBUSY that lasts is the error."""
    real = fcntl.fcntl
    answers = [errno.EBUSY, errno.EBUSY]

    def flaky(fd, cmd, arg=0):  # type: ignore[no-untyped-def]
        if cmd == _elf.F_ADD_SEALS and answers:
            raise OSError(answers.pop(0), os.strerror(errno.EBUSY))
        return real(fd, cmd, arg)
    monkeypatch.setattr(_elf.fcntl, "fcntl", flaky)
    fd = _elf.sealed_memfd("t", b"#!/bin/sh\n")
    try:
        assert real(fd, _elf.F_GET_SEALS) & _elf.SEALS == _elf.SEALS and os.pread(fd, 16, 0) == b"#!/bin/sh\n"
    finally:
        os.close(fd)
    assert answers == []
    answers.extend([errno.EBUSY] * _elf.SEAL_TRIES)
    with pytest.raises(OSError) as caught:
        _elf.sealed_memfd("t", b"x")
    assert caught.value.errno == errno.EBUSY and answers == []
