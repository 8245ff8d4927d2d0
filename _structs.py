"""Kernel ABI structures and constants for sandlock, mirrored with ctypes.

Every structure carries its kernel name, field names and widths, and
``_pack_`` exactly where the uapi header packs.  The headers they mirror:

- ``linux/seccomp.h``: seccomp_data, seccomp_notif, seccomp_notif_resp,
  seccomp_notif_addfd, seccomp_notif_sizes and the SECCOMP_IOCTL_NOTIF_* ioctls;
- ``linux/filter.h``: sock_filter, sock_fprog;
- ``linux/openat2.h``: open_how and RESOLVE_*;
- ``linux/landlock.h``: landlock_ruleset_attr, landlock_path_beneath_attr,
  landlock_net_port_attr and the access-right bits;
- ``linux/capability.h``: __user_cap_header_struct, __user_cap_data_struct.

ioctl numbers are computed from the structure sizes with ``_IOW``/``_IOWR``
(``asm-generic/ioctl.h``), never pasted as hex; ``tests/test_structs.py`` pins
both the layouts and the resulting numbers.

The supervisor's hot path does not touch ctypes: it uses the precompiled
``struct.Struct`` layouts at the bottom of this module, which the tests check
against the ctypes definitions.
"""

from __future__ import annotations

import ctypes
import os
import struct

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")

# --- asm-generic/ioctl.h -------------------------------------------------------

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE, _IOC_READ = 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IOW(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_WRITE, type_, nr, size)


def _IOR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ, type_, nr, size)


def _IOWR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, size)


# --- asm-generic/ioctls.h: the pty number of a /dev/ptmx fd (an unsigned int) ---

TIOCGPTN = _IOR(ord("T"), 0x30, 4)


# --- linux/seccomp.h -----------------------------------------------------------

class seccomp_data(ctypes.Structure):
    """struct seccomp_data (linux/seccomp.h): what a BPF filter sees."""
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class seccomp_notif(ctypes.Structure):
    """struct seccomp_notif (linux/seccomp.h): one trapped syscall."""
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", seccomp_data),
    ]


class seccomp_notif_resp(ctypes.Structure):
    """struct seccomp_notif_resp (linux/seccomp.h): the supervisor's answer."""
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class seccomp_notif_addfd(ctypes.Structure):
    """struct seccomp_notif_addfd (linux/seccomp.h): install an fd in the target."""
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("srcfd", ctypes.c_uint32),
        ("newfd", ctypes.c_uint32),
        ("newfd_flags", ctypes.c_uint32),
    ]


class seccomp_notif_sizes(ctypes.Structure):
    """struct seccomp_notif_sizes (linux/seccomp.h): SECCOMP_GET_NOTIF_SIZES."""
    _fields_ = [
        ("seccomp_notif", ctypes.c_uint16),
        ("seccomp_notif_resp", ctypes.c_uint16),
        ("seccomp_data", ctypes.c_uint16),
    ]


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3

SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# filter return values (SECCOMP_RET_ACTION_FULL selects the action, SECCOMP_RET_DATA its data)
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

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_IP = 8
SECCOMP_DATA_SIZE = 64

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1 << 0
SECCOMP_ADDFD_FLAG_SETFD = 1 << 0
SECCOMP_ADDFD_FLAG_SEND = 1 << 1
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1 << 0

SECCOMP_IOC_MAGIC = ord("!")
SECCOMP_IOCTL_NOTIF_RECV = _IOWR(SECCOMP_IOC_MAGIC, 0, ctypes.sizeof(seccomp_notif))
SECCOMP_IOCTL_NOTIF_SEND = _IOWR(SECCOMP_IOC_MAGIC, 1, ctypes.sizeof(seccomp_notif_resp))
SECCOMP_IOCTL_NOTIF_ID_VALID = _IOW(SECCOMP_IOC_MAGIC, 2, ctypes.sizeof(ctypes.c_uint64))
SECCOMP_IOCTL_NOTIF_ADDFD = _IOW(SECCOMP_IOC_MAGIC, 3, ctypes.sizeof(seccomp_notif_addfd))
SECCOMP_IOCTL_NOTIF_SET_FLAGS = _IOW(SECCOMP_IOC_MAGIC, 4, ctypes.sizeof(ctypes.c_uint64))

