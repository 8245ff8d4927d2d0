"""The cBPF assembler and disassembler (_bpf) and the test-only interpreter (bpfinterp)."""

from __future__ import annotations

import os
import sys
from typing import List, Sequence, Union

_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (_HERE, os.path.dirname(_HERE)):  # tests/ for bpfinterp, the repo root for _bpf
    if _path not in sys.path:
        sys.path.insert(0, _path)

import pytest  # noqa: E402

from sandlock import _bpf as B  # noqa: E402
from bpfinterp import BpfRunError, action, run  # noqa: E402
from conftest import fuzz_seeds  # noqa: E402

X86_64 = 0xC000003E
AARCH64 = 0xC00000B7
Item = Union[B.Insn, B.Label]


def program(*items: Item) -> bytes:
    return B.assemble(list(items))


def lines(code: bytes, names: object = None) -> List[str]:
    return B.disassemble(code, names).splitlines()  # type: ignore[arg-type]


def realistic_filter() -> bytes:
    """Kill other architectures, allow getpid(39), refuse x32 numbers with EPERM, the rest ENOSYS."""
    return program(
        B.ld_abs(B.SECCOMP_DATA_ARCH),
        B.jeq(X86_64, jf="kill"),
        B.ld_abs(B.SECCOMP_DATA_NR),
        B.jeq(39, jt="allow"),
        B.jset(0x40000000, jf="enosys"),
        B.ret(B.SECCOMP_RET_ERRNO | 1),
        B.label("enosys"),
        B.ret(B.SECCOMP_RET_ERRNO | 38),
        B.label("allow"),
        B.ret(B.SECCOMP_RET_ALLOW),
        B.label("kill"),
        B.ret(B.SECCOMP_RET_KILL_PROCESS),
    )


# --- constants and encoding -----------------------------------------------------------------

def test_constants_have_the_kernel_header_values() -> None:
    assert (B.BPF_LD, B.BPF_LDX, B.BPF_ST, B.BPF_STX, B.BPF_ALU, B.BPF_JMP, B.BPF_RET, B.BPF_MISC) == tuple(range(8))
    assert (B.BPF_W, B.BPF_H, B.BPF_B) == (0, 8, 0x10)
    assert (B.BPF_IMM, B.BPF_ABS, B.BPF_IND, B.BPF_MEM, B.BPF_LEN) == (0, 0x20, 0x40, 0x60, 0x80)
    assert (B.BPF_K, B.BPF_X, B.BPF_A, B.BPF_TAX, B.BPF_TXA) == (0, 8, 0x10, 0, 0x80)
    assert (B.BPF_MOD, B.BPF_XOR, B.BPF_JSET) == (0x90, 0xA0, 0x40)
    assert (B.BPF_MAXINSNS, B.BPF_MEMWORDS) == (4096, 16)
    assert B.SECCOMP_RET_USER_NOTIF == 0x7FC00000 and B.SECCOMP_RET_LOG == 0x7FFC0000
    assert (B.SECCOMP_DATA_NR, B.SECCOMP_DATA_ARCH, B.SECCOMP_DATA_IP) == (0, 4, 8)


@pytest.mark.parametrize("insn, code", [
    (B.ld_abs(0), 0x20), (B.ld_imm(0), 0x00), (B.ldx_imm(0), 0x01), (B.ld_mem(0), 0x60),
    (B.ldx_mem(0), 0x61), (B.st(0), 0x02), (B.stx(0), 0x03), (B.tax(), 0x07), (B.txa(), 0x87),
    (B.alu(B.BPF_ADD, 1), 0x04), (B.alu_x(B.BPF_SUB), 0x1C), (B.and_(1), 0x54),
    (B.jeq(0), 0x15), (B.jgt(0), 0x25), (B.jge(0), 0x35), (B.jset(0), 0x45), (B.ja(0), 0x05),
    (B.ret(0), 0x06), (B.ret_a(), 0x16),
])
def test_each_helper_builds_the_kernel_opcode(insn: B.Insn, code: int) -> None:
    assert insn.code == code


