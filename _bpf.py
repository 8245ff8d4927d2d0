"""A classic-BPF assembler and disassembler for seccomp filters.

Programs are lists of small instruction helpers (`ld_abs`, `jeq`, `ret`, ...)
and `label`s; conditional jumps name their targets by label or by a small
forward offset.  `assemble` resolves the labels and packs struct sock_filter
(linux/filter.h: u16 code, u8 jt, u8 jf, u32 k) and refuses what the kernel
would refuse (bpf_check_classic in kernel/bpf/core.c, seccomp_check_filter
in kernel/seccomp.c): unknown or duplicate labels, backward jumps,
conditional offsets over 255, more than BPF_MAXINSNS instructions, a program
that can run off its end, loads outside struct seccomp_data or not 4-aligned,
instruction classes seccomp does not allow, scratch memory past 16 words.
`disassemble` prints a program back, with seccomp return actions decoded.

Kernel headers mirrored: linux/bpf_common.h, linux/filter.h, linux/seccomp.h.
x86_64 and aarch64 are both little-endian: a 64-bit syscall argument's low
half is at its offset, the high half 4 bytes above.
"""

from __future__ import annotations

import struct
from typing import List, Mapping, NamedTuple, Optional, Sequence, Union

# linux/bpf_common.h
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR = 0x60, 0x70, 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_TAX, BPF_TXA = 0x00, 0x80
BPF_MAXINSNS = 4096
BPF_MEMWORDS = 16

# linux/seccomp.h
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF

# struct seccomp_data
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_IP = 8
SECCOMP_DATA_SIZE = 64

_SOCK_FILTER = struct.Struct("<HBBI")
Target = Union[int, str, None]


def seccomp_data_arg(i: int, high: bool = False) -> int:
    """Offset of args[i] in struct seccomp_data (its upper half with high=True)."""
    if not 0 <= i < 6:
        raise BpfError(f"no syscall argument {i}")
    return 16 + 8 * i + (4 if high else 0)


class BpfError(ValueError):
    """A program the kernel would refuse, or a programming error in one."""


class Insn(NamedTuple):
    """One instruction; jt/jf (and k of BPF_JA) may name a label."""
    code: int
    jt: Target = None
    jf: Target = None
    k: Union[int, str] = 0


class Label(NamedTuple):
    """A position in a program; it occupies no instruction."""
    name: str


Program = Sequence[Union[Insn, Label]]


def label(name: str) -> Label:
    return Label(name)


def ld_abs(offset: int) -> Insn:
    return Insn(BPF_LD | BPF_W | BPF_ABS, k=offset)


def ld_imm(k: int) -> Insn:
    return Insn(BPF_LD | BPF_IMM, k=k)


def ldx_imm(k: int) -> Insn:
    return Insn(BPF_LDX | BPF_IMM, k=k)


def ld_mem(i: int) -> Insn:
    return Insn(BPF_LD | BPF_MEM, k=i)


def ldx_mem(i: int) -> Insn:
    return Insn(BPF_LDX | BPF_MEM, k=i)


def st(i: int) -> Insn:
    return Insn(BPF_ST, k=i)


def stx(i: int) -> Insn:
    return Insn(BPF_STX, k=i)


def tax() -> Insn:
    return Insn(BPF_MISC | BPF_TAX)


def txa() -> Insn:
    return Insn(BPF_MISC | BPF_TXA)


def alu(op: int, k: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_K, k=k)


def alu_x(op: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_X)


def and_(k: int) -> Insn:
    return alu(BPF_AND, k)


def jeq(k: int, jt: Target = None, jf: Target = None) -> Insn:
    return Insn(BPF_JMP | BPF_JEQ | BPF_K, jt, jf, k)


def jgt(k: int, jt: Target = None, jf: Target = None) -> Insn:
    return Insn(BPF_JMP | BPF_JGT | BPF_K, jt, jf, k)


def jge(k: int, jt: Target = None, jf: Target = None) -> Insn:
    return Insn(BPF_JMP | BPF_JGE | BPF_K, jt, jf, k)


def jset(k: int, jt: Target = None, jf: Target = None) -> Insn:
    return Insn(BPF_JMP | BPF_JSET | BPF_K, jt, jf, k)


