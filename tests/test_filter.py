"""The policy's BPF filter, run through the test-only interpreter (no kernel needed).

A quoted heading in a comment ("The deny list") is a section of docs/design.md.
"""

import errno
import os
import termios

import pytest

from sandlock import _filter
from sandlock import _policy
from sandlock import _structs as S
from sandlock import _syscalls
from sandlock import _table
from bpfinterp import action, run, trace

ARCHES = ("x86_64", "aarch64")


def program(arch, abi=7, **policy):
    pol = _policy.make_policy(**policy)
    traps = _table.traps_for(pol, abi, arch)
    rules = _filter.rules_for(arch, traps, pol.extra_deny_syscalls, _table.extra_denials(abi),
                              _table.argument_rules(pol))
    return _filter.build(arch, rules)


def verdict(code, arch, name, *args, nr=None):
    number = _syscalls.table(arch)[name] if nr is None else nr
    return action(run(code, number, S.AUDIT_ARCH[arch], list(args) + [0] * (6 - len(args))))


@pytest.fixture(scope="module", params=ARCHES)
def default(request):
    return request.param, program(request.param)


def test_every_syscall_of_both_tables_is_classified():
    for arch in ARCHES:
        for name in _syscalls.table(arch):
            _filter.classify(name)  # raises for an unclassified name


def test_this_machine_s_table_is_one_dict_by_default_and_by_name():
    """table() and table(machine()) (and names()) are one parse, shared: the start path
    asks for both."""
    arch = _syscalls.machine()
    assert _syscalls.table() is _syscalls.table(arch)
    assert _syscalls.names() is _syscalls.names(arch)
    assert _syscalls.names(arch)[_syscalls.table(arch)["openat"]] == "openat"


def _labelled_tree(ranges, prog, blocks):  # type: ignore[no-untyped-def]
    """_filter._tree written recursively, every jump over a left half to a label: one
    `jge` to it where the left half, as built, is at most 255 instructions long, else a
    `jge` that falls through to a `ja` to it."""
    from sandlock import _bpf as B
    if len(ranges) == 1:
        lo, _, rule = ranges[0]
        if isinstance(rule, str):
            prog.append(B.ret(_filter._RET[rule]))
        else:
            prog.append(B.ja(f"block_{lo}"))
            blocks.append(B.label(f"block_{lo}"))
            blocks.extend(_filter._block(rule, f"block_{lo}"))
        return
    mid = len(ranges) // 2
    right = f"ge_{ranges[mid][0]}"
    left: list = []
    _labelled_tree(ranges[:mid], left, blocks)
    if sum(isinstance(insn, B.Insn) for insn in left) <= 255:
        prog.append(B.jge(ranges[mid][0], jt=right, jf=None))
    else:
        prog += [B.jge(ranges[mid][0], jt=None, jf=1), B.ja(right)]
    prog.extend(left)
    prog.append(B.label(right))
    _labelled_tree(ranges[mid:], prog, blocks)


@pytest.mark.parametrize("arch", ARCHES)
def test_the_search_tree_s_numbered_jumps_land_where_labels_would(arch, monkeypatch):
    """_tree jumps over a left half by its length worked out from its count of ranges, a
    number (README "Start-up"): the programs are the bytes of the labelled tree for several
    policies and ABIs."""
    built = []
    for kwargs in ({}, {"net_allow": ["127.0.0.1:80"]}, {"random_seed": 3, "time_start": "2000-01-01"},
                   {"max_processes": 5}, {"extra_deny_syscalls": ["mount", "uname", "getppid"]}, {"num_cpus": 2}):
        policy = _policy.make_policy(**kwargs)
        for abi in (1, 3, 5, 6, 7):
            rules = _filter.rules_for(arch, _table.traps_for(policy, abi, arch), policy.extra_deny_syscalls,
                                      _table.extra_denials(abi), _table.argument_rules(policy))
            built.append((rules, _filter.build(arch, rules)))
    monkeypatch.setattr(_filter, "_tree", _labelled_tree)
    for rules, program in built:
        assert _filter.build(arch, rules) == program
    assert len({program for _, program in built}) > 5  # the policies made different programs


