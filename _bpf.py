"""A classic-BPF (cBPF) assembler and disassembler for seccomp filters.

Programs are sequences of instruction helpers (`ld_abs`, `jeq`, `ret`, ...)
and `label`s.  `assemble` resolves labels, packs struct sock_filter, and
raises `BpfError` (naming the instruction) for every program the kernel would
refuse from seccomp(2) SECCOMP_SET_MODE_FILTER, and for programming errors
such as unknown labels or backward jumps.  `disassemble` prints a packed
program with absolute jump targets and seccomp actions decoded.

Mirrors linux/bpf_common.h and linux/filter.h (opcodes, struct sock_filter),
linux/seccomp.h (SECCOMP_RET_*, struct seccomp_data), the classic-BPF checks
bpf_check_classic and check_load_and_stores (net/core/filter.c), and
seccomp_check_filter (kernel/seccomp.c, the opcode whitelist); seccomp(2).

struct sock_filter is packed as struct.Struct('<HBBI') (u16 code, u8 jt,
u8 jf, u32 k; 8 bytes): the native layout on x86_64 and aarch64, sandlock's
only architectures, both little-endian.  That is also why a 64-bit syscall
argument's low half is at its seccomp_data offset and its high half 4 above.
"""

from __future__ import annotations

import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
# linux/seccomp.h
from ._structs import (SECCOMP_DATA_ARCH, SECCOMP_DATA_IP, SECCOMP_DATA_NR, SECCOMP_DATA_SIZE,  # noqa: F401
                       SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_DATA, SECCOMP_RET_ERRNO,
                       SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE,
                       SECCOMP_RET_TRAP, SECCOMP_RET_USER_NOTIF)

# --- linux/bpf_common.h, linux/filter.h ---------------------------------------------------
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


_SOCK_FILTER = struct.Struct("<HBBI")  # struct sock_filter, little-endian (see module doc)
_U32 = 0xFFFFFFFF

if TYPE_CHECKING:
    Target = Union[int, str, None]
    Raw = Tuple[int, int, int, int]  # one resolved struct sock_filter: code, jt, jf, k


class BpfError(ValueError):
    """A program the kernel would refuse, or a programming error in one."""


def seccomp_data_arg(i: int, high: bool = False) -> int:
    """Offset of args[i] in struct seccomp_data; high=True for its upper 32 bits."""
    if not 0 <= i < 6:
        raise BpfError(f"no syscall argument {i} (there are 6)")
    return 16 + 8 * i + (4 if high else 0)


class Insn(NamedTuple):
    """One instruction.  jt/jf: offset, label name or None (fall through); k of ja may be a label."""
    code: int
    jt: Target = None
    jf: Target = None
    k: Union[int, str] = 0


class Label(NamedTuple):
    """A named position in a program; it occupies no instruction."""
    name: str


if TYPE_CHECKING:
    Program = Sequence[Union[Insn, Label]]


# --- helpers --------------------------------------------------------------------------------

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


# --- the opcodes seccomp accepts ----------------------------------------------------------

_ALU_NAMES = {BPF_ADD: "add", BPF_SUB: "sub", BPF_MUL: "mul", BPF_DIV: "div", BPF_AND: "and",
              BPF_OR: "or", BPF_XOR: "xor", BPF_LSH: "lsh", BPF_RSH: "rsh"}
