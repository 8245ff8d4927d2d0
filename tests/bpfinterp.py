"""A test-only classic-BPF interpreter, run on a synthetic struct seccomp_data.

Follows the kernel's semantics for seccomp programs (kernel/bpf/core.c,
classic BPF as converted for seccomp): 32-bit A and X, 16 scratch words,
unsigned compares, relative jumps from the next instruction, division by
zero ends the program with 0.  Never imported by product code.
"""

import struct

import _bpf as B

_INSN = struct.Struct("<HBBI")
_DATA = struct.Struct("<iIQ6Q")
M32 = 0xFFFFFFFF


def seccomp_data(nr, arch, args=(), ip=0):
    args = list(args) + [0] * (6 - len(args))
    return _DATA.pack(nr if nr < 0x80000000 else nr - (1 << 32), arch, ip, *[a & ((1 << 64) - 1) for a in args])


def run(code, nr, arch, args=(), ip=0):
    """The u32 the program returns for this syscall."""
    data = seccomp_data(nr, arch, args, ip)
    insns = [_INSN.unpack_from(code, i) for i in range(0, len(code), 8)]
    a = x = 0
    mem = [0] * B.BPF_MEMWORDS
    pc = 0
    while True:
        if pc >= len(insns):
            raise RuntimeError("ran off the end of the program")
        op, jt, jf, k = insns[pc]
        pc += 1
        cls = op & 0x07
        if cls == B.BPF_LD:
            mode = op & 0xE0
            if mode == B.BPF_ABS:
                if k + 4 > len(data):
                    raise RuntimeError(f"load outside seccomp_data at {k}")
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == B.BPF_IMM:
                a = k
            elif mode == B.BPF_MEM:
                a = mem[k]
            elif mode == B.BPF_LEN:
                a = len(data)
        elif cls == B.BPF_LDX:
            x = mem[k] if op & 0xE0 == B.BPF_MEM else (len(data) if op & 0xE0 == B.BPF_LEN else k)
        elif cls == B.BPF_ST:
            mem[k] = a
        elif cls == B.BPF_STX:
            mem[k] = x
        elif cls == B.BPF_ALU:
            src = x if op & B.BPF_X else k
            alu = op & 0xF0
            if alu in (B.BPF_DIV, B.BPF_MOD) and src == 0:
                return 0
            a = {
                B.BPF_ADD: lambda: a + src, B.BPF_SUB: lambda: a - src, B.BPF_MUL: lambda: a * src,
                B.BPF_DIV: lambda: a // src, B.BPF_MOD: lambda: a % src, B.BPF_OR: lambda: a | src,
                B.BPF_AND: lambda: a & src, B.BPF_XOR: lambda: a ^ src,
                B.BPF_LSH: lambda: a << (src & 31), B.BPF_RSH: lambda: a >> (src & 31), B.BPF_NEG: lambda: -a,
            }[alu]() & M32
        elif cls == B.BPF_JMP:
            jop = op & 0xF0
            if jop == B.BPF_JA:
                pc += k
                continue
            src = x if op & B.BPF_X else k
            taken = {B.BPF_JEQ: a == src, B.BPF_JGT: a > src, B.BPF_JGE: a >= src, B.BPF_JSET: bool(a & src)}[jop]
            pc += jt if taken else jf
        elif cls == B.BPF_RET:
            return a if op & 0x18 == B.BPF_A else k
        elif cls == B.BPF_MISC:
            if op & 0xF8 == B.BPF_TAX:
                x = a
            else:
                a = x


def action(ret):
    """('ALLOW', 0), ('ERRNO', n), ('USER_NOTIF', 0), ('KILL_PROCESS', 0), ..."""
    full = ret & B.SECCOMP_RET_ACTION_FULL
    data = ret & B.SECCOMP_RET_DATA
    name = {B.SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS", B.SECCOMP_RET_KILL_THREAD: "KILL_THREAD",
            B.SECCOMP_RET_TRAP: "TRAP", B.SECCOMP_RET_ERRNO: "ERRNO", B.SECCOMP_RET_USER_NOTIF: "USER_NOTIF",
            B.SECCOMP_RET_TRACE: "TRACE", B.SECCOMP_RET_LOG: "LOG", B.SECCOMP_RET_ALLOW: "ALLOW"}[full]
    return name, (data if name in ("ERRNO", "TRAP", "TRACE") else 0)