def test_a_left_half_longer_than_a_conditional_jump_reaches_is_jumped_over_by_ja(monkeypatch):
    """Ranges enough that the first left halves pass 255 instructions (no policy has that
    many yet): every number still gets its rule, and the bytes are the labelled tree's."""
    rules = {nr: "notify" if nr % 3 == 0 else "allow" if nr % 3 == 1 else "eperm" for nr in range(1200)}
    program = _filter.build("x86_64", rules)
    arch = S.AUDIT_ARCH["x86_64"]
    want = {"notify": ("USER_NOTIF", 0), "allow": ("ALLOW", 0), "eperm": ("ERRNO", errno.EPERM)}
    got = [action(run(program, nr, arch)) for nr in range(1210)]
    assert got == [want[rules[nr]] for nr in range(1200)] + [("ERRNO", errno.ENOSYS)] * 10
    assert len(program) // 8 < 3 * 1200   # the nodes near the leaves are one instruction each
    monkeypatch.setattr(_filter, "_tree", _labelled_tree)
    assert _filter.build("x86_64", rules) == program


def test_ranges_merge_equal_plain_rules_only():
    """Contiguous numbers with one plain rule are one range; a rule decided on arguments is
    never merged, gaps are ENOSYS, and the last range runs to the top of the numbers."""
    tests = ([], "allow")
    rules = {0: "allow", 1: "allow", 3: "enosys", 4: tests, 5: tests, 6: "eperm", 8: "eperm"}
    assert _filter._ranges(rules) == [(0, 1, "allow"), (2, 3, "enosys"), (4, 4, tests), (5, 5, tests),
                                      (6, 6, "eperm"), (7, 7, "enosys"), (8, 8, "eperm"),
                                      (9, 0xFFFFFFFF, "enosys")]


def test_no_syscall_is_in_two_classes():
    classes = [_filter.DENY, _filter.ENOSYS, _filter.ALLOW, set(_filter.ARGUMENT_RULES)]
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            assert not (set(a) & set(b))


def test_the_spec_deny_list_is_refused_with_eperm(default):
    arch, code = default
    for name in ("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf", "ptrace",
                 "process_vm_readv", "io_uring_setup", "keyctl", "open_by_handle_at", "init_module",
                 "perf_event_open", "userfaultfd", "fsopen", "move_mount", "kexec_load", "reboot"):
        if name in _syscalls.table(arch):
            assert verdict(code, arch, name) == ("ERRNO", errno.EPERM), name


def test_a_wrong_architecture_is_killed(default):
    arch, code = default
    assert action(run(code, 1, S.AUDIT_ARCH_I386, [0] * 6)) == ("KILL_PROCESS", 0)


def test_x32_syscall_numbers_are_refused():
    code = program("x86_64")
    assert verdict(code, "x86_64", "getpid", nr=39 | 0x40000000) == ("ERRNO", errno.EPERM)


def test_numbers_the_table_does_not_know_fail_with_enosys(default):
    arch, code = default
    assert verdict(code, arch, "x", nr=470) == ("ERRNO", errno.ENOSYS)
    assert verdict(code, arch, "x", nr=100000) == ("ERRNO", errno.ENOSYS)
    assert verdict(code, arch, "clone3") == ("ERRNO", errno.ENOSYS)


def test_ordinary_syscalls_are_allowed_on_the_number_alone(default):
    arch, code = default
    for name in ("read", "write", "getppid", "mmap", "exit_group", "futex", "close"):
        assert verdict(code, arch, name) == ("ALLOW", 0), name