def ja(target: Union[int, str]) -> Insn:
    return Insn(BPF_JMP | BPF_JA, k=target)


def ret(k: int) -> Insn:
    return Insn(BPF_RET | BPF_K, k=k)


def ret_a() -> Insn:
    return Insn(BPF_RET | BPF_A)


# --- assembly ------------------------------------------------------------------------------

_ALU_OPS = {BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR}
_JMP_OPS = {BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET}


def _labels(program: Program) -> dict:
    positions, index = {}, 0
    for item in program:
        if isinstance(item, Label):
            if item.name in positions:
                raise BpfError(f"duplicate label {item.name!r}")
            positions[item.name] = index
        else:
            index += 1
    return positions


def _offset(index: int, target: Target, positions: dict, limit: int) -> int:
    if target is None:
        return 0
    if isinstance(target, str):
        if target not in positions:
            raise BpfError(f"instruction {index}: unknown label {target!r}")
        offset = positions[target] - index - 1
    else:
        offset = target
    if offset < 0:
        raise BpfError(f"instruction {index}: backward jump to {target!r}")
    if offset > limit:
        raise BpfError(f"instruction {index}: jump of {offset} is longer than {limit}")
    return offset


def _check(index: int, insn: Insn, k: int) -> None:
    """Refuse what seccomp_check_filter() and bpf_check_classic() refuse."""
    cls, code = insn.code & 0x07, insn.code
    if not 0 <= k <= 0xFFFFFFFF:
        raise BpfError(f"instruction {index}: k={k} is not a 32-bit value")
    if cls == BPF_LD and code & 0xE0 == BPF_ABS:
        if code != BPF_LD | BPF_W | BPF_ABS:
            raise BpfError(f"instruction {index}: seccomp loads 32-bit words only")
        if k % 4 or k + 4 > SECCOMP_DATA_SIZE:
            raise BpfError(f"instruction {index}: load at {k} is outside struct seccomp_data or unaligned")
    elif cls in (BPF_LD, BPF_LDX):
        mode = code & 0xE0
        if mode == BPF_MEM and k >= BPF_MEMWORDS:
            raise BpfError(f"instruction {index}: scratch word {k} past {BPF_MEMWORDS}")
        if mode not in (BPF_IMM, BPF_MEM, BPF_LEN) or code & 0x18 != BPF_W:
            raise BpfError(f"instruction {index}: load mode {code:#x} is not allowed by seccomp")
    elif cls in (BPF_ST, BPF_STX):
        if k >= BPF_MEMWORDS:
            raise BpfError(f"instruction {index}: scratch word {k} past {BPF_MEMWORDS}")
    elif cls == BPF_ALU:
        op = code & 0xF0
        if op not in _ALU_OPS:
            raise BpfError(f"instruction {index}: unknown ALU operation {code:#x}")
        if op in (BPF_DIV, BPF_MOD) and code & BPF_X == 0 and k == 0:
            raise BpfError(f"instruction {index}: division by constant zero")
    elif cls == BPF_JMP:
        if code & 0xF0 not in _JMP_OPS | {BPF_JA}:
            raise BpfError(f"instruction {index}: unknown jump {code:#x}")
    elif cls == BPF_RET:
        if code & 0x18 not in (BPF_K, BPF_A):
            raise BpfError(f"instruction {index}: unknown return {code:#x}")
    elif cls == BPF_MISC:
        if code & 0xF8 not in (BPF_TAX, BPF_TXA):
            raise BpfError(f"instruction {index}: unknown misc {code:#x}")


