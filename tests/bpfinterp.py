"""A test-only classic-BPF interpreter, run on a synthetic struct seccomp_data.

Never imported by product code.  It executes programs the way the kernel runs
a seccomp filter (kernel/bpf/core.c, cBPF converted by bpf_convert_filter in
net/core/filter.c; seccomp_check_filter in kernel/seccomp.c): 32-bit A and X
registers, 16 scratch words, unsigned compares, jumps relative to the next
instruction, ALU results mod 2**32, shifts by X masked to 5 bits, and
division or modulo by zero X ending the program with return value 0.  Loads
read 32-bit little-endian words of struct seccomp_data (x86_64 and aarch64).

The opcodes are spelled out here as numbers from linux/bpf_common.h instead
of being imported from _bpf, so that these tests check the assembler's
encoding rather than echo it.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

_INSN = struct.Struct("<HBBI")  # struct sock_filter
_DATA = struct.Struct("<IIQ6Q")  # struct seccomp_data: nr (as u32 bits), arch, ip, args[6]
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1
_MEMWORDS = 16

# Whole opcodes (class | size | mode, or class | source) handled directly.
_LD_W_ABS, _LD_W_LEN, _LDX_W_LEN = 0x20, 0x80, 0x81
_LD_IMM, _LDX_IMM, _LD_MEM, _LDX_MEM, _ST, _STX = 0x00, 0x01, 0x60, 0x61, 0x02, 0x03
_TAX, _TXA, _RET_K, _RET_A, _JA = 0x07, 0x87, 0x06, 0x16, 0x05
_CLASS_ALU, _CLASS_JMP, _SRC_X = 0x04, 0x05, 0x08

_ALU: Dict[int, Callable[[int, int], int]] = {
    0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << (b & 31), 0x70: lambda a, b: a >> (b & 31),
    0x80: lambda a, b: -a, 0x90: lambda a, b: a % b, 0xA0: lambda a, b: a ^ b,
}
_JUMP: Dict[int, Callable[[int, int], bool]] = {
    0x10: lambda a, b: a == b, 0x20: lambda a, b: a > b,
    0x30: lambda a, b: a >= b, 0x40: lambda a, b: a & b != 0,
}
_ACTIONS = {
    0x80000000: "KILL_PROCESS", 0x00000000: "KILL_THREAD", 0x00030000: "TRAP", 0x00050000: "ERRNO",
    0x7FC00000: "USER_NOTIF", 0x7FF00000: "TRACE", 0x7FFC0000: "LOG", 0x7FFF0000: "ALLOW",
}


class BpfRunError(RuntimeError):
    """The program did something the kernel would never let a loaded filter do."""


def seccomp_data(nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> bytes:
    """struct seccomp_data; nr is an int in the kernel, packed here as its u32 bit pattern."""
    if len(args) > 6:
        raise ValueError(f"{len(args)} syscall arguments, at most 6")
    words = [a & _U64 for a in args] + [0] * (6 - len(args))
    return _DATA.pack(nr & _U32, arch & _U32, ip & _U64, *words)


def _load(data: bytes, k: int) -> int:
    if k % 4 or k + 4 > len(data):
        raise BpfRunError(f"load of 4 bytes at {k} outside struct seccomp_data ({len(data)} bytes) or unaligned")
    return struct.unpack_from("<I", data, k)[0]


def _decode(code: bytes) -> List[Tuple[int, int, int, int]]:
    if len(code) % _INSN.size:
        raise BpfRunError(f"{len(code)} bytes is not a whole number of instructions")
    return [_INSN.unpack_from(code, off) for off in range(0, len(code), _INSN.size)]


def run(code: bytes, nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> int:
    """The u32 the filter `code` returns for this syscall."""
    return trace(code, nr, arch, args, ip)[0]


class Path(NamedTuple):
    """What one run of a filter did: its return value, how many instructions it
    executed, and the struct seccomp_data offsets it loaded (in order)."""
    ret: int
    steps: int
    loads: Tuple[int, ...]


def trace(code: bytes, nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> Path:
    """run(), also counting the instructions executed and the offsets loaded: a path that
    loads only nr and arch is one the kernel's seccomp action cache (Linux 5.11) can
    learn, so that syscall never runs the filter at all."""
    data = seccomp_data(nr, arch, args, ip)
    insns = _decode(code)
    a = x = 0
    mem: List[int] = [0] * _MEMWORDS
    pc = 0
    steps = 0
    loads: List[int] = []
    while True:
        if pc >= len(insns):
            raise BpfRunError(f"ran off the end of the program at {pc}")
        op, jt, jf, k = insns[pc]
        pc += 1
        steps += 1
        if op == _RET_K:
            return Path(k, steps, tuple(loads))
        if op == _RET_A:
            return Path(a, steps, tuple(loads))
        if op == _LD_W_ABS:
            loads.append(k)
        if op & 0x07 == _CLASS_ALU and op & 0xF0 in _ALU:
            src = x if op & _SRC_X else k
            if op & 0xF0 in (0x30, 0x90) and src == 0:
                return Path(0, steps, tuple(loads))  # cBPF semantics: division by zero aborts the filter with 0
            a = _ALU[op & 0xF0](a, src) & _U32
        elif op == _JA:
            pc += k
        elif op & 0x07 == _CLASS_JMP and op & 0xF0 in _JUMP:
            pc += jt if _JUMP[op & 0xF0](a, x if op & _SRC_X else k) else jf
        else:
            a, x = _move(op, k, a, x, mem, data)


def _move(op: int, k: int, a: int, x: int, mem: List[int], data: bytes) -> Tuple[int, int]:
    """Loads, stores and register moves; returns the new (A, X)."""
    if op == _LD_W_ABS:
        return _load(data, k), x
    if op in (_LD_W_LEN, _LDX_W_LEN):
        return (len(data), x) if op == _LD_W_LEN else (a, len(data))
    if op in (_LD_IMM, _LDX_IMM):
        return (k, x) if op == _LD_IMM else (a, k)
    if op in (_LD_MEM, _LDX_MEM, _ST, _STX) and k >= _MEMWORDS:
        raise BpfRunError(f"scratch word {k} does not exist")
    if op in (_LD_MEM, _LDX_MEM):
        return (mem[k], x) if op == _LD_MEM else (a, mem[k])
    if op in (_ST, _STX):
        mem[k] = a if op == _ST else x
        return a, x
    if op == _TAX:
        return a, a
    if op == _TXA:
        return x, x
    raise BpfRunError(f"opcode {op:#06x} is not one seccomp runs")


def action(ret: int) -> Tuple[str, int]:
    """('ALLOW', 0), ('ERRNO', n), ('TRAP', n), ('TRACE', n), ('USER_NOTIF', 0), ('KILL_PROCESS', 0), ..."""
    name = _ACTIONS.get(ret & 0xFFFF0000)
    if name is None:
        raise ValueError(f"{ret:#x} is no seccomp action (the kernel would kill the process)")
    return name, (ret & 0xFFFF if name in ("ERRNO", "TRAP", "TRACE") else 0)