def test_stat_family_is_notified_under_the_default_policy(default):
    arch, code = default
    for name in ("newfstatat", "statx", "readlinkat", "faccessat2", "fchmodat", "fchownat", "connect"):
        assert verdict(code, arch, name) == ("USER_NOTIF", 0), name


def test_every_open_and_exec_is_notified_under_the_default_policy(default):
    """Device nodes are decided on the object opened (tests/security/test_devices.py) and the
    command's Landlock domain grants nothing in /proc: the supervisor opens both (README)."""
    arch, code = default
    assert verdict(code, arch, "openat", -100, 0x1000, os.O_RDONLY) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "openat", -100, 0x1000, os.O_PATH) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "execve") == ("USER_NOTIF", 0)
    assert verdict(code, arch, "execveat") == ("USER_NOTIF", 0)


def test_openat_is_always_notified_with_a_deny_rule(tmp_path):
    (tmp_path / "secret").write_text("x")
    code = program("x86_64", fs_denied=[str(tmp_path / "secret")])
    assert verdict(code, "x86_64", "openat", -100, 0x1000, os.O_RDONLY) == ("USER_NOTIF", 0)
    assert verdict(code, "x86_64", "execve") == ("USER_NOTIF", 0)


def test_o_trunc_opens_are_notified_below_landlock_abi_3():
    code = program("x86_64", abi=2)
    assert verdict(code, "x86_64", "openat", -100, 0x1000, os.O_WRONLY | os.O_TRUNC) == ("USER_NOTIF", 0)
    assert verdict(code, "x86_64", "truncate") == ("USER_NOTIF", 0)
    assert verdict(code, "x86_64", "openat", -100, 0x1000, os.O_WRONLY) == ("USER_NOTIF", 0)


def test_signals_are_left_to_landlock_scopes_from_abi_6_and_trapped_below():
    assert verdict(program("x86_64", abi=6), "x86_64", "kill", 1, 9) == ("ALLOW", 0)
    old = program("x86_64", abi=5)
    assert verdict(old, "x86_64", "kill", 1, 9) == ("USER_NOTIF", 0)
    assert verdict(old, "x86_64", "setsid") == ("ERRNO", errno.EPERM)


def test_clone_with_namespace_flags_is_refused(default):
    arch, code = default
    for flag in (0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x08000000, 0x04000000, 0x02000000):
        assert verdict(code, arch, "clone", flag | 17) == ("ERRNO", errno.EPERM), hex(flag)
    assert verdict(code, arch, "clone", 17) == ("ALLOW", 0)


def test_max_processes_notifies_forks_but_not_threads():
    code = program("x86_64", max_processes=5)
    assert verdict(code, "x86_64", "clone", 17) == ("USER_NOTIF", 0)
    assert verdict(code, "x86_64", "clone", 0x3D0F00) == ("ALLOW", 0)  # pthread_create's flags
    assert verdict(code, "x86_64", "fork") == ("USER_NOTIF", 0)
    assert verdict(code, "x86_64", "clone", 0x10000000 | 17) == ("ERRNO", errno.EPERM)


def test_ioctl_tiocsti_and_tioclinux_are_refused_on_the_low_32_bits(default):
    arch, code = default
    assert verdict(code, arch, "ioctl", 0, termios.TIOCSTI) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "ioctl", 0, (1 << 32) | termios.TIOCSTI) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "ioctl", 0, termios.TIOCLINUX) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "ioctl", 0, termios.TCGETS) == ("ALLOW", 0)


def test_prctl_options_that_reach_out_are_refused(default):
    arch, code = default
    for option in (4, 28, 35, 0x59616D61):
        assert verdict(code, arch, "prctl", option) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "prctl", 15) == ("ALLOW", 0)  # PR_SET_NAME