def assemble(program: Program) -> bytes:
    """Resolve labels and pack the program as struct sock_filter[]; BpfError if invalid."""
    positions = _labels(program)
    insns = [item for item in program if not isinstance(item, Label)]
    if not insns:
        raise BpfError("empty program")
    if len(insns) > BPF_MAXINSNS:
        raise BpfError(f"{len(insns)} instructions, more than {BPF_MAXINSNS}")
    if insns[-1].code & 0x07 != BPF_RET:
        raise BpfError("the last instruction is not a return")
    out = []
    for index, insn in enumerate(insns):
        if insn.code == BPF_JMP | BPF_JA:
            k = _offset(index, insn.k, positions, 0xFFFFFFFF)  # type: ignore[arg-type]
            jt = jf = 0
        else:
            if isinstance(insn.k, str):
                raise BpfError(f"instruction {index}: only ja takes a label as k")
            k = insn.k
            jt = _offset(index, insn.jt, positions, 255)
            jf = _offset(index, insn.jf, positions, 255)
            if insn.code & 0x07 != BPF_JMP and (jt or jf):
                raise BpfError(f"instruction {index}: jt/jf on an instruction that does not jump")
        if insn.code & 0x07 == BPF_JMP and index + 1 + max(jt, jf, k if insn.code == BPF_JMP | BPF_JA else 0) >= len(insns):
            raise BpfError(f"instruction {index}: jump past the end of the program")
        _check(index, insn, k)
        out.append(_SOCK_FILTER.pack(insn.code, jt, jf, k))
    return b"".join(out)


# --- disassembly ----------------------------------------------------------------------------

_ACTIONS = {
    SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS", SECCOMP_RET_KILL_THREAD: "KILL_THREAD",
    SECCOMP_RET_TRAP: "TRAP", SECCOMP_RET_ERRNO: "ERRNO", SECCOMP_RET_USER_NOTIF: "USER_NOTIF",
    SECCOMP_RET_TRACE: "TRACE", SECCOMP_RET_LOG: "LOG", SECCOMP_RET_ALLOW: "ALLOW",
}
_JUMP_NAMES = {BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset"}
_ALU_NAMES = {BPF_ADD: "add", BPF_SUB: "sub", BPF_MUL: "mul", BPF_DIV: "div", BPF_OR: "or", BPF_AND: "and",
              BPF_LSH: "lsh", BPF_RSH: "rsh", BPF_NEG: "neg", BPF_MOD: "mod", BPF_XOR: "xor"}


def describe_return(k: int) -> str:
    """'ALLOW', 'ERRNO(1)', 'KILL_PROCESS', ... for a seccomp return value."""
    action = k & SECCOMP_RET_ACTION_FULL
    name = _ACTIONS.get(action, f"{action:#x}")
    data = k & SECCOMP_RET_DATA
    return f"{name}({data})" if name in ("ERRNO", "TRAP", "TRACE") else name


def disassemble(code: bytes, names: Optional[Mapping[int, str]] = None) -> str:
    """One line per instruction, with absolute jump targets and seccomp actions decoded."""
    lines: List[str] = []
    count = len(code) // _SOCK_FILTER.size
    last_load: Optional[int] = None
    for index in range(count):
        op, jt, jf, k = _SOCK_FILTER.unpack_from(code, index * _SOCK_FILTER.size)
        cls = op & 0x07
        if cls == BPF_LD and op & 0xE0 == BPF_ABS:
            text, last_load = f"ld [{k}]", k
        elif cls in (BPF_LD, BPF_LDX):
            reg = "ldx" if cls == BPF_LDX else "ld"
            text = f"{reg} M[{k}]" if op & 0xE0 == BPF_MEM else f"{reg} #{k:#x}"
        elif cls in (BPF_ST, BPF_STX):
            text = f"{'stx' if cls == BPF_STX else 'st'} M[{k}]"
        elif cls == BPF_ALU:
            text = f"{_ALU_NAMES.get(op & 0xF0, '?')} " + ("x" if op & BPF_X else f"#{k:#x}")
        elif cls == BPF_JMP and op & 0xF0 == BPF_JA:
            text = f"ja {index + 1 + k}"
        elif cls == BPF_JMP:
            comment = f" ({names[k]})" if names and last_load == SECCOMP_DATA_NR and k in names else ""
            operand = "x" if op & BPF_X else f"#{k:#x}"
            text = f"{_JUMP_NAMES.get(op & 0xF0, '?')} {operand}{comment} jt {index + 1 + jt} jf {index + 1 + jf}"
        elif cls == BPF_RET:
            text = "ret A" if op & 0x18 == BPF_A else f"ret {describe_return(k)}"
        else:
            text = "tax" if op & 0xF8 == BPF_TAX else "txa"
        lines.append(f"{index:4d}: {text}")
    return "\n".join(lines)