_JUMP_NAMES = {BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset"}

# seccomp_check_filter() accepts exactly these codes (a subset of bpf_check_classic's);
# notably no BPF_MOD, no BPF_IND, no 8/16-bit loads.  Value: mnemonic for disassembly.
_OPCODES: Dict[int, str] = {
    BPF_LD | BPF_W | BPF_ABS: "ld", BPF_LD | BPF_W | BPF_LEN: "ld", BPF_LDX | BPF_W | BPF_LEN: "ldx",
    BPF_LD | BPF_IMM: "ld", BPF_LDX | BPF_IMM: "ldx", BPF_LD | BPF_MEM: "ld", BPF_LDX | BPF_MEM: "ldx",
    BPF_ST: "st", BPF_STX: "stx", BPF_MISC | BPF_TAX: "tax", BPF_MISC | BPF_TXA: "txa",
    BPF_RET | BPF_K: "ret", BPF_RET | BPF_A: "ret", BPF_ALU | BPF_NEG: "neg", BPF_JMP | BPF_JA: "ja",
}
for _op, _name in _ALU_NAMES.items():
    _OPCODES[BPF_ALU | _op | BPF_K] = _OPCODES[BPF_ALU | _op | BPF_X] = _name
for _op, _name in _JUMP_NAMES.items():
    _OPCODES[BPF_JMP | _op | BPF_K] = _OPCODES[BPF_JMP | _op | BPF_X] = _name

_SCRATCH_CODES = (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX)


def _is_cond_jump(code: int) -> bool:
    return code & 0x07 == BPF_JMP and code != BPF_JMP | BPF_JA


# --- assembly -------------------------------------------------------------------------------

def _layout(program: Program) -> Tuple[List[Insn], Dict[str, int]]:
    """The instructions alone, and each label's instruction index."""
    insns: List[Insn] = []
    positions: Dict[str, int] = {}
    for item in program:
        if isinstance(item, Label):
            if item.name in positions:
                raise BpfError(f"instruction {len(insns)}: duplicate label {item.name!r}")
            positions[item.name] = len(insns)
        elif isinstance(item, Insn):
            insns.append(item)
        else:
            raise BpfError(f"instruction {len(insns)}: {item!r} is neither an Insn nor a Label")
    return insns, positions


def _offset(index: int, target: object, positions: Mapping[str, int], limit: int) -> int:
    """A jump target (None, offset or label) as an offset from the next instruction."""
    if target is None:
        return 0
    if isinstance(target, str):
        if target not in positions:
            raise BpfError(f"instruction {index}: unknown label {target!r}")
        offset = positions[target] - index - 1
    elif isinstance(target, int):
        offset = target
    else:
        raise BpfError(f"instruction {index}: jump target {target!r} is not an offset or a label")
    # cBPF jumps only forward; that is what guarantees every program terminates.
    if offset < 0:
        raise BpfError(f"instruction {index}: backward jump to {target!r}")
    if offset > limit:
        raise BpfError(f"instruction {index}: jump of {offset} is longer than {limit}")
    return offset


def _resolve(index: int, insn: Insn, positions: Mapping[str, int], count: int) -> Raw:
    """Resolve one instruction's labels; refuse unknown opcodes and jumps out of the program."""
    code = insn.code
    if not isinstance(code, int) or code not in _OPCODES:
        shown = f"{code:#06x}" if isinstance(code, int) else repr(code)
        raise BpfError(f"instruction {index}: code {shown} is not an instruction seccomp allows")
    if code == BPF_JMP | BPF_JA:
        if insn.jt is not None or insn.jf is not None:
            raise BpfError(f"instruction {index}: ja takes its target in k, not jt/jf")
        k = _offset(index, insn.k, positions, _U32)
        jt = jf = 0
    else:
        if not isinstance(insn.k, int):
            raise BpfError(f"instruction {index}: k={insn.k!r}; only ja takes a label as k")
        k = insn.k
        jt = _offset(index, insn.jt, positions, 255)
        jf = _offset(index, insn.jf, positions, 255)
        if (jt or jf) and not _is_cond_jump(code):
            raise BpfError(f"instruction {index}: jt/jf on an instruction that does not jump")
    if code & 0x07 == BPF_JMP and index + 1 + max(jt, jf, k if code == BPF_JMP | BPF_JA else 0) >= count:
        raise BpfError(f"instruction {index}: jump past the end of the program")
    return code, jt, jf, k


def _check_operand(index: int, code: int, k: int) -> None:
    """The per-instruction operand checks of bpf_check_classic and seccomp_check_filter."""
    if not 0 <= k <= _U32:
        raise BpfError(f"instruction {index}: k={k} is not an unsigned 32-bit value")
    if code == BPF_LD | BPF_W | BPF_ABS and (k % 4 or k >= SECCOMP_DATA_SIZE):
        raise BpfError(f"instruction {index}: load at {k} is unaligned or outside struct seccomp_data")
    if code in _SCRATCH_CODES and k >= BPF_MEMWORDS:
        raise BpfError(f"instruction {index}: scratch word {k} does not exist (there are {BPF_MEMWORDS})")
    if code == BPF_ALU | BPF_DIV | BPF_K and k == 0:
        raise BpfError(f"instruction {index}: division by constant zero")
    if code in (BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K) and k >= 32:
        raise BpfError(f"instruction {index}: shift by {k}, not less than 32")


def _check_scratch(raws: Sequence[Raw]) -> None:
    """check_load_and_stores(): a scratch word must be stored on every path before it is read."""
    every = (1 << BPF_MEMWORDS) - 1
    masks = [every] * len(raws)  # words known stored at each jump target
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(raws):
        valid &= masks[pc]
        if code in (BPF_ST, BPF_STX):
            valid |= 1 << k
        elif code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM) and not valid >> k & 1:
            raise BpfError(f"instruction {pc}: reads scratch word {k} before it is stored on every path")
        elif code == BPF_JMP | BPF_JA:
            masks[pc + 1 + k] &= valid
            valid = every  # like the kernel: what follows an unconditional jump is reached by jumps only
        elif _is_cond_jump(code):
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = every