def test_raw_packet_and_netlink_sockets_but_route_are_refused(default):
    arch, code = default
    assert verdict(code, arch, "socket", 2, 3, 0) == ("ERRNO", errno.EPERM)      # AF_INET SOCK_RAW
    assert verdict(code, arch, "socket", 17, 2, 0) == ("ERRNO", errno.EPERM)     # AF_PACKET
    assert verdict(code, arch, "socket", 16, 3, 4) == ("ERRNO", errno.EPERM)     # NETLINK_SOCK_DIAG: "The deny list"
    for protocol in (9, 15, 16, 2, 0x100):  # AUDIT KOBJECT_UEVENT GENERIC USERSOCK, 0 in the low byte
        assert verdict(code, arch, "socket", 16, 3, protocol) == ("ERRNO", errno.EPROTONOSUPPORT), protocol
    assert verdict(code, arch, "socket", 16, 3, 0) == ("USER_NOTIF", 0)          # NETLINK_ROUTE: emulated
    assert verdict(code, arch, "socket", 16, 2 | 0x80000, 0) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "socket", 2, 1 | 0x80000, 0) == ("ALLOW", 0)      # TCP, CLOEXEC


def test_a_nested_seccomp_listener_is_refused(default):
    arch, code = default
    assert verdict(code, arch, "seccomp", 1, 8) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "seccomp", 1, 0) == ("ALLOW", 0)
    assert verdict(code, arch, "seccomp", 2, 8) == ("ALLOW", 0)


def test_personality_allows_only_the_default_persona(default):
    arch, code = default
    assert verdict(code, arch, "personality", 0xFFFFFFFF) == ("ALLOW", 0)
    assert verdict(code, arch, "personality", 0) == ("ALLOW", 0)
    assert verdict(code, arch, "personality", 0x0400000) == ("ERRNO", errno.EPERM)  # READ_IMPLIES_EXEC


def test_other_process_targets_are_notified_and_self_is_not(default):
    arch, code = default
    assert verdict(code, arch, "prlimit64", 0) == ("ALLOW", 0)
    assert verdict(code, arch, "prlimit64", 1) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "setpriority", 0, 0, 10) == ("ALLOW", 0)
    assert verdict(code, arch, "setpriority", 2, 0, 10) == ("USER_NOTIF", 0)   # PRIO_USER


def test_user_denied_syscalls_are_refused():
    code = program("x86_64", extra_deny_syscalls=["getppid"])
    assert verdict(code, "x86_64", "getppid") == ("ERRNO", errno.EPERM)


def test_the_program_fits_the_kernel_limit_and_every_trap_has_a_handler(default):
    arch, code = default
    assert len(code) // 8 <= 4096
    for policy in (_policy.make_policy(max_processes=3),
                   _policy.make_policy(random_seed=1, time_start="2000-01-01", deterministic_dirs=True)):
        for name in _table.traps_for(policy, 5, arch):
            assert _table.row(name) is not None


def test_inode_flag_ioctls_are_refused(default):
    """chattr works on a read-only fd and Landlock does not see it."""
    arch, code = default
    for request in (0x40086602, 0x40046602, 0x40087602, 0x40047602, 0x401C5820):
        assert verdict(code, arch, "ioctl", 3, request) == ("ERRNO", errno.EPERM), hex(request)
    assert verdict(code, arch, "ioctl", 3, 0x80086601) == ("ALLOW", 0)  # FS_IOC_GETFLAGS


def test_sendto_is_notified_only_with_a_destination_and_sendmsg_always(default):
    arch, code = default
    assert verdict(code, arch, "sendto", 3, 0x1000, 5, 0, 0, 0) == ("ALLOW", 0)
    assert verdict(code, arch, "sendto", 3, 0x1000, 5, 0, 0x7FFF0000, 16) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "sendto", 3, 0x1000, 5, 0, 1 << 40, 16) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "sendmsg", 3, 0x1000, 0) == ("USER_NOTIF", 0)
    assert verdict(code, arch, "sendmmsg", 3, 0x1000, 1, 0) == ("USER_NOTIF", 0)