def test_instructions_pack_as_little_endian_struct_sock_filter() -> None:
    assert program(B.ret(B.SECCOMP_RET_ALLOW)) == bytes([6, 0, 0, 0, 0, 0, 0xFF, 0x7F])
    code = program(B.ld_abs(4), B.jeq(0x01020304, jt=0, jf=1), B.ret(1), B.ret(2))
    assert len(code) == 32
    assert code[8:16] == bytes([0x15, 0, 0, 1, 4, 3, 2, 1])


def test_seccomp_data_argument_offsets_are_little_endian_halves() -> None:
    assert [B.seccomp_data_arg(i) for i in range(6)] == [16, 24, 32, 40, 48, 56]
    assert B.seccomp_data_arg(0, high=True) == 20 and B.seccomp_data_arg(5, high=True) == 60


def test_a_seventh_syscall_argument_is_refused() -> None:
    with pytest.raises(B.BpfError, match="argument 6"):
        B.seccomp_data_arg(6)


def test_insn_is_immutable_and_label_occupies_no_instruction() -> None:
    with pytest.raises(AttributeError):
        B.ld_abs(0).k = 4  # type: ignore[misc]
    assert len(program(B.label("start"), B.ld_abs(0), B.label("end"), B.ret(0))) == 16


# --- round trips through the disassembler ---------------------------------------------------

@pytest.mark.parametrize("insn, text", [
    (B.ld_abs(B.SECCOMP_DATA_ARCH), "ld [4]"),
    (B.ld_imm(7), "ld #0x7"),
    (B.ldx_imm(0x10), "ldx #0x10"),
    (B.ld_mem(3), "ld M[3]"),
    (B.ldx_mem(3), "ldx M[3]"),
    (B.st(5), "st M[5]"),
    (B.stx(15), "stx M[15]"),
    (B.tax(), "tax"),
    (B.txa(), "txa"),
    (B.alu(B.BPF_ADD, 2), "add #0x2"),
    (B.alu(B.BPF_LSH, 31), "lsh #0x1f"),
    (B.alu(B.BPF_NEG, 0), "neg"),
    (B.alu_x(B.BPF_SUB), "sub x"),
    (B.alu_x(B.BPF_DIV), "div x"),
    (B.and_(0xFF), "and #0xff"),
    (B.jeq(5), "jeq #0x5 jt 3 jf 3"),
    (B.jgt(5, jt=1), "jgt #0x5 jt 4 jf 3"),
    (B.jge(5, jf=1), "jge #0x5 jt 3 jf 4"),
    (B.jset(0x40000000, jt=1, jf=0), "jset #0x40000000 jt 4 jf 3"),
    (B.Insn(B.BPF_JMP | B.BPF_JEQ | B.BPF_X), "jeq x jt 3 jf 3"),
    (B.ja(1), "ja 4"),
    (B.ret(B.SECCOMP_RET_ALLOW), "ret ALLOW"),
    (B.ret_a(), "ret A"),
    (B.Insn(B.BPF_LD | B.BPF_W | B.BPF_LEN), "ld len"),
    (B.Insn(B.BPF_LDX | B.BPF_W | B.BPF_LEN), "ldx len"),
])
def test_every_helper_round_trips_to_its_mnemonic(insn: B.Insn, text: str) -> None:
    # Scratch words 3 and 15 are stored first: the kernel refuses reads of unstored words.
    code = program(B.st(3), B.stx(15), insn, B.ret(0), B.ret(1))
    assert lines(code)[2] == f"   2: {text}"