# --- linux/filter.h ------------------------------------------------------------

class sock_filter(ctypes.Structure):
    """struct sock_filter (linux/filter.h): one classic BPF instruction."""
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class sock_fprog(ctypes.Structure):
    """struct sock_fprog (linux/filter.h): a BPF program for seccomp(2)."""
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(sock_filter)),
    ]


# --- linux/openat2.h -----------------------------------------------------------

class open_how(ctypes.Structure):
    """struct open_how (linux/openat2.h): the argument of openat2(2)."""
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

# --- linux/fcntl.h, linux/stat.h, linux/fs.h: flags of the *at calls --------------

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EACCESS = 0x200              # faccessat
AT_REMOVEDIR = 0x200            # unlinkat
AT_SYMLINK_FOLLOW = 0x400       # linkat
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000
STATX_BTIME = 0x800
STATX__RESERVED = 0x80000000
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4

# Size of struct stat as written by newfstatat(2) (arch/*/include/uapi/asm/stat.h).
STAT_SIZE = {"x86_64": 144, "aarch64": 128}
STATX_SIZE = 256

# --- linux/audit.h: the architecture a seccomp filter sees ----------------------

AUDIT_ARCH = {
    "x86_64": 0xC000003E,   # EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    "aarch64": 0xC00000B7,  # EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
}
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

# --- linux/sched.h, linux/pidfd.h ----------------------------------------------

CLONE_FS = 0x00000200
CLONE_THREAD = 0x00010000
PIDFD_NONBLOCK, PIDFD_THREAD = os.O_NONBLOCK, os.O_EXCL

# --- linux/in.h, asm-generic/ioctls.h, linux/sockios.h, net/if.h ---------------

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_MPTCP = 1, 6, 17, 58, 262
SIOCOUTQ = 0x5411      # TIOCOUTQ (include/uapi/asm-generic/ioctls.h; x86_64 and aarch64 alike)
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # the same header; termios's, without loading its module at start-up
SIOC_FIRST, SIOC_PER_SOCKET_END = 0x8900, 0x8910  # 0x8900-0x890f: the socket's own (FIOSETOWN, SIOCGSTAMP, ...)
SIOCGIFNAME, SIOCGIFCONF, SIOCGARP, SIOCGRARP = 0x8910, 0x8912, 0x8954, 0x8961
IFREQ = 40  # sizeof(struct ifreq) on 64-bit

ADDR_NO_RANDOMIZE = 0x0040000  # linux/personality.h

# asm-generic/resource.h (x86_64 and aarch64 alike): the limits a policy sets, without
# loading the resource module at start-up; prlimit64(2)'s RLIM64_INFINITY
RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE = 1, 2, 3, 4, 7
RLIM64_INFINITY = (1 << 64) - 1
AT_RANDOM, AT_SYSINFO_EHDR = 25, 33  # linux/auxvec.h: keys of the auxiliary vector

# struct timex (linux/timex.h, 64-bit): modes at 0, status at 40, time (a timeval) at 72
TIMEX_SIZE = 208
TIMEX_STATUS, TIMEX_TIME = 40, 72
STA_NANO = 0x2000
ADJ_OFFSET_SS_READ = 0xA001

# --- linux/utsname.h -----------------------------------------------------------

NEW_UTS_LEN = 64  # __NEW_UTS_LEN


class new_utsname(ctypes.Structure):
    """struct new_utsname (linux/utsname.h): what uname(2) writes."""
    _fields_ = [(field, ctypes.c_char * (NEW_UTS_LEN + 1))
                for field in ("sysname", "nodename", "release", "version", "machine", "domainname")]


# --- linux/sysinfo.h -----------------------------------------------------------