def test_sysv_ipc_and_message_queues_are_refused(default):
    """Found by number or name, not by path: Landlock cannot keep them inside."""
    arch, code = default
    for name in ("shmget", "shmat", "shmctl", "msgget", "semget", "semop", "mq_open", "mq_unlink"):
        assert verdict(code, arch, name) == ("ERRNO", errno.EPERM), name


# --- kernel pools and locks (README "Locks and kernel pools") ------------------------------------------

F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 1, 2, 3, 4, 1030
F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 5, 6, 7, 36, 37, 38
F_SETLEASE, F_GETLEASE, F_RDLCK, F_WRLCK, F_UNLCK = 1024, 1025, 0, 1, 2


def test_fcntl_lock_commands_are_notified_and_every_other_command_is_allowed(default):
    arch, code = default
    for cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, 12, 13, 14):
        assert verdict(code, arch, "fcntl", 3, cmd, 0x7000) == ("USER_NOTIF", 0), cmd
        # the kernel reads cmd as an unsigned int: the upper half does not hide it
        assert verdict(code, arch, "fcntl", 3, cmd | 1 << 32, 0x7000) == ("USER_NOTIF", 0), cmd
    for cmd in (F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC, F_GETLEASE):
        assert verdict(code, arch, "fcntl", 3, cmd, 1) == ("ALLOW", 0), cmd


def test_leases_are_refused_with_eacces_but_dropping_one_is_allowed(default):
    arch, code = default
    for kind in (F_RDLCK, F_WRLCK, 7, F_RDLCK | 1 << 32):
        assert verdict(code, arch, "fcntl", 3, F_SETLEASE, kind) == ("ERRNO", errno.EACCES), kind
    assert verdict(code, arch, "fcntl", 3, F_SETLEASE, F_UNLCK) == ("ALLOW", 0)


def test_flock_is_notified_unless_it_unlocks(default):
    arch, code = default
    LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
    for op in (LOCK_SH, LOCK_EX, LOCK_SH | LOCK_NB, LOCK_EX | LOCK_NB, 0, 3, 32 | LOCK_SH):
        assert verdict(code, arch, "flock", 3, op) == ("USER_NOTIF", 0), op
    assert verdict(code, arch, "flock", 3, LOCK_UN) == ("ALLOW", 0)
    assert verdict(code, arch, "flock", 3, LOCK_UN | LOCK_NB) == ("ALLOW", 0)


def test_io_setup_gets_enosys_and_memfd_secret_and_sysfs_get_eperm(default):
    arch, code = default
    assert verdict(code, arch, "io_setup", 60000, 0x7000) == ("ERRNO", errno.ENOSYS)
    assert verdict(code, arch, "memfd_secret", 0) == ("ERRNO", errno.EPERM)
    if "sysfs" in _syscalls.table(arch):
        assert verdict(code, arch, "sysfs", 3) == ("ERRNO", errno.EPERM)
    for name in ("io_destroy", "io_submit", "io_getevents"):  # harmless without a context
        assert verdict(code, arch, name) == ("ALLOW", 0), name


def test_sock_packet_sockets_of_any_family_are_refused(default):
    arch, code = default
    SOCK_PACKET, SOCK_CLOEXEC = 10, 0o2000000
    for family in (2, 10, 17, 1):
        assert verdict(code, arch, "socket", family, SOCK_PACKET, 0x300) == ("ERRNO", errno.EPERM), family
        assert verdict(code, arch, "socket", family, SOCK_PACKET | SOCK_CLOEXEC, 0) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "socket", 2, 1, 0) == ("ALLOW", 0)  # SOCK_STREAM
    assert verdict(code, arch, "socket", 1, 2 | SOCK_CLOEXEC, 0) == ("ALLOW", 0)  # unix SOCK_DGRAM


SOCK_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000