@pytest.mark.parametrize("value, text", [
    (B.SECCOMP_RET_ALLOW, "ALLOW"), (B.SECCOMP_RET_ERRNO | 1, "ERRNO(1)"),
    (B.SECCOMP_RET_USER_NOTIF, "USER_NOTIF"), (B.SECCOMP_RET_KILL_PROCESS, "KILL_PROCESS"),
    (B.SECCOMP_RET_KILL_THREAD, "KILL_THREAD"), (B.SECCOMP_RET_TRAP | 5, "TRAP(5)"),
    (B.SECCOMP_RET_TRACE | 7, "TRACE(7)"), (B.SECCOMP_RET_LOG, "LOG"), (0x12340000, "#0x12340000"),
])
def test_disassembly_decodes_seccomp_return_actions(value: int, text: str) -> None:
    assert lines(program(B.ret(value))) == [f"   0: ret {text}"]


def test_disassembly_shows_absolute_jump_targets() -> None:
    text = lines(realistic_filter())
    assert text[1] == "   1: jeq #0xc000003e jt 2 jf 8"
    assert text[3] == "   3: jeq #39 jt 7 jf 4"
    assert text[4] == "   4: jset #0x40000000 jt 5 jf 6"
    assert text[5:] == ["   5: ret ERRNO(1)", "   6: ret ERRNO(38)", "   7: ret ALLOW", "   8: ret KILL_PROCESS"]


def test_disassembly_names_syscalls_compared_with_the_loaded_number() -> None:
    code = program(B.ld_abs(0), B.jge(300, jt=1), B.jeq(257, jt=2), B.jset(257, jt=1), B.ret(0), B.ret(1))
    text = lines(code, {257: "openat", 300: "fanotify_init"})
    assert text[1] == "   1: jge #300 (fanotify_init) jt 3 jf 2"
    assert text[2] == "   2: jeq #257 (openat) jt 5 jf 3"
    assert text[3] == "   3: jset #0x101 jt 5 jf 4"  # a bit mask, not a syscall number


def test_disassembly_names_nothing_once_a_no_longer_holds_the_number() -> None:
    names = {257: "openat"}
    after_alu = program(B.ld_abs(0), B.and_(0xFFFF), B.jeq(257), B.ret(0))
    after_arg = program(B.ld_abs(B.seccomp_data_arg(0)), B.jeq(257), B.ret(0))
    one_path_only = program(B.ld_abs(4), B.jeq(1, jt=1), B.ld_abs(0), B.jeq(257), B.ret(0))
    assert lines(after_alu, names)[2] == "   2: jeq #0x101 jt 3 jf 3"
    assert lines(after_arg, names)[1] == "   1: jeq #0x101 jt 2 jf 2"
    assert lines(one_path_only, names)[3] == "   3: jeq #0x101 jt 4 jf 4"


def test_disassembly_marks_opcodes_seccomp_does_not_allow() -> None:
    raw = bytes([0x94, 0, 0, 0, 3, 0, 0, 0]) + program(B.ret(0))
    assert "not allowed by seccomp" in lines(raw)[0]


def test_disassembly_of_a_truncated_program_is_refused() -> None:
    with pytest.raises(B.BpfError, match="whole number"):
        B.disassemble(program(B.ret(0))[:7])


# --- labels ---------------------------------------------------------------------------------

def test_labels_resolve_to_forward_offsets() -> None:
    code = program(B.ld_abs(0), B.jeq(1, jt="yes", jf="no"), B.label("no"), B.ret(0), B.label("yes"), B.ret(1))
    assert code[8:12] == bytes([0x15, 0, 1, 0])  # u16 code, u8 jt, u8 jf
    assert run(code, 1, 0) == 1 and run(code, 2, 0) == 0


def test_integer_offsets_and_labels_mix() -> None:
    code = program(B.ld_abs(0), B.jeq(1, jt=1, jf="two"), B.ret(0), B.ret(1), B.label("two"), B.ret(2))
    assert code[8:12] == bytes([0x15, 0, 1, 2])
    assert run(code, 1, 0) == 1 and run(code, 5, 0) == 2


def test_a_conditional_jump_of_exactly_255_is_accepted() -> None:
    code = program(B.ld_abs(0), B.jeq(1, jt="far"), *[B.ret(0)] * 255, B.label("far"), B.ret(1))
    assert code[8 + 2] == 255 and run(code, 1, 0) == 1


