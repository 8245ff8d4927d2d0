import struct
from typing import NamedTuple
BPF_LD=0;BPF_ALU=4;BPF_JMP=5;BPF_RET=6;BPF_W=0;BPF_ABS=0x20;BPF_K=0;BPF_AND=0x50;BPF_JA=0;BPF_JEQ=0x10;BPF_JGT=0x20;BPF_JGE=0x30;BPF_JSET=0x40
SECCOMP_RET_KILL_PROCESS=0x80000000;SECCOMP_RET_ERRNO=0x00050000;SECCOMP_RET_USER_NOTIF=0x7fc00000;SECCOMP_RET_ALLOW=0x7fff0000
SECCOMP_DATA_NR=0;SECCOMP_DATA_ARCH=4
def seccomp_data_arg(i, high=False): return 16+8*i+(4 if high else 0)
class Insn(NamedTuple):
    code:int; jt:object; jf:object; k:object
class Label(NamedTuple):
    name:str
def label(n): return Label(n)
def ld_abs(o): return Insn(BPF_LD|BPF_W|BPF_ABS,None,None,o)
def and_(k): return Insn(BPF_ALU|BPF_AND|BPF_K,None,None,k)
def jeq(k,jt=None,jf=None): return Insn(BPF_JMP|BPF_JEQ|BPF_K,jt,jf,k)
def jge(k,jt=None,jf=None): return Insn(BPF_JMP|BPF_JGE|BPF_K,jt,jf,k)
def jset(k,jt=None,jf=None): return Insn(BPF_JMP|BPF_JSET|BPF_K,jt,jf,k)
def ja(t): return Insn(BPF_JMP|BPF_JA,None,None,t)
def ret(k): return Insn(BPF_RET|BPF_K,None,None,k)
F=struct.Struct('<HBBI')
def assemble(prog):
    pos={};n=0
    for x in prog:
        if isinstance(x,Label): pos[x.name]=n
        else: n+=1
    out=[];i=0
    for x in prog:
        if isinstance(x,Label): continue
        def off(v):
            if v is None: return 0
            if isinstance(v,str): return pos[v]-i-1
            return v
        if x.code==BPF_JMP|BPF_JA: out.append(F.pack(x.code,0,0,off(x.k)))
        else:
            jt,jf=off(x.jt),off(x.jf); assert 0<=jt<256 and 0<=jf<256
            out.append(F.pack(x.code,jt,jf,x.k))
        i+=1
    assert n<=4096
    return b''.join(out)
def disassemble(code,names=None):
    return '\n'.join('%4d: %04x %d %d %x'%((i,)+F.unpack_from(code,i*8)) for i in range(len(code)//8))