@pytest.mark.parametrize("arch", ARCHES)
def test_ip_sockets_follow_the_network_policy(arch):
    none, udp, icmp = (program(arch), program(arch, net_allow=["udp://192.0.2.1:53"]),
                       program(arch, net_allow=["icmp://192.0.2.1"]))
    EACCES, OK = ("ERRNO", errno.EACCES), ("ALLOW", 0)
    for family in (2, 10):
        for code in (none, udp, icmp):
            for proto in (0, 6):                                     # TCP: connect decides
                assert verdict(code, arch, "socket", family, 1 | SOCK_NONBLOCK_CLOEXEC, proto) == OK
            assert verdict(code, arch, "socket", family, 1, 262) == ("ERRNO", errno.EPROTONOSUPPORT)  # MPTCP
            assert verdict(code, arch, "socket", family, 1, 132) == ("ERRNO", errno.EPROTONOSUPPORT)  # SCTP
            assert verdict(code, arch, "socket", family, 5, 132) == ("ERRNO", errno.EPROTONOSUPPORT)
            assert verdict(code, arch, "socket", family, 2, 136) == ("ERRNO", errno.EPROTONOSUPPORT)  # UDP-Lite
            assert verdict(code, arch, "socket", family, 6, 33) == ("ERRNO", errno.EPROTONOSUPPORT)   # DCCP
            assert verdict(code, arch, "socket", family, 3, 1) == ("ERRNO", errno.EPERM)              # raw
        for proto in (0, 17):
            assert verdict(none, arch, "socket", family, 2, proto) == EACCES
            assert verdict(icmp, arch, "socket", family, 2 | SOCK_NONBLOCK_CLOEXEC, proto) == EACCES
            assert verdict(udp, arch, "socket", family, 2 | SOCK_NONBLOCK_CLOEXEC, proto) == OK
        for proto in (1, 58):
            assert verdict(none, arch, "socket", family, 2, proto) == EACCES
            assert verdict(udp, arch, "socket", family, 2, proto) == EACCES
            assert verdict(icmp, arch, "socket", family, 2, proto) == OK
    for code in (none, udp, icmp):
        for family in (40, 43, 31, 5, 0, 46, (1 << 32) | 40):    # VSOCK, SMC, BLUETOOTH, APPLETALK, ...
            assert verdict(code, arch, "socket", family, 1, 0) == ("ERRNO", errno.EAFNOSUPPORT), family
        assert verdict(code, arch, "socket", 17, 3, 0x300) == ("ERRNO", errno.EPERM)  # AF_PACKET
        assert verdict(code, arch, "socket", 1, 1, 0) == OK
        assert verdict(code, arch, "socket", 16, 3, 0) == ("USER_NOTIF", 0)  # NETLINK_ROUTE: emulated (_netlink)
        assert verdict(code, arch, "socket", 16, 3, 4) == ("ERRNO", errno.EPERM)  # NETLINK_SOCK_DIAG: "The deny list"
        assert verdict(code, arch, "socket", 16, 3, 9) == ("ERRNO", errno.EPROTONOSUPPORT)  # NETLINK_AUDIT
    assert verdict(program(arch, net_allow_bind=["udp://5353"]), arch, "socket", 2, 2, 0) == OK
    assert verdict(program(arch, net_deny=["10.0.0.0/8"]), arch, "socket", 2, 2, 1) == OK


def test_source_routes_and_routing_headers_cannot_be_set(default):
    arch, code = default
    assert verdict(code, arch, "setsockopt", 3, 0, 4) == ("ERRNO", errno.EPERM)     # IP_OPTIONS
    for optname in (57, 5, 6):                                                     # IPV6_RTHDR, 2292 spellings
        assert verdict(code, arch, "setsockopt", 3, 41, optname) == ("ERRNO", errno.EPERM)
    assert verdict(code, arch, "setsockopt", 3, 0, 1) == ("ALLOW", 0)              # IP_TOS
    assert verdict(code, arch, "setsockopt", 3, 41, 26) == ("ALLOW", 0)            # IPV6_V6ONLY
    assert verdict(code, arch, "setsockopt", 3, 1, 4) == ("ALLOW", 0)              # SO_REUSEADDR (level 1, 4)