def test_ja_reaches_a_label_further_than_255_instructions() -> None:
    code = program(B.ld_abs(0), B.ja("far"), *[B.ret(5)] * 300, B.label("far"), B.ret(7))
    assert lines(code)[1] == "   1: ja 302"
    assert run(code, 0, 0) == 7


def test_a_program_of_exactly_4096_instructions_is_accepted() -> None:
    assert len(program(*[B.ld_imm(0)] * 4095, B.ret(0))) == 8 * 4096


# --- refusals -------------------------------------------------------------------------------

def refused(items: Sequence[Item], message: str) -> None:
    with pytest.raises(B.BpfError, match=message):
        B.assemble(list(items))


def test_bpf_error_is_a_value_error() -> None:
    assert issubclass(B.BpfError, ValueError)


def test_an_unknown_label_is_refused() -> None:
    refused([B.ld_abs(0), B.jeq(1, jt="nowhere"), B.ret(0)], "instruction 1: unknown label 'nowhere'")


def test_a_duplicate_label_is_refused() -> None:
    refused([B.label("a"), B.ld_abs(0), B.label("a"), B.ret(0)], "instruction 1: duplicate label 'a'")


def test_a_backward_conditional_jump_is_refused() -> None:
    refused([B.label("top"), B.ld_abs(0), B.jeq(1, jf="top"), B.ret(0)], "instruction 1: backward jump")


def test_a_backward_ja_is_refused() -> None:
    refused([B.label("top"), B.ld_abs(0), B.ja("top"), B.ret(0)], "instruction 1: backward jump")
    refused([B.ja(-1), B.ret(0)], "backward jump")


def test_conditional_jump_further_than_255_is_refused() -> None:
    refused([B.ld_abs(0), B.jeq(1, jt="far"), *[B.ret(0)] * 256, B.label("far"), B.ret(1)], "longer than 255")
    refused([B.ld_abs(0), B.jeq(1, jf="far"), *[B.ret(0)] * 256, B.label("far"), B.ret(1)], "longer than 255")
    refused([B.jeq(1, jt=256), *[B.ret(0)] * 257], "instruction 0: jump of 256 is longer than 255")


def test_more_than_4096_instructions_are_refused() -> None:
    refused([B.ld_imm(0)] * 4096 + [B.ret(0)], "4097 instructions")


def test_an_empty_program_is_refused() -> None:
    refused([], "empty")
    refused([B.label("only")], "empty")


def test_a_program_not_ending_in_ret_is_refused() -> None:
    refused([B.ld_abs(0)], "instruction 0: the last instruction is not a ret")
    refused([B.ret(0), B.ld_imm(1)], "instruction 1: the last instruction is not a ret")


@pytest.mark.parametrize("items", [
    [B.ld_abs(0), B.jeq(1, jt=1), B.ret(0)],
    [B.ld_abs(0), B.jeq(1, jf=1), B.ret(0)],
    [B.ja(1), B.ret(0)],
    [B.ld_abs(0), B.jeq(1, jt="end"), B.ret(0), B.label("end")],
    [B.ld_abs(0), B.ja("end"), B.ret(0), B.label("end")],
])
def test_a_jump_past_the_end_is_refused(items: List[Item]) -> None:
    refused(items, "past the end")


@pytest.mark.parametrize("offset", [2, 6, 63, 64, 100])
def test_a_load_unaligned_or_outside_seccomp_data_is_refused(offset: int) -> None:
    refused([B.ld_abs(offset), B.ret(0)], f"instruction 0: load at {offset} is unaligned or outside")


def test_every_aligned_load_inside_seccomp_data_is_accepted() -> None:
    for offset in range(0, 64, 4):
        program(B.ld_abs(offset), B.ret_a())


