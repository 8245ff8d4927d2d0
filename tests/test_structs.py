"""Pins the kernel ABI mirrors: struct sizes, field offsets, ioctl numbers."""

import ctypes

import pytest

from sandlock import _structs as S
from sandlock import _syscalls


@pytest.mark.parametrize("struct, size", [
    (S.seccomp_data, 64), (S.seccomp_notif, 80), (S.seccomp_notif_resp, 24),
    (S.seccomp_notif_addfd, 24), (S.seccomp_notif_sizes, 6), (S.sock_filter, 8),
    (S.sock_fprog, 16), (S.open_how, 24), (S.landlock_ruleset_attr, 24),
    (S.landlock_path_beneath_attr, 12), (S.landlock_net_port_attr, 16),
    (S.cap_user_header, 8), (S.cap_user_data, 12),
])
def test_struct_sizes_match_the_uapi_headers(struct, size):
    assert ctypes.sizeof(struct) == size


@pytest.mark.parametrize("struct, field, offset", [
    (S.seccomp_data, "nr", 0), (S.seccomp_data, "arch", 4), (S.seccomp_data, "instruction_pointer", 8),
    (S.seccomp_data, "args", 16),
    (S.seccomp_notif, "id", 0), (S.seccomp_notif, "pid", 8), (S.seccomp_notif, "flags", 12),
    (S.seccomp_notif, "data", 16),
    (S.seccomp_notif_resp, "id", 0), (S.seccomp_notif_resp, "val", 8), (S.seccomp_notif_resp, "error", 16),
    (S.seccomp_notif_resp, "flags", 20),
    (S.seccomp_notif_addfd, "id", 0), (S.seccomp_notif_addfd, "flags", 8), (S.seccomp_notif_addfd, "srcfd", 12),
    (S.seccomp_notif_addfd, "newfd", 16), (S.seccomp_notif_addfd, "newfd_flags", 20),
    (S.sock_filter, "code", 0), (S.sock_filter, "jt", 2), (S.sock_filter, "jf", 3), (S.sock_filter, "k", 4),
    (S.sock_fprog, "filter", 8),
    (S.open_how, "flags", 0), (S.open_how, "mode", 8), (S.open_how, "resolve", 16),
    (S.landlock_ruleset_attr, "handled_access_net", 8), (S.landlock_ruleset_attr, "scoped", 16),
    (S.landlock_path_beneath_attr, "parent_fd", 8), (S.landlock_net_port_attr, "port", 8),
])
def test_field_offsets_match_the_uapi_headers(struct, field, offset):
    assert getattr(struct, field).offset == offset


def test_seccomp_ioctl_numbers_are_the_kernels():
    assert S.SECCOMP_IOCTL_NOTIF_RECV == 0xC0502100
    assert S.SECCOMP_IOCTL_NOTIF_SEND == 0xC0182101
    assert S.SECCOMP_IOCTL_NOTIF_ID_VALID == 0x40082102
    assert S.SECCOMP_IOCTL_NOTIF_ADDFD == 0x40182103
    assert S.SECCOMP_IOCTL_NOTIF_SET_FLAGS == 0x40082104


def test_tiocgptn_is_the_kernels():
    assert S.TIOCGPTN == 0x80045430


def test_hot_path_layouts_agree_with_the_ctypes_structs():
    assert S.NOTIF.size == ctypes.sizeof(S.seccomp_notif)
    assert S.NOTIF_RESP.size == ctypes.sizeof(S.seccomp_notif_resp)
    assert S.NOTIF_ADDFD.size == ctypes.sizeof(S.seccomp_notif_addfd)
    assert S.OPEN_HOW.size == ctypes.sizeof(S.open_how)
    notif = S.seccomp_notif(7, 1234, 0, S.seccomp_data(257, 0xC000003E, 0x1000, (1, 2, 3, 4, 5, 6)))
    assert S.NOTIF.unpack(bytes(notif)) == (7, 1234, 0, 257, 0xC000003E, 0x1000, 1, 2, 3, 4, 5, 6)


def test_the_kernel_agrees_with_our_notification_sizes():
    sizes = _syscalls.seccomp_notif_sizes()
    assert sizes.seccomp_notif == ctypes.sizeof(S.seccomp_notif)
    assert sizes.seccomp_notif_resp == ctypes.sizeof(S.seccomp_notif_resp)
    assert sizes.seccomp_data == ctypes.sizeof(S.seccomp_data)


def test_ruleset_attr_size_grows_with_the_abi():
    assert [S.LANDLOCK_RULESET_ATTR_SIZE[abi] for abi in range(1, 8)] == [8, 8, 8, 16, 16, 24, 24]


@pytest.mark.parametrize("arch, name, number", [
    ("x86_64", "read", 0), ("x86_64", "openat", 257), ("x86_64", "newfstatat", 262), ("x86_64", "clone3", 435),
    ("x86_64", "landlock_restrict_self", 446), ("x86_64", "fchmodat2", 452), ("x86_64", "file_setattr", 469),
    ("aarch64", "openat", 56), ("aarch64", "newfstatat", 79), ("aarch64", "clone", 220),
    ("aarch64", "execve", 221), ("aarch64", "fchmodat2", 452),
])
def test_syscall_tables_hold_the_kernel_numbers(arch, name, number):
    assert _syscalls.table(arch)[name] == number


def test_aarch64_has_no_legacy_path_syscalls():
    table = _syscalls.table("aarch64")
    for legacy in ("open", "stat", "lstat", "access", "readlink", "chmod", "fork", "creat"):
        assert legacy not in table


def test_audit_arch_values():
    assert S.AUDIT_ARCH == {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def test_msghdr_layout_matches_the_64_bit_abi():
    assert ctypes.sizeof(_syscalls._msghdr) == _syscalls.MSGHDR_SIZE == 56
    assert _syscalls._msghdr.msg_iov.offset == 16 and _syscalls._msghdr.msg_control.offset == 32
    from sandlock import _netops
    assert _netops._MSGHDR.size == 56


ABI_PREFIXES = ("SECCOMP_", "LANDLOCK_", "RESOLVE_", "AT_", "STATX_", "RENAME_", "PIDFD_", "SIOC", "CLONE_FS", "AUDIT_ARCH", "X32_",
                "CLONE_THREAD", "IPPROTO_")


NOT_ABI = ("LANDLOCK_ABI_MAX",)  # _syscalls: the newest Landlock ABI sandlock knows, not a kernel value


def test_kernel_abi_constants_are_defined_in_structs_only():
    """Every other module imports them from _structs (README module map): one value per name."""
    import ast
    from pathlib import Path
    repo = Path(S.__file__).resolve().parent
    defined = []
    for path in sorted(repo.glob("_*.py")) + [repo / "sandlock.py"]:
        if path.name == "_structs.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id.startswith(ABI_PREFIXES) and name.id not in NOT_ABI:
                        defined.append(f"{path.name}: {name.id}")
    assert defined == []