def test_pidfd_open_inotify_init_bind_and_socket_names_are_notified(default):
    arch, code = default
    for name in ("pidfd_open", "inotify_init1", "inotify_init", "bind", "listen", "getsockname", "getpeername"):
        if name in _syscalls.table(arch):
            assert verdict(code, arch, name, 1, 0) == ("USER_NOTIF", 0), name


def test_interface_ioctls_are_notified_only_when_the_policy_allows_no_network(default):
    arch, code = default
    for request in (0x8912, 0x8933, 0x8927, 0x8954, 0x89F0, 0x8B01):  # IFCONF INDEX HWADDR GARP DEVPRIVATE GIWNAME
        assert verdict(code, arch, "ioctl", 3, request) == ("USER_NOTIF", 0), hex(request)
    for request in (0x8906, 0x541B, 0x5401):  # SIOCGSTAMP, FIONREAD, TCGETS: not trapped
        assert verdict(code, arch, "ioctl", 3, request) == ("ALLOW", 0), hex(request)
    assert verdict(code, arch, "ioctl", 0, termios.TIOCSTI) == ("ERRNO", errno.EPERM)
    allowed = program(arch, net_allow=["tcp://127.0.0.1:1"])
    assert verdict(allowed, arch, "ioctl", 3, 0x8912) == ("ALLOW", 0)
@pytest.mark.parametrize("arch", ARCHES)
def test_short_sends_without_address_are_notified_only_when_dns_is_policed(arch):
    """A hostname rule polices DNS (_dns): send() of < 512 bytes with MSG_NOSIGNAL and no
    address is notified (glibc's query on a socket "connected" to a resolver); others never are."""
    NOTIFY, OK = ("USER_NOTIF", 0), ("ALLOW", 0)
    named, literal, denying = (program(arch, net_allow=["api.example.test:443"]),
                               program(arch, net_allow=["tcp://192.0.2.1:443"]),
                               program(arch, net_deny=["10.0.0.0/8"]))
    NOSIGNAL = 0x4000  # what glibc's resolver passes to send()
    for size in (0, 40, 511):
        assert verdict(named, arch, "sendto", 3, 0x1000, size, NOSIGNAL, 0, 0) == NOTIFY, size
        assert verdict(named, arch, "sendto", 3, 0x1000, size, 0, 0, 0) == OK, size
        assert verdict(named, arch, "sendto", 3, 0x1000, size, NOSIGNAL | 0x40, 0, 0) == OK, size
        assert verdict(literal, arch, "sendto", 3, 0x1000, size, NOSIGNAL, 0, 0) == OK
        assert verdict(denying, arch, "sendto", 3, 0x1000, size, NOSIGNAL, 0, 0) == OK
    for size in (512, 1 << 20, (1 << 32) | 40):
        assert verdict(named, arch, "sendto", 3, 0x1000, size, NOSIGNAL, 0, 0) == OK, size
    for code in (named, literal, denying):  # with an address: always
        assert verdict(code, arch, "sendto", 3, 0x1000, 1 << 20, 0, 0x2000, 16) == NOTIFY
    # UDP_CORK (SOL_UDP) would let untrapped writes join a policed query's datagram
    assert verdict(named, arch, "setsockopt", 3, 17, 1, 0x1000, 4) == ("ERRNO", errno.EPERM)
    assert verdict(named, arch, "setsockopt", 3, 17, 103, 0x1000, 4) == OK  # UDP_SEGMENT
    assert verdict(literal, arch, "setsockopt", 3, 17, 1, 0x1000, 4) == OK


