"""The cBPF assembler, disassembler and the test interpreter."""

import pytest

import _bpf as B
from bpfinterp import action, run

X86 = 0xC000003E


def small_filter():
    return B.assemble([
        B.ld_abs(B.SECCOMP_DATA_ARCH),
        B.jeq(X86, jt=1),
        B.ret(B.SECCOMP_RET_KILL_PROCESS),
        B.ld_abs(B.SECCOMP_DATA_NR),
        B.jeq(39, jf=1),
        B.ret(B.SECCOMP_RET_ALLOW),
        B.jset(0x40000000, jf="default"),
        B.ret(B.SECCOMP_RET_ERRNO | 1),
        B.label("default"),
        B.ret(B.SECCOMP_RET_ERRNO | 38),
    ])


def test_a_small_filter_decides_by_arch_and_number():
    code = small_filter()
    assert action(run(code, 39, X86)) == ("ALLOW", 0)
    assert action(run(code, 39, 0x40000003)) == ("KILL_PROCESS", 0)
    assert action(run(code, 39 | 0x40000000, X86)) == ("ERRNO", 1)
    assert action(run(code, 1000, X86)) == ("ERRNO", 38)


def test_each_instruction_packs_as_struct_sock_filter():
    assert B.assemble([B.ret(B.SECCOMP_RET_ALLOW)]) == bytes([6, 0, 0, 0, 0, 0, 0xFF, 0x7F])
    code = B.assemble([B.ld_abs(4), B.jeq(7, jt=0, jf=1), B.ret(1), B.ret(2)])
    assert code[8:16] == bytes([0x15, 0, 0, 1, 7, 0, 0, 0])


def test_labels_resolve_to_forward_offsets():
    code = B.assemble([B.ld_abs(0), B.jeq(1, jt="yes", jf="no"), B.label("no"), B.ret(0), B.label("yes"), B.ret(1)])
    assert code[8:12] == bytes([0x15, 0, 1, 0])
    assert run(code, 1, 0) == 1 and run(code, 2, 0) == 0


def test_ja_takes_a_32_bit_offset_to_a_label():
    prog = [B.ld_abs(0), B.ja("far")] + [B.ret(5)] * 300 + [B.label("far"), B.ret(7)]
    assert run(B.assemble(prog), 0, 0) == 7


def test_conditional_jump_further_than_255_is_refused():
    prog = [B.ld_abs(0), B.jeq(1, jt="far")] + [B.ret(0)] * 256 + [B.label("far"), B.ret(1)]
    with pytest.raises(B.BpfError, match="longer than 255"):
        B.assemble(prog)


@pytest.mark.parametrize("program, message", [
    ([B.ld_abs(0), B.jeq(1, jt="nowhere"), B.ret(0)], "unknown label"),
    ([B.label("a"), B.label("a"), B.ret(0)], "duplicate label"),
    ([B.label("back"), B.ld_abs(0), B.ja("back"), B.ret(0)], "backward"),
    ([], "empty"),
    ([B.ld_abs(0)], "last instruction"),
    ([B.ld_abs(2), B.ret(0)], "outside struct seccomp_data or unaligned"),
    ([B.ld_abs(64), B.ret(0)], "outside struct seccomp_data"),
    ([B.Insn(B.BPF_LD | B.BPF_H | B.BPF_ABS, k=0), B.ret(0)], "32-bit words"),
    ([B.Insn(B.BPF_LD | B.BPF_W | B.BPF_IND, k=0), B.ret(0)], "not allowed"),
    ([B.st(16), B.ret(0)], "scratch word"),
    ([B.ld_mem(16), B.ret(0)], "scratch word"),
    ([B.alu(B.BPF_DIV, 0), B.ret(0)], "division by constant zero"),
    ([B.ld_abs(0), B.jeq(1, jt=1), B.ret(0)], "past the end"),
    ([B.ret(1 << 32)], "32-bit"),
])
def test_programs_the_kernel_would_refuse_are_refused(program, message):
    with pytest.raises(B.BpfError, match=message):
        B.assemble(program)


def test_more_than_4096_instructions_are_refused():
    with pytest.raises(B.BpfError, match="more than 4096"):
        B.assemble([B.ld_imm(0)] * 4096 + [B.ret(0)])


def test_disassembly_shows_mnemonics_targets_and_actions():
    text = B.disassemble(small_filter(), {39: "getpid"})
    lines = text.splitlines()
    assert lines[0] == "   0: ld [4]"
    assert "jeq #0xc000003e jt 3 jf 2" in lines[1]
    assert lines[2].endswith("ret KILL_PROCESS")
    assert "(getpid)" in lines[4]
    assert lines[5].endswith("ret ALLOW")
    assert lines[7].endswith("ret ERRNO(1)")
    assert lines[8].endswith("ret ERRNO(38)")
    assert B.disassemble(B.assemble([B.ja(0), B.ret(B.SECCOMP_RET_USER_NOTIF)])).splitlines()[0].endswith("ja 1")


def test_seccomp_data_argument_offsets():
    assert B.seccomp_data_arg(0) == 16 and B.seccomp_data_arg(0, high=True) == 20
    assert B.seccomp_data_arg(5) == 56
    with pytest.raises(B.BpfError):
        B.seccomp_data_arg(6)


def test_interpreter_reads_the_low_and_high_halves_of_arguments():
    code = B.assemble([B.ld_abs(B.seccomp_data_arg(1, high=True)), B.jeq(1, jt=1), B.ret(0),
                       B.ld_abs(B.seccomp_data_arg(1)), B.jset(0x80, jt=1), B.ret(1), B.ret(2)])
    assert run(code, 0, 0, [0, (1 << 32) | 0x80]) == 2
    assert run(code, 0, 0, [0, (1 << 32)]) == 1
    assert run(code, 0, 0, [0, 0x80]) == 0


def test_interpreter_alu_scratch_memory_and_division_by_zero():
    code = B.assemble([B.ld_imm(0xFFFFFFFF), B.alu(B.BPF_ADD, 2), B.st(3), B.ld_imm(0), B.ld_mem(3), B.ret_a()])
    assert run(code, 0, 0) == 1  # wraps at 32 bits
    code = B.assemble([B.ldx_imm(0), B.ld_imm(5), B.alu_x(B.BPF_DIV), B.ret(9)])
    assert run(code, 0, 0) == 0