@pytest.mark.parametrize("code", [
    B.BPF_LD | B.BPF_H | B.BPF_ABS, B.BPF_LD | B.BPF_B | B.BPF_ABS,    # only 32-bit loads
    B.BPF_LD | B.BPF_W | B.BPF_IND, B.BPF_LDX | B.BPF_B | B.BPF_MSH,  # no packet-relative loads
    B.BPF_LDX | B.BPF_W | B.BPF_ABS, B.BPF_LD | B.BPF_H | B.BPF_LEN,
    B.BPF_ALU | B.BPF_MOD | B.BPF_K, B.BPF_ALU | B.BPF_MOD | B.BPF_X,  # seccomp has no modulo
    B.BPF_ALU | B.BPF_NEG | B.BPF_X, B.BPF_ALU | 0xB0,                  # stray bits, unknown op
    B.BPF_JMP | B.BPF_JA | B.BPF_X, B.BPF_JMP | 0x50,
    B.BPF_RET | B.BPF_X, B.BPF_ST | B.BPF_X, B.BPF_MISC | 0x08, 0x10006,
])
def test_instructions_seccomp_does_not_allow_are_refused(code: int) -> None:
    refused([B.ld_imm(1), B.Insn(code, k=1), B.ret(0)], "instruction 1: code .* is not an instruction seccomp allows")


@pytest.mark.parametrize("insn", [B.ld_mem(16), B.ldx_mem(16), B.st(16), B.stx(99)])
def test_scratch_memory_index_of_16_or_more_is_refused(insn: B.Insn) -> None:
    refused([insn, B.ret(0)], "instruction 0: scratch word .* does not exist")


def test_division_by_constant_zero_is_refused() -> None:
    refused([B.ld_imm(1), B.alu(B.BPF_DIV, 0), B.ret_a()], "instruction 1: division by constant zero")


def test_division_by_register_x_is_accepted_even_if_x_may_be_zero() -> None:
    program(B.ld_imm(1), B.alu_x(B.BPF_DIV), B.ret_a())


@pytest.mark.parametrize("op", [B.BPF_LSH, B.BPF_RSH])
def test_shift_by_constant_32_or_more_is_refused(op: int) -> None:
    refused([B.alu(op, 32), B.ret_a()], "instruction 0: shift by 32")


@pytest.mark.parametrize("k", [-1, 1 << 32])
def test_k_outside_u32_is_refused(k: int) -> None:
    refused([B.ret(k)], "instruction 0: k=.* not an unsigned 32-bit value")
    refused([B.ld_imm(k), B.ret(0)], "not an unsigned 32-bit value")


def test_reading_scratch_memory_never_stored_is_refused() -> None:
    refused([B.ld_mem(0), B.ret_a()], "instruction 0: reads scratch word 0 before it is stored")


def test_reading_scratch_memory_stored_on_only_one_path_is_refused() -> None:
    refused([B.ld_abs(0), B.jeq(1, jt=1), B.st(2), B.ldx_mem(2), B.ret(0)], "instruction 3: reads scratch word 2")
    program(B.ld_abs(0), B.st(2), B.jeq(1, jt=1), B.st(2), B.ldx_mem(2), B.ret(0))


def test_a_label_as_k_outside_ja_is_refused() -> None:
    refused([B.Insn(B.BPF_LD | B.BPF_IMM, k="x"), B.label("x"), B.ret(0)], "only ja takes a label")


def test_jt_or_jf_on_an_instruction_that_does_not_jump_is_refused() -> None:
    refused([B.Insn(B.BPF_LD | B.BPF_IMM, jt=1), B.ret(0), B.ret(1)], "does not jump")
    refused([B.Insn(B.BPF_JMP | B.BPF_JA, jt=1, k=0), B.ret(0), B.ret(1)], "ja takes its target in k")


def test_something_neither_insn_nor_label_is_refused() -> None:
    refused([B.ld_abs(0), (6, 0, 0, 0)], "instruction 1: .* neither an Insn nor a Label")  # type: ignore[list-item]


# --- the interpreter ------------------------------------------------------------------------

def test_a_filter_for_another_architecture_kills() -> None:
    code = realistic_filter()
    assert action(run(code, 39, AARCH64)) == ("KILL_PROCESS", 0)
    assert action(run(code, 39, X86_64)) == ("ALLOW", 0)