# The instructions assemble takes the short way for (README "Start-up": a filter is
# assembled on every CLI start): no jump, and no rule on k but its range (_check_operand)
_PLAIN = frozenset(code for code in _OPCODES if code & 0x07 != BPF_JMP) - {
    BPF_LD | BPF_W | BPF_ABS, *_SCRATCH_CODES, BPF_ALU | BPF_DIV | BPF_K, BPF_ALU | BPF_LSH | BPF_K,
    BPF_ALU | BPF_RSH | BPF_K}
_COND = frozenset(code for code in _OPCODES if _is_cond_jump(code))
_LD_ABS = BPF_LD | BPF_W | BPF_ABS
_JA = BPF_JMP | BPF_JA


def assemble(program: Program) -> bytes:
    """Resolve labels and pack the program as struct sock_filter[]; BpfError if the kernel would refuse it.

    An instruction that passes every check on the short way (the common ones: a plain
    instruction, a load from seccomp_data, a jump to a label ahead) is resolved there; any
    other goes through _resolve, then _check_operand, in that order over the program, so a
    program with faults is refused for the one it always was."""
    insns, positions = _layout(program)
    if not insns:
        raise BpfError("empty program")
    count = len(insns)
    if count > BPF_MAXINSNS:
        raise BpfError(f"{count} instructions, more than BPF_MAXINSNS={BPF_MAXINSNS}")
    raws: List[Raw] = []
    slow: List[int] = []   # the indexes _resolve took: _check_operand checks them next
    for index, insn in enumerate(insns):
        code, jt, jf, k = insn
        if type(k) is int and 0 <= k <= _U32:
            if code in _COND:
                t = 0 if jt is None else positions.get(jt, -1) - index - 1 if type(jt) is str else \
                    jt if type(jt) is int else -1
                f = 0 if jf is None else positions.get(jf, -1) - index - 1 if type(jf) is str else \
                    jf if type(jf) is int else -1
                if 0 <= t <= 255 and 0 <= f <= 255 and index + 1 + max(t, f) < count:
                    raws.append((code, t, f, k))
                    continue
            elif jt is None and jf is None and (code in _PLAIN or code == _LD_ABS and not k % 4
                                                and k < SECCOMP_DATA_SIZE):
                raws.append((code, 0, 0, k))
                continue
        elif code == _JA and type(k) is str and jt is None and jf is None:
            offset = positions.get(k, -1) - index - 1
            if 0 <= offset and index + 1 + offset < count:
                raws.append((code, 0, 0, offset))
                continue
        if code == _JA and type(k) is int and jt is None and jf is None and 0 <= k and index + 1 + k < count:
            raws.append((code, 0, 0, k))  # an offset given as a number (_filter._tree)
            continue
        raws.append(_resolve(index, insn, positions, count))
        slow.append(index)
    for index in slow:
        _check_operand(index, raws[index][0], raws[index][3])
    if raws[-1][0] & 0x07 != BPF_RET:
        raise BpfError(f"instruction {len(raws) - 1}: the last instruction is not a ret")
    if any(raws[index][0] in _SCRATCH_CODES for index in slow):  # no scratch word read: nothing to check
        _check_scratch(raws)
    return struct.pack("<" + "HBBI" * count, *[field for raw in raws for field in raw])


# --- disassembly ----------------------------------------------------------------------------