class sysinfo(ctypes.Structure):
    """struct sysinfo (linux/sysinfo.h), 64-bit layout (_f is empty there): what sysinfo(2) writes."""
    _fields_ = [
        ("uptime", ctypes.c_long),
        ("loads", ctypes.c_ulong * 3),
        ("totalram", ctypes.c_ulong),
        ("freeram", ctypes.c_ulong),
        ("sharedram", ctypes.c_ulong),
        ("bufferram", ctypes.c_ulong),
        ("totalswap", ctypes.c_ulong),
        ("freeswap", ctypes.c_ulong),
        ("procs", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("totalhigh", ctypes.c_ulong),
        ("freehigh", ctypes.c_ulong),
        ("mem_unit", ctypes.c_uint32),
    ]


# --- linux/landlock.h ----------------------------------------------------------

class landlock_ruleset_attr(ctypes.Structure):
    """struct landlock_ruleset_attr (linux/landlock.h), ABI 6 layout.

    Older kernels accept a shorter prefix: the size passed to
    landlock_create_ruleset(2) is chosen per ABI (see LANDLOCK_RULESET_ATTR_SIZE).
    """
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class landlock_path_beneath_attr(ctypes.Structure):
    """struct landlock_path_beneath_attr (linux/landlock.h), packed."""
    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


class landlock_net_port_attr(ctypes.Structure):
    """struct landlock_net_port_attr (linux/landlock.h)."""
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("port", ctypes.c_uint64),
    ]


# Size of landlock_ruleset_attr understood by each ABI: 8 bytes (fs only)
# up to ABI 3, 16 with handled_access_net (ABI 4), 24 with scoped (ABI 6).
LANDLOCK_RULESET_ATTR_SIZE = {1: 8, 2: 8, 3: 8, 4: 16, 5: 16, 6: 24, 7: 24}

LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_CREATE_RULESET_ERRATA = 1 << 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2
LANDLOCK_RESTRICT_SELF_LOG_SAME_EXEC_OFF = 1 << 0
LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1
LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF = 1 << 2

LANDLOCK_ACCESS_FS_EXECUTE = 1 << 0
LANDLOCK_ACCESS_FS_WRITE_FILE = 1 << 1
LANDLOCK_ACCESS_FS_READ_FILE = 1 << 2
LANDLOCK_ACCESS_FS_READ_DIR = 1 << 3
LANDLOCK_ACCESS_FS_REMOVE_DIR = 1 << 4
LANDLOCK_ACCESS_FS_REMOVE_FILE = 1 << 5
LANDLOCK_ACCESS_FS_MAKE_CHAR = 1 << 6
LANDLOCK_ACCESS_FS_MAKE_DIR = 1 << 7
LANDLOCK_ACCESS_FS_MAKE_REG = 1 << 8
LANDLOCK_ACCESS_FS_MAKE_SOCK = 1 << 9
LANDLOCK_ACCESS_FS_MAKE_FIFO = 1 << 10
LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1 << 11
LANDLOCK_ACCESS_FS_MAKE_SYM = 1 << 12
LANDLOCK_ACCESS_FS_REFER = 1 << 13          # ABI 2
LANDLOCK_ACCESS_FS_TRUNCATE = 1 << 14       # ABI 3
LANDLOCK_ACCESS_FS_IOCTL_DEV = 1 << 15      # ABI 5

LANDLOCK_ACCESS_NET_BIND_TCP = 1 << 0       # ABI 4
LANDLOCK_ACCESS_NET_CONNECT_TCP = 1 << 1    # ABI 4

LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
LANDLOCK_SCOPE_SIGNAL = 1 << 1                # ABI 6

# --- linux/capability.h --------------------------------------------------------

class __user_cap_header_struct(ctypes.Structure):
    """struct __user_cap_header_struct (linux/capability.h)."""
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class __user_cap_data_struct(ctypes.Structure):
    """struct __user_cap_data_struct (linux/capability.h); v3 uses two of them."""
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


cap_user_header = __user_cap_header_struct
cap_user_data = __user_cap_data_struct
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_LINUX_CAPABILITY_U32S_3 = 2

# --- hot-path layouts (struct module), pinned against the ctypes ones ----------

# seccomp_notif: id, pid, flags, data{nr, arch, ip, args[6]}
NOTIF = struct.Struct("=QIIiIQ6Q")
# seccomp_notif_resp: id, val, error, flags
NOTIF_RESP = struct.Struct("=QqiI")
# seccomp_notif_addfd: id, flags, srcfd, newfd, newfd_flags
NOTIF_ADDFD = struct.Struct("=QIIII")
# open_how: flags, mode, resolve
OPEN_HOW = struct.Struct("=QQQ")
U64 = struct.Struct("=Q")