def test_the_realistic_filter_decides_by_arch_number_and_x32_bit() -> None:
    code = realistic_filter()
    assert action(run(code, 39, X86_64, [1, 2, 3])) == ("ALLOW", 0)
    assert action(run(code, 39 | 0x40000000, X86_64)) == ("ERRNO", 1)
    assert action(run(code, 0x40000000, X86_64)) == ("ERRNO", 1)
    assert action(run(code, 0, X86_64)) == ("ERRNO", 38)
    assert action(run(code, 1000, X86_64)) == ("ERRNO", 38)
    assert action(run(code, -1, X86_64)) == ("ERRNO", 1)  # nr -1 is 0xffffffff: the x32 bit is set
    assert action(run(code, 1000, 0x40000003)) == ("KILL_PROCESS", 0)


def test_jset_tests_bits_of_an_arguments_low_word() -> None:
    code = program(B.ld_abs(B.seccomp_data_arg(2)), B.jset(0o100, jt=1), B.ret(0), B.ret(1))  # O_CREAT
    assert run(code, 0, 0, [0, 0, 0o101]) == 1
    assert run(code, 0, 0, [0, 0, 0o001]) == 0
    assert run(code, 0, 0, [0, 0, 0o100 << 32]) == 0  # the same bit in the high word is not tested


def test_high_word_loads_read_the_upper_half_of_an_argument() -> None:
    code = program(B.ld_abs(B.seccomp_data_arg(5, high=True)), B.ret_a())
    assert run(code, 0, 0, [0, 0, 0, 0, 0, 0x1234_5678_9ABC_DEF0]) == 0x12345678
    assert run(program(B.ld_abs(B.seccomp_data_arg(5)), B.ret_a()), 0, 0, [0] * 5 + [0x1234_5678_9ABC_DEF0]) == 0x9ABCDEF0
    assert run(code, 0, 0, [0, 0, 0, 0, 0, -1]) == 0xFFFFFFFF  # negative arguments as u64


def test_the_instruction_pointer_and_arch_load_as_little_endian_words() -> None:
    ip = 0x7FFF_1234_0000_0042
    assert run(program(B.ld_abs(B.SECCOMP_DATA_IP), B.ret_a()), 0, 0, ip=ip) == 0x42
    assert run(program(B.ld_abs(B.SECCOMP_DATA_IP + 4), B.ret_a()), 0, 0, ip=ip) == 0x7FFF1234
    assert run(program(B.ld_abs(B.SECCOMP_DATA_ARCH), B.ret_a()), 0, X86_64) == X86_64


def test_scratch_memory_and_register_moves() -> None:
    code = program(
        B.ld_imm(11), B.st(0), B.ldx_imm(22), B.stx(15), B.ld_imm(0), B.ldx_imm(0),
        B.ld_mem(15), B.tax(), B.ld_mem(0), B.alu_x(B.BPF_ADD), B.st(1), B.ldx_mem(1), B.txa(), B.ret_a(),
    )
    assert run(code, 0, 0) == 33


def test_len_loads_the_size_of_seccomp_data() -> None:
    assert run(program(B.Insn(B.BPF_LD | B.BPF_W | B.BPF_LEN), B.ret_a()), 0, 0) == 64
    assert run(program(B.Insn(B.BPF_LDX | B.BPF_W | B.BPF_LEN), B.txa(), B.ret_a()), 0, 0) == 64