_ACTIONS = {
    SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS", SECCOMP_RET_KILL_THREAD: "KILL_THREAD",
    SECCOMP_RET_TRAP: "TRAP", SECCOMP_RET_ERRNO: "ERRNO", SECCOMP_RET_USER_NOTIF: "USER_NOTIF",
    SECCOMP_RET_TRACE: "TRACE", SECCOMP_RET_LOG: "LOG", SECCOMP_RET_ALLOW: "ALLOW",
}
_WITH_DATA = ("ERRNO", "TRAP", "TRACE")  # the actions whose SECCOMP_RET_DATA means something


def describe_return(k: int) -> str:
    """'ALLOW', 'ERRNO(1)', 'TRACE(7)', 'KILL_PROCESS', ... for a seccomp return value."""
    name = _ACTIONS.get(k & SECCOMP_RET_ACTION_FULL)
    if name is None:
        return f"#{k:#x}"  # the kernel treats an unknown action as KILL_PROCESS
    return f"{name}({k & SECCOMP_RET_DATA})" if name in _WITH_DATA else name


def _successors(pc: int, raw: Raw) -> Tuple[int, ...]:
    code, jt, jf, k = raw
    if code & 0x07 == BPF_RET:
        return ()
    if code == BPF_JMP | BPF_JA:
        return (pc + 1 + k,)
    return (pc + 1 + jt, pc + 1 + jf) if _is_cond_jump(code) else (pc + 1,)


def _nr_in_a(raws: Sequence[Raw]) -> List[bool]:
    """Whether A holds the syscall number on every path into each instruction (jumps are forward)."""
    state: List[Optional[bool]] = [None] * len(raws)
    if raws:
        state[0] = False
    for pc, raw in enumerate(raws):
        code = raw[0]
        writes_a = code & 0x07 in (BPF_LD, BPF_ALU) or code == BPF_MISC | BPF_TXA
        after = raw[3] == SECCOMP_DATA_NR if code == BPF_LD | BPF_W | BPF_ABS else bool(state[pc]) and not writes_a
        for succ in _successors(pc, raw):
            if succ < len(raws):
                state[succ] = after if state[succ] is None else bool(state[succ]) and after
    return [bool(s) for s in state]


def _jump_operand(code: int, k: int, nr: bool, names: Optional[Mapping[int, str]]) -> str:
    if code & BPF_X:
        return "x"
    if not nr or code & 0xF0 == BPF_JSET:
        return f"#{k:#x}"
    # Comparing the syscall number: decimal, as syscall tables are, and named if known.
    name = names.get(k) if names else None
    return f"#{k} ({name})" if name else f"#{k}"


def _text(pc: int, raw: Raw, nr: bool, names: Optional[Mapping[int, str]]) -> str:
    code, jt, jf, k = raw
    name = _OPCODES.get(code)
    cls = code & 0x07
    if name is None:
        return f".insn {code:#06x}, {jt}, {jf}, {k:#x}  ; not allowed by seccomp"
    if cls in (BPF_LD, BPF_LDX):
        operand = {BPF_ABS: f"[{k}]", BPF_MEM: f"M[{k}]", BPF_LEN: "len"}.get(code & 0xE0, f"#{k:#x}")
        return f"{name} {operand}"
    if cls in (BPF_ST, BPF_STX):
        return f"{name} M[{k}]"
    if code == BPF_JMP | BPF_JA:
        return f"ja {pc + 1 + k}"
    if cls == BPF_JMP:
        return f"{name} {_jump_operand(code, k, nr, names)} jt {pc + 1 + jt} jf {pc + 1 + jf}"
    if cls == BPF_RET:
        return "ret A" if code == BPF_RET | BPF_A else f"ret {describe_return(k)}"
    if cls == BPF_ALU and code != BPF_ALU | BPF_NEG:
        return f"{name} x" if code & BPF_X else f"{name} #{k:#x}"
    return name  # tax, txa, neg


def disassemble(code: bytes, names: Optional[Mapping[int, str]] = None) -> str:
    """One line per instruction ('  12: jeq #257 (openat) jt 13 jf 14'); names: syscall number -> name."""
    if len(code) % _SOCK_FILTER.size:
        raise BpfError(f"{len(code)} bytes is not a whole number of {_SOCK_FILTER.size}-byte instructions")
    raws: List[Raw] = [_SOCK_FILTER.unpack_from(code, off) for off in range(0, len(code), _SOCK_FILTER.size)]
    nr = _nr_in_a(raws)
    return "\n".join(f"{pc:4d}: {_text(pc, raw, nr[pc], names)}" for pc, raw in enumerate(raws))