def test_every_syscall_allowed_on_its_number_loads_nothing_but_the_number_and_arch(default):
    """What the kernel's seccomp action cache (Linux 5.11) can learn: such a syscall (read,
    write, mmap, futex, ...) never runs the filter, it costs the seccomp entry alone
    (bench/bench_untrapped.py)."""
    arch, code = default
    table = _syscalls.table(arch)
    pol = _policy.make_policy()
    rules = _filter.rules_for(arch, _table.traps_for(pol, 7, arch), pol.extra_deny_syscalls,
                              _table.extra_denials(7), _table.argument_rules(pol))
    allowed = [name for name, number in table.items() if rules[number] == "allow"]
    assert {"read", "write", "mmap", "munmap", "futex", "getpid", "close", "exit_group"} <= set(allowed)
    for name in allowed:
        path = trace(code, table[name], S.AUDIT_ARCH[arch], [0xFFFFFFFF] * 6)
        assert set(path.loads) <= {S.SECCOMP_DATA_NR, S.SECCOMP_DATA_ARCH}, name


def test_fcntl_and_ioctl_decide_their_frequent_commands_in_few_instructions(default):
    """They are decided on their arguments, so they run the filter every time: tested before
    the search over the numbers, their commands found by a search (35 and 38 instructions
    before)."""
    arch, code = default
    table, audit = _syscalls.table(arch), S.AUDIT_ARCH[arch]
    for name, command, most in (("fcntl", 3, 17), ("fcntl", 1, 17), ("ioctl", termios.TCGETS, 23),
                                ("ioctl", termios.FIONREAD, 23)):  # F_GETFL, F_GETFD
        path = trace(code, table[name], audit, [0, command])
        assert action(path.ret) == ("ALLOW", 0) and path.steps <= most, (name, command, path.steps)


def _linear(tests, default, word):
    """First match wins, for "eq" tests on the low words of the first three arguments."""
    for t in tests:
        if word[t.arg] == t.k and (t.also is None or word[t.also.arg] == t.also.k):
            return t.action
    return default


@pytest.mark.parametrize("tests", [
    # a run the block searches, actions mixed, values unordered and at the ends of the range
    [_filter.Test(1, "eq", k, a) for k, a in ((0x5412, "eperm"), (7, "notify"), (0, "eacces"), (0xFFFFFFFF, "eperm"),
                                              (5, "notify"), (1 << 31, "notify"), (6, "eperm"), (100, "notify"),
                                              (99, "eacces"))],
    # too short a run: tested one after the other
    [_filter.Test(1, "eq", k, "eperm") for k in (3, 1, 2)],
    # the same value twice (the second with an `also`): no search, first match wins
    [_filter.Test(1, "eq", 5, "eperm", also=_filter.Test(2, "eq", 1, "")), _filter.Test(1, "eq", 5, "eacces"),
     _filter.Test(1, "eq", 6, "notify"), _filter.Test(1, "eq", 7, "notify"), _filter.Test(1, "eq", 8, "notify")],
    # a search between tests it cannot include
    [_filter.Test(1, "eq", 9, "eacces", also=_filter.Test(2, "eq", 2, ""))]
    + [_filter.Test(1, "eq", k, "notify") for k in (9, 10, 11, 12, 13)] + [_filter.Test(2, "eq", 9, "eperm")],
])
def test_a_block_decides_every_value_as_its_tests_in_order_would(tests):
    arch = "x86_64"
    nr = _syscalls.table(arch)["fcntl"]  # one of HOT: reached both before and through the search
    for number in (nr, nr + 1):
        code = _filter.build(arch, {number: (tests, "allow"), 400: "allow"})
        values = {0, 1, 2, 0xFFFFFFFF} | {t.k + d for t in tests for d in (-1, 0, 1) if 0 <= t.k + d <= 0xFFFFFFFF}
        for value in values:
            for third in (0, 1, 2, 9):
                word = [0, value, third]
                got = action(run(code, number, S.AUDIT_ARCH[arch], word))
                want = _filter._RET[_linear(tests, "allow", word)]
                assert got == action(want), (number, value, third)