@pytest.mark.parametrize("start, insns, result", [
    (0xFFFFFFFF, [B.alu(B.BPF_ADD, 2)], 1),
    (1, [B.alu(B.BPF_SUB, 2)], 0xFFFFFFFF),
    (0x80000001, [B.alu(B.BPF_MUL, 4)], 4),
    (0x80000001, [B.alu(B.BPF_LSH, 1)], 2),
    (0x80000000, [B.alu(B.BPF_RSH, 31)], 1),
    (1, [B.alu(B.BPF_NEG, 0)], 0xFFFFFFFF),
    (0xF0F0, [B.alu(B.BPF_XOR, 0xFFFF)], 0x0F0F),
    (0xF000, [B.alu(B.BPF_OR, 0x000F)], 0xF00F),
    (7, [B.alu(B.BPF_DIV, 2)], 3),
    (0xFFFFFFFF, [B.ldx_imm(33), B.alu_x(B.BPF_LSH)], 0xFFFFFFFE),  # X shifts use its low 5 bits
])
def test_alu_operations_wrap_at_32_bits(start: int, insns: List[B.Insn], result: int) -> None:
    assert run(program(B.ld_imm(start), *insns, B.ret_a()), 0, 0) == result


def test_division_by_zero_in_x_ends_the_program_with_zero() -> None:
    code = program(B.ldx_imm(0), B.ld_imm(5), B.alu_x(B.BPF_DIV), B.ret(B.SECCOMP_RET_ALLOW))
    assert run(code, 0, 0) == 0
    assert action(run(code, 0, 0)) == ("KILL_THREAD", 0)


def test_unsigned_compares_and_x_operands() -> None:
    code = program(B.ld_abs(0), B.jgt(1, jt=1), B.ret(0), B.ret(1))
    assert run(code, 0x80000000, 0) == 1  # unsigned: 0x80000000 > 1
    code = program(B.ld_abs(0), B.ldx_imm(10), B.Insn(B.BPF_JMP | B.BPF_JGE | B.BPF_X, jt=1), B.ret(0), B.ret(1))
    assert (run(code, 9, 0), run(code, 10, 0), run(code, 11, 0)) == (0, 1, 1)


def test_the_interpreter_refuses_to_run_off_the_end() -> None:
    with pytest.raises(BpfRunError, match="off the end"):
        run(bytes([0, 0, 0, 0, 0, 0, 0, 0]), 0, 0)


def test_the_interpreter_refuses_an_out_of_range_load() -> None:
    with pytest.raises(BpfRunError, match="outside struct seccomp_data"):
        run(bytes([0x20, 0, 0, 0, 64, 0, 0, 0]) + program(B.ret(0)), 0, 0)


def test_the_interpreter_refuses_opcodes_seccomp_does_not_run() -> None:
    with pytest.raises(BpfRunError, match="not one seccomp runs"):
        run(bytes([0x28, 0, 0, 0, 0, 0, 0, 0]) + program(B.ret(0)), 0, 0)


@pytest.mark.parametrize("value, decoded", [
    (B.SECCOMP_RET_ALLOW, ("ALLOW", 0)), (B.SECCOMP_RET_ERRNO | 13, ("ERRNO", 13)),
    (B.SECCOMP_RET_USER_NOTIF, ("USER_NOTIF", 0)), (B.SECCOMP_RET_KILL_PROCESS, ("KILL_PROCESS", 0)),
    (B.SECCOMP_RET_KILL_THREAD, ("KILL_THREAD", 0)), (B.SECCOMP_RET_TRAP | 2, ("TRAP", 2)),
    (B.SECCOMP_RET_LOG, ("LOG", 0)), (B.SECCOMP_RET_TRACE | 9, ("TRACE", 9)),
])
def test_action_decodes_return_values(value: int, decoded: tuple) -> None:
    assert action(value) == decoded


def _reference_assembly(items: List[Item]) -> Union[bytes, str]:
    """What assemble gave before its short way: every instruction through _resolve, then
    _check_operand, the last ret, the scratch words; the bytes or the refusal's message."""
    try:
        insns, positions = B._layout(items)
        if not insns:
            raise B.BpfError("empty program")
        if len(insns) > B.BPF_MAXINSNS:
            raise B.BpfError(f"{len(insns)} instructions, more than BPF_MAXINSNS={B.BPF_MAXINSNS}")
        raws = [B._resolve(index, insn, positions, len(insns)) for index, insn in enumerate(insns)]
        for index, (code, _, _, k) in enumerate(raws):
            B._check_operand(index, code, k)
        if raws[-1][0] & 0x07 != B.BPF_RET:
            raise B.BpfError(f"instruction {len(raws) - 1}: the last instruction is not a ret")
        B._check_scratch(raws)
        return b"".join(B._SOCK_FILTER.pack(*raw) for raw in raws)
    except B.BpfError as exc:
        return str(exc)


