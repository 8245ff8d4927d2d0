"""How the kernel would execute a file, decided by the supervisor (emulated root).

Under an emulated root the kernel must not resolve anything a program names
for its own execution: it would look up the ELF interpreter (PT_INTERP, e.g.
/lib64/ld-linux-x86-64.so.2) and a script's ``#!`` interpreter against the
*host* root.  The supervisor therefore reads the file first, mirroring the
kernel's checks, and hands the kernel a copy in a sealed memfd:

- a dynamic ELF whose PT_INTERP p_offset/p_filesz name a new path appended
  at the end of the file (`patch_interp`).  p_vaddr/p_memsz and the original
  bytes stay: the kernel reads the interpreter through p_offset
  (fs/binfmt_elf.c, load_elf_binary), while glibc's ld.so reads its own name
  through p_vaddr in mapped memory (elf/rtld.c), which must stay the guest's;
- a script whose first line names a new interpreter (`rewrite_shebang`).

Kernel sources mirrored: fs/binfmt_elf.c (load_elf_binary, load_elf_phdrs,
elf_read), fs/binfmt_script.c (load_script), fs/read_write.c
(rw_verify_area), fs/exec.c (open_exec).  Man pages: execve(2), elf(5),
memfd_create(2), fcntl(2) "File Sealing".

Invariants: every refusal is an ``OSError`` carrying the errno the running
kernel's execve(2) gives for the same file (pinned against the real kernel by
tests/test_elf.py), except where a docstring says sandlock is stricter;
paths are bytes; nothing here resolves a path.  Importing makes no syscall.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from ._errors import os_error

HEADER_SIZE = 256        # BINPRM_BUF_SIZE (include/linux/binfmts.h): what execve reads first
PATH_MAX = 4096          # include/uapi/linux/limits.h

# include/uapi/linux/elf.h
ELFMAG = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN = 2, 3
PT_INTERP = 3
EM_X86_64, EM_AARCH64 = 62, 183
_MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}

Elf64_Ehdr = struct.Struct("<16sHHIQQQIHHHHHH")   # struct elf64_hdr, 64 bytes
Elf64_Phdr = struct.Struct("<IIQQQQQQ")           # struct elf64_phdr, 56 bytes
_P_OFFSET, _P_FILESZ = 8, 32                      # field offsets in struct elf64_phdr
_P_TYPE = struct.Struct("<I")                       # its first field, p_type
_LOFF_MAX = (1 << 63) - 1                         # largest loff_t

# memfd_create(2) and fcntl(2) "File Sealing" (include/uapi/linux/memfd.h, fcntl.h)
MFD_EXEC = getattr(os, "MFD_EXEC", 0x10)
F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
F_SEAL_SEAL = getattr(fcntl, "F_SEAL_SEAL", 1)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 2)
F_SEAL_GROW = getattr(fcntl, "F_SEAL_GROW", 4)
F_SEAL_WRITE = getattr(fcntl, "F_SEAL_WRITE", 8)
SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL

if TYPE_CHECKING:
    ReadAt = Callable[[int, int], bytes]


def _error(code: int, why: str) -> OSError:
    return os_error(code, f"{os.strerror(code)}: {why}")


def machine_for(arch: str) -> int:
    """The ELF e_machine of an architecture named as `uname -m` names it.

    Raises:
        ValueError: sandlock does not support the architecture.
    """
    try:
        return _MACHINES[arch]
    except KeyError:
        raise ValueError(f"unsupported architecture {arch!r} (x86_64 and aarch64 are supported)") from None


# --- ELF -------------------------------------------------------------------------------------

class Elf(NamedTuple):
    """What execve needs to know of an ELF file.

    interp: the PT_INTERP path up to its first NUL (the string open_exec
        gets), or None for a static program.
    interp_offset: file offset of the PT_INTERP program header entry, or -1.
    """
    interp: Optional[bytes]
    interp_offset: int


class _Phdr(NamedTuple):
    at: int          # file offset of the entry
    p_type: int
    p_offset: int
    p_filesz: int


def _check_header(ehdr: bytes, machine: Optional[int]) -> Tuple[int, int]:
    """(e_phoff, size of the program header table) of a header load_elf_binary accepts.

    Every failure is ENOEXEC, as there (a header shorter than Elf64_Ehdr is
    one: the zero padding of bprm->buf fails a check).  sandlock is stricter
    than the native loader on one point: it requires ELFCLASS64 and
    ELFDATA2LSB, which load_elf_binary never looks at (it runs a 64-bit file
    labelled ELFCLASS32; compat_binfmt_elf runs real 32-bit programs, which
    sandlock does not emulate).
    """
    if len(ehdr) < Elf64_Ehdr.size or ehdr[:4] != ELFMAG:
        raise _error(errno.ENOEXEC, "not an ELF file")
    (ident, e_type, e_machine, _version, _entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = Elf64_Ehdr.unpack(ehdr)
    if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB:
        raise _error(errno.ENOEXEC, "not a 64-bit little-endian ELF file")
    if e_type not in (ET_EXEC, ET_DYN):
        raise _error(errno.ENOEXEC, f"e_type {e_type} is neither ET_EXEC nor ET_DYN")
    if machine is not None and e_machine != machine:
        raise _error(errno.ENOEXEC, f"e_machine {e_machine} is not {machine}")
    # load_elf_phdrs: entries of the native size, 1 to 65536 bytes in all
    size = e_phentsize * e_phnum
    if e_phentsize != Elf64_Phdr.size or not 0 < size <= 65536:
        raise _error(errno.ENOEXEC, f"bad program header table ({e_phnum} entries of {e_phentsize} bytes)")
    return e_phoff, size


def _program_headers(read_at: ReadAt, machine: Optional[int]) -> List[_Phdr]:
    """The PT_INTERP entries of the program headers (the only ones read here), after the
    checks of load_elf_binary and load_elf_phdrs on the whole table.

    Raises:
        OSError(ENOEXEC): see `_check_header`; or the table passes the end of
            the file (load_elf_phdrs returns NULL on any failed read).
    """
    e_phoff, size = _check_header(read_at(0, Elf64_Ehdr.size), machine)
    table = read_at(e_phoff, size) if e_phoff + size <= _LOFF_MAX else b""
    if len(table) < size:
        raise _error(errno.ENOEXEC, "program header table past the end of the file")
    step, p_type = Elf64_Phdr.size, _P_TYPE.unpack_from
    # a _Phdr made for PT_INTERP only: one for each of a program's ~13 entries cost ~7 us
    return [_phdr(e_phoff + i, table[i:i + step]) for i in range(0, size, step) if p_type(table, i)[0] == PT_INTERP]


def _phdr(at: int, entry: bytes) -> _Phdr:
    p_type, _flags, p_offset, _vaddr, _paddr, p_filesz, _memsz, _align = Elf64_Phdr.unpack(entry)
    return _Phdr(at, p_type, p_offset, p_filesz)


def _interp_header(phdrs: List[_Phdr]) -> Optional[_Phdr]:
    """The PT_INTERP entry, if any (phdrs: _program_headers', or any entries).

    Raises:
        OSError(ENOEXEC): more than one.  Stricter than the kernel, which uses
            the first while ld.so takes the last as its own name: refusing is
            the only way the two cannot disagree.
    """
    found = [p for p in phdrs if p.p_type == PT_INTERP]
    if len(found) > 1:
        raise _error(errno.ENOEXEC, f"{len(found)} PT_INTERP program headers")
    return found[0] if found else None


def _read_interp(read_at: ReadAt, phdr: _Phdr) -> bytes:
    """The interpreter path, read as load_elf_binary reads it (elf_read, then open_exec).

    Raises:
        OSError(ENOEXEC): p_filesz outside 2..PATH_MAX, or no NUL last byte.
        OSError(EINVAL): the range passes the largest loff_t (rw_verify_area).
        OSError(EIO): the range passes the end of the file (elf_read's short read).
        OSError(EACCES): the path is empty: open_exec("") opens the cwd, a directory.
    """
    if not 2 <= phdr.p_filesz <= PATH_MAX:
        raise _error(errno.ENOEXEC, f"PT_INTERP p_filesz {phdr.p_filesz} outside 2..{PATH_MAX}")
    if phdr.p_offset + phdr.p_filesz > _LOFF_MAX:
        raise _error(errno.EINVAL, "PT_INTERP past the largest file offset")
    raw = read_at(phdr.p_offset, phdr.p_filesz)
    if len(raw) < phdr.p_filesz:
        raise _error(errno.EIO, "PT_INTERP past the end of the file")
    if raw[-1] != 0:
        raise _error(errno.ENOEXEC, "PT_INTERP is not NUL-terminated")
    path = raw[:raw.index(0)]
    if not path:
        raise _error(errno.EACCES, "empty PT_INTERP")
    return path


def parse_elf(read_at: ReadAt, arch: str) -> Elf:
    """Read an ELF file as execve's load_elf_binary does, up to opening the interpreter.

    Args:
        read_at: ``read_at(offset, size)`` returns the bytes there, fewer at
            the end of the file.
        arch: the architecture the program must be built for (`uname -m`).

    Raises:
        OSError: with the errno execve would fail with: ENOEXEC (not a
            64-bit little-endian ET_EXEC/ET_DYN ELF for `arch`, bad program
            header table, bad PT_INTERP, more than one PT_INTERP), EIO,
            EINVAL or EACCES (see `_read_interp`).
    """
    phdr = _interp_header(_program_headers(read_at, machine_for(arch)))
    if phdr is None:
        return Elf(None, -1)
    return Elf(_read_interp(read_at, phdr), phdr.at)


def _bytes_reader(data: bytes) -> ReadAt:
    return lambda offset, size: data[offset:offset + size]


def patch_interp(data: bytes, new_interp: bytes) -> bytes:
    """A copy of the ELF file `data` that makes execve load `new_interp` instead.

    ``new_interp + NUL`` is appended at the end (after padding to 8 bytes) and
    only p_offset and p_filesz of PT_INTERP change: the kernel reads the
    interpreter through p_offset, while ld.so finds its own name through
    p_vaddr in the mapped image, which keeps the original (guest) path.

    Raises:
        ValueError: `new_interp` is not absolute, holds a NUL or is PATH_MAX
            long; `data` has no PT_INTERP (a static program needs no patch).
        OSError: `data` is not an ELF file execve would run (see `parse_elf`;
            any machine is accepted here).
    """
    if not new_interp.startswith(b"/") or b"\0" in new_interp or len(new_interp) >= PATH_MAX:
        raise ValueError(f"interpreter must be an absolute path shorter than {PATH_MAX} bytes: {new_interp!r}")
    read_at = _bytes_reader(data)
    phdr = _interp_header(_program_headers(read_at, None))
    if phdr is None:
        raise ValueError("no PT_INTERP: a static program runs as it is")
    _read_interp(read_at, phdr)
    out = bytearray(data)
    out += bytes(-len(out) % 8)
    struct.pack_into("<Q", out, phdr.at + _P_OFFSET, len(out))
    struct.pack_into("<Q", out, phdr.at + _P_FILESZ, len(new_interp) + 1)
    out += new_interp + b"\0"
    return bytes(out)


# --- #! scripts ------------------------------------------------------------------------------

class Shebang(NamedTuple):
    """A script's ``#!`` line as fs/binfmt_script.c splits it.

    interp: the interpreter path as written.
    arg: the one optional argument (spaces and tabs inside kept), or None.
        It is b"" only when a NUL follows the separator: the kernel then
        passes an empty argument.
    """
    interp: bytes
    arg: Optional[bytes]


_SPACETAB = b" \t"


def _first_of(text: bytes, chars: bytes) -> int:
    """The index of the first byte of `text` that is one of `chars`, or -1 (a
    character class's search, without importing re: README "Start-up")."""
    found = [i for i in (text.find(bytes((c,))) for c in chars) if i >= 0]
    return min(found) if found else -1


def _first_line(buf: bytes) -> bytes:
    """The text after ``#!`` that load_script parses, trailing spaces/tabs trimmed.

    With no newline in the buffer the line runs to its last byte, which the
    kernel overwrites with the string's NUL (so a long argument loses it and
    more; the interpreter re-reads the script anyway); but if no space, tab
    or NUL follows the interpreter name, the name itself may be cut:
    ENOEXEC.
    """
    end = buf.find(b"\n")
    if end < 0:
        text = buf[2:].lstrip(_SPACETAB)
        if not text or _first_of(text, b" \t\0") < 0:
            raise _error(errno.ENOEXEC, "#! interpreter name truncated")
        end = HEADER_SIZE - 1
    return buf[2:end].rstrip(_SPACETAB)


def parse_shebang(head: bytes) -> Optional[Shebang]:
    """Split a script's ``#!`` line as Linux's load_script (fs/binfmt_script.c) does.

    Args:
        head: the first bytes of the file; only HEADER_SIZE are looked at,
            and a shorter head is NUL-padded like bprm->buf.

    Returns:
        None if the file does not start with ``#!``; else the interpreter
        (ended by the first space, tab or NUL) and the optional argument
        (from the next non-space/tab to the end of the line or the first NUL).

    Raises:
        OSError(ENOEXEC): no interpreter name, or it may be truncated.
        OSError(EACCES): the name is empty because a NUL comes first:
            open_exec("") opens the cwd, a directory.
    """
    if head[:2] != b"#!":
        return None
    line = _first_line(head[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0"))
    if not line:
        raise _error(errno.ENOEXEC, "no #! interpreter name")
    text = line.lstrip(_SPACETAB)
    sep = _first_of(text, b" \t\0")
    if sep < 0:
        interp, arg = text, None
    else:
        interp = text[:sep]
        rest = text[sep:]
        arg = None if rest[0] == 0 else rest.lstrip(_SPACETAB).split(b"\0", 1)[0]
    if not interp:
        raise _error(errno.EACCES, "empty #! interpreter name")
    return Shebang(interp, arg)


def rewrite_shebang(script: bytes, new_interp: bytes, arg: Optional[bytes]) -> bytes:
    """A copy of `script` whose first line is ``#!new_interp[ arg]``, the rest unchanged.

    `parse_shebang` of the result gives back (new_interp, arg); an empty `arg`
    is written as a space and a NUL, the only way load_script passes one.

    Raises:
        ValueError: `new_interp` is empty or holds a space, tab, newline or
            NUL; `arg` holds a newline or NUL or starts or ends with a space
            or tab (load_script would split or trim it differently).
        OSError(ENAMETOOLONG): the new line, newline included, would not fit
            in the HEADER_SIZE bytes execve reads.
    """
    if not new_interp or _first_of(new_interp, b" \t\n\0") >= 0:
        raise ValueError(f"#! interpreter must be a word without spaces, tabs, newlines or NULs: {new_interp!r}")
    if arg and (_first_of(arg, b"\n\0") >= 0 or arg.strip(_SPACETAB) != arg):
        raise ValueError(f"#! argument must have no newline, NUL, or space or tab at either end: {arg!r}")
    line = b"#!" + new_interp + (b"" if arg is None else b" " + (arg or b"\0")) + b"\n"
    if len(line) > HEADER_SIZE:
        raise _error(errno.ENAMETOOLONG, f"#! line of {len(line)} bytes (execve reads {HEADER_SIZE})")
    end = script.find(b"\n")
    return line + (script[end + 1:] if end >= 0 else b"")


# --- memfd -----------------------------------------------------------------------------------

def _memfd_create(name: str) -> int:
    """memfd_create(2) asking for exec permission; MFD_EXEC is Linux 6.3+, EINVAL before."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        return os.memfd_create(name, flags | MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return os.memfd_create(name, flags)


def sealed_memfd(name: str, data: bytes) -> int:
    """A read-only, sealed, close-on-exec memfd holding `data`, ready for execve.

    The writable fd is closed before returning: execve fails with ETXTBSY
    while any fd of the file is open for writing (deny_write_access), and the
    seals (memfd_create(2), fcntl(2) "File Sealing") keep anyone from
    changing the content after the supervisor checked it.

    Raises:
        OSError: from memfd_create, write, fcntl or the reopen through
            /proc/self/fd (EACCES from memfd_create when the
            vm.memfd_noexec sysctl is 2: memfds cannot be executed at all).
    """
    return sealed_memfd_filled(name, lambda fd: write_all(fd, data))


def sealed_memfd_filled(name: str, fill: Callable[[int], None]) -> int:
    """sealed_memfd, its content written by fill(writable fd) (see copy_range)."""
    fd = _memfd_create(name)
    try:
        fill(fd)
        _seal(fd)
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


SEAL_TRIES = 8  # F_SEAL_WRITE refused EBUSY that many times in a row: the error is the kernel's


def _seal(fd: int) -> None:
    """Add SEALS to the memfd fd.  F_SEAL_WRITE answers EBUSY while some page of the
    file has a reference the kernel cannot account for (fcntl(2): a writable mapping;
    also a page still held in another CPU's LRU batch just after the copy, which the
    kernel waits for only briefly): nothing maps our memfds, so EBUSY is such a passing
    hold, and the seal is tried again after a short sleep (it once failed an exec in CI)."""
    for attempt in range(SEAL_TRIES):
        try:
            fcntl.fcntl(fd, F_ADD_SEALS, SEALS)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == SEAL_TRIES - 1:
                raise
            time.sleep(0.001 * (1 << attempt))  # 1 ms, 2 ms, ... 64 ms: 0.13 s at most


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


COPY_STEP = 1 << 30  # bytes per sendfile(2) call


def copy_range(src: int, dst: int, start: int, end: int, to: int) -> None:
    """Copy bytes [start, end) of the file src to offset `to` of the file dst, in the kernel.

    Nothing passes through our memory (sendfile(2) from file to file), and
    holes stay holes (lseek(2) SEEK_DATA/SEEK_HOLE): a sparse file of 1 GiB
    costs what it holds.  dst ends at to + end - start; a file that shrinks
    meanwhile leaves zeros.
    """
    pos = start
    while pos < end:
        try:
            data = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole up to the end
                break
            raise
        if data >= end:
            break
        hole = min(os.lseek(src, data, os.SEEK_HOLE), end)
        os.lseek(dst, to + data - start, os.SEEK_SET)
        offset = data
        while offset < hole:
            sent = os.sendfile(dst, src, offset, min(hole - offset, COPY_STEP))
            if sent == 0:  # the file shrank
                break
            offset += sent
        pos = hole
    os.ftruncate(dst, to + end - start)


def patch_interp_in(fd: int, new_interp: bytes) -> None:
    """patch_interp on the file fd itself (a private copy): ``new_interp + NUL`` is
    written at its end (padded to 8 bytes) and PT_INTERP's p_offset and p_filesz
    point at it; nothing but the headers is read into memory.

    Raises:
        ValueError, OSError: as patch_interp.
    """
    if not new_interp.startswith(b"/") or b"\0" in new_interp or len(new_interp) >= PATH_MAX:
        raise ValueError(f"interpreter must be an absolute path shorter than {PATH_MAX} bytes: {new_interp!r}")
    read_at = lambda offset, size: os.pread(fd, size, offset)  # noqa: E731
    phdr = _interp_header(_program_headers(read_at, None))
    if phdr is None:
        raise ValueError("no PT_INTERP: a static program runs as it is")
    _read_interp(read_at, phdr)
    size = os.fstat(fd).st_size
    end = size + (-size % 8)
    os.pwrite(fd, struct.pack("<Q", end), phdr.at + _P_OFFSET)
    os.pwrite(fd, struct.pack("<Q", len(new_interp) + 1), phdr.at + _P_FILESZ)
    os.pwrite(fd, new_interp + b"\0", end)
