import ctypes, ctypes.util, errno, mmap, os, random, sys, time, json

seed, count, names = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
NR = {"stat": 4, "lstat": 6, "access": 21, "readlink": 89, "chdir": 80, "chmod": 90, "chown": 92,
      "lchown": 94, "utime": 132, "utimes": 235, "statfs": 137, "fstatfs": 138, "getxattr": 191,
      "lgetxattr": 192, "listxattr": 194, "setxattr": 188, "removexattr": 197, "fchmod": 91,
      "fchown": 93, "fsetxattr": 190, "fremovexattr": 199, "inotify_add_watch": 254, "openat": 257,
      "open": 2, "creat": 85, "newfstatat": 262, "readlinkat": 267, "fchmodat": 268, "faccessat": 269,
      "fchownat": 260, "futimesat": 261, "utimensat": 280, "faccessat2": 439, "openat2": 437,
      "statx": 332, "fchmodat2": 452, "connect": 42, "prlimit64": 302, "setpriority": 141,
      "sched_setaffinity": 203, "kill": 62, "tkill": 200, "tgkill": 234, "execve": 59,
      "truncate": 76}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
rng = random.Random(seed)
page = mmap.PAGESIZE
# a page followed by an unmapped page: strings that run into it straddle the boundary
area = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
base = ctypes.addressof(ctypes.c_char.from_buffer(area))
libc.munmap(ctypes.c_void_p(base + page), ctypes.c_size_t(page))
ro = mmap.mmap(-1, page, prot=mmap.PROT_READ)
ro_addr = ctypes.addressof(ctypes.c_char.from_buffer(ro)) if False else None
# pointers go into the first 8 KiB; the 64 KiB after them are slack, so a result the
# kernel rightly writes near the end (a stat buffer, a readlink or xattr value) lands
# there, not in the heap (the fuzzer must not corrupt itself, which would look like
# the supervisor corrupting it)
scratch = ctypes.create_string_buffer(8192 + 65536)
sbase = ctypes.addressof(scratch)
W = os.environ.get("FUZZ_DIR", "/tmp")
CANARY = os.environ.get("FUZZ_CANARY", "/tmp/fz/ro/canary").encode()

def put(data):
    scratch[:len(data)] = data
    return sbase

def straddle(data):
    start = base + page - len(data)
    ctypes.memmove(start, data, len(data))
    return start

def pointer():
    kind = rng.randrange(9)
    if kind == 0: return 0
    if kind == 1: return rng.randrange(1, 1 << 47)           # random, mostly unmapped
    if kind == 2: return (1 << 63) + rng.randrange(1 << 20)   # kernel space
    if kind == 3: return straddle(CANARY)             # no NUL before the hole
    if kind == 4: return put(b"/" + b"a" * 4096 + b"\0")       # PATH_MAX + 1
    if kind == 5: return put(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40))) + b"\0")
    if kind == 6: return put(rng.choice([CANARY, b"/proc/self/fd/0", b"/proc/1/root", b".", b"..",
                                          b"/", b"", W.encode() + b"/x", b"/proc/self/exe", b"/proc/self/fd/1"]) + b"\0")
    if kind == 7: return sbase + rng.randrange(0, 8192)
    return base + page - rng.randrange(1, 16)

def value():
    kind = rng.randrange(6)
    if kind == 0: return rng.randrange(-5, 5) & 0xFFFFFFFFFFFFFFFF
    if kind == 1: return rng.randrange(1 << 64)
    if kind == 2: return rng.choice([0xFFFFFF9C, (-100) & 0xFFFFFFFFFFFFFFFF, 0x1000, 0x100, 0x200000, 0o777])
    if kind == 3: return rng.randrange(1 << 32)
    return pointer()

# AT_* flags the kernel accepts (argument index, mask): any other bit is EINVAL there
AT_FLAGS = {"newfstatat": (3, 0x7900), "statx": (2, 0x7900), "faccessat2": (3, 0x1300), "fchownat": (4, 0x1100),
            "utimensat": (3, 0x1100), "fchmodat2": (3, 0x1100)}

def bad_flags(name, args):
    if name not in AT_FLAGS:
        return False
    index, valid = AT_FLAGS[name]
    flags = args[index] & 0xFFFFFFFF
    if name == "statx" and ((flags & 0x6000) == 0x6000 or args[3] & 0x80000000):
        return True
    return bool(flags & ~valid)

results = {}
refused_flags_accepted = []
t0 = time.time()
for i in range(count):
    name = rng.choice(names)
    args = [pointer() if rng.random() < 0.5 else value() for _ in range(6)]
    if name in ("kill", "tkill", "tgkill"):
        args[1 if name != "tgkill" else 2] = 0  # probe only: never actually signal
    if name == "execve":  # never a path that could really start a program
        args[0] = rng.choice([0, rng.randrange(1, 1 << 47), (1 << 63), straddle(CANARY),
                              put(b"/nonexistent\0"), put(CANARY + b"\0"), put(b"/" + b"a" * 4096 + b"\0")])
        args[1] = args[2] = 0
    if name in ("setpriority",):
        args[2] = 19
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args])
    e = ctypes.get_errno()
    key = f"{name}:{'ok' if r >= 0 else errno.errorcode.get(e, e)}"
    results[key] = results.get(key, 0) + 1
    if r >= 0 and bad_flags(name, args):
        refused_flags_accepted.append([name] + [hex(a & 0xFFFFFFFFFFFFFFFF) for a in args])
    if r >= 0 and name in ("open", "openat", "creat", "openat2"):
        os.close(r)
print(json.dumps({"calls": count, "seconds": round(time.time() - t0, 2), "results": results,
                  "refused_flags_accepted": refused_flags_accepted}))