@pytest.mark.parametrize("seed", fuzz_seeds(range(4)))  # fixed seeds; SANDLOCK_FUZZ_SEED draws others
def test_the_short_way_of_assemble_gives_what_every_instruction_through_the_checks_gives(seed: int) -> None:
    """assemble resolves the common instructions inline (README "Start-up"): on random
    programs, valid and not (labels missing, behind or far, k out of range or unaligned,
    jt/jf where no jump is, scratch words, bools as offsets), the same bytes or message."""
    import random
    rng = random.Random(seed)
    labels = [f"l{i}" for i in range(6)]
    target = lambda: rng.choice([None, None, 0, 1, 3, 300, True, -1, "nowhere"] + labels)  # noqa: E731
    k = lambda: rng.choice([0, 4, 5, 16, 24, 60, 64, 0xFFFFFFFF, 1 << 32, -1, 31, 32, 39])  # noqa: E731
    makers = [lambda: B.ld_abs(k()), lambda: B.jeq(k(), target(), target()), lambda: B.jge(k(), target(), target()),
              lambda: B.jset(k(), target(), target()), lambda: B.ja(rng.choice(labels + [1, 0, "nowhere", -2, 300, True])),
              lambda: B.ret(k()), lambda: B.alu(rng.choice([B.BPF_DIV, B.BPF_LSH, B.BPF_AND, B.BPF_ADD]), k()),
              lambda: B.st(rng.choice([0, 3, 16])), lambda: B.ld_mem(rng.choice([0, 3, 16])), B.tax, B.ret_a,
              lambda: B.Insn(B.BPF_RET | B.BPF_K, rng.choice([None, 0, 1]), None, 0),
              lambda: B.Insn(B.BPF_JMP | B.BPF_JEQ | B.BPF_K, "l1", None, "l2"),
              lambda: B.Insn(0x07 | 0x50, None, None, 0)]
    outcomes = set()
    for _ in range(3000):
        items: List[Item] = []
        for _ in range(rng.randrange(1, 14)):
            if rng.random() < 0.25:
                items.append(B.label(rng.choice(labels)))
            else:
                items.append(rng.choice(makers)())
        if rng.random() < 0.7:
            items.append(B.ret(B.SECCOMP_RET_ALLOW))
        want = _reference_assembly(items)
        try:
            got: Union[bytes, str] = B.assemble(items)
        except B.BpfError as exc:
            got = str(exc)
        assert got == want, items
        outcomes.add(type(want))
    assert outcomes == {bytes, str}  # both sides drawn


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_sandlock_s_own_filters_assemble_as_every_instruction_through_the_checks(arch: str, monkeypatch) -> None:
    """The programs _filter builds for several policies and ABIs: the short way's bytes are
    the checked path's bytes."""
    from sandlock import _filter, _netpolicy, _policy, _table
    programs: List[List[Item]] = []
    real = B.assemble
    monkeypatch.setattr(B, "assemble", lambda items: programs.append(list(items)) or real(items))
    for kwargs in ({}, {"net_allow": ["127.0.0.1:80"]}, {"random_seed": 3}, {"max_processes": 5},
                   {"extra_deny_syscalls": ["mount", "uname"]}, {"net_allow_bind": ["8080"]}):
        policy = _policy.make_policy(**kwargs)
        for abi in (1, 4, 6, 7):
            rules = _filter.rules_for(arch, _table.traps_for(policy, abi, arch), policy.extra_deny_syscalls,
                                      _table.extra_denials(abi),
                                      _table.argument_rules(policy, _netpolicy.NetRules.from_policy(policy)))
            _filter.build(arch, rules)
    assert len(programs) == 24
    for items in programs:
        assert real(items) == _reference_assembly(items)
