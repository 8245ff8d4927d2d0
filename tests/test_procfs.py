"""_procfs: what the sandbox sees of /proc, decided on the kernel's names (no kernel feature needed)."""

import errno
import os

import pytest

from sandlock import _procfs as P

MEMBERS = {100, 101}


def member(pid: int) -> bool:
    return pid in MEMBERS


@pytest.mark.parametrize("name, expected", [
    (b"/proc", (None, b"")),
    (b"/proc/meminfo", (None, b"meminfo")),
    (b"/proc/sys/kernel/random/boot_id", (None, b"sys/kernel/random/boot_id")),
    (b"/proc/100", (100, b"")),
    (b"/proc/100/status", (100, b"status")),
    (b"/proc/100/task/101/mountinfo", (100, b"mountinfo")),
    (b"/proc/100/net/unix", (100, b"net/unix")),
    (b"/proc/100/cmdline", (100, b"cmdline")),
])
def test_classify_names_what_the_sandbox_may_see(name, expected):
    assert P.classify(name, member) == expected


@pytest.mark.parametrize("name", [b"/proc/1", b"/proc/1/cmdline", b"/proc/7/task/7/environ", b"/proc/keys",
                                  b"/proc/key-users", b"/proc/locks", b"/proc/timer_list", b"/proc/slabinfo",
                                  b"/proc/cmdline", b"/proc/100/mountstats", b"/proc/sysvipc", b"/proc/sysvipc/shm"])
def test_other_processes_and_host_wide_files_do_not_exist(name):
    with pytest.raises(OSError) as info:
        P.classify(name, member)
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("path, expected", [
    (b"/proc/self/status", b"/proc/100/status"), (b"/proc//self/./fd/3", b"/proc/100/fd/3"),
    (b"/proc/thread-self/comm", b"/proc/100/task/101/comm"), (b"/proc/net/unix", b"/proc/100/net/unix"),
    (b"/proc/mounts", b"/proc/100/mounts"), (b"/proc/selfish", b"/proc/selfish"),
    (b"/proc/self/../1/cmdline", b"/proc/1/cmdline"), (b"/proc/1/../../etc", b"/proc/../etc"),
    (b"/proc/self/fd/3/../x", b"/proc/100/fd/3/../x"), (b"/proc/self/..", b"/proc"),
    (b"/proc/sys/../1/exe", b"/proc/1/exe"), (b"/proc/meminfo/../1", b"/proc/meminfo/../1"),
])
def test_links_to_the_caller_are_rewritten_to_its_pid(path, expected):
    assert P.rewrite_links(path, 100, 101) == expected


def test_names_inside_a_listing_stand_for_proc():
    top = b"/scratch/cwd/1-1"
    assert P.listing_of(top + b"/.proc12", top) == b"/proc"
    assert P.listing_of(top + b"/.proc12/100/status", top) == b"/proc/100/status"
    assert P.listing_of(top + b"/.procx", top) is None
    assert P.listing_of(b"/elsewhere/.proc1", top) is None


def test_a_listing_holds_only_the_sandboxs_processes_and_no_hidden_file(tmp_path):
    fd = P.make_listing(os.fsencode(tmp_path), 1, [100, 101], 100, 101)
    try:
        names = set(os.listdir(fd))
    finally:
        os.close(fd)
    assert {"100", "101", "self", "meminfo"} <= names
    assert not {n for n in names if n.isdigit()} - {"100", "101"}
    assert not names & {"keys", "key-users", "locks", "timer_list", "slabinfo", "cmdline"}
    assert os.readlink(tmp_path / ".proc1" / "self") == "100"
    for n in range(2, 2 + P.KEEP_LISTINGS):  # older listings are removed: the directory stays bounded
        os.close(P.make_listing(os.fsencode(tmp_path), n, [100], 100, 100))
    assert sorted(os.listdir(tmp_path)) == sorted(".proc%d" % n for n in range(2, 2 + P.KEEP_LISTINGS))


def test_the_mount_table_keeps_only_reachable_mount_points():
    table = (b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
             b"2 1 0:5 / /proc rw - proc proc rw\n"
             b"3 2 0:6 / /proc/sys/fs/binfmt_misc rw - binfmt_misc x rw\n"
             b"4 1 0:7 / /home/a\\040b rw - ext4 /dev/sdb rw\n"
             b"5 1 0:8 / /sys rw - sysfs sysfs rw\n")
    kept = P.filter_mounts(table, 4, lambda p: p in (b"/", b"/home/a b"))
    assert [line.split()[4] for line in kept.splitlines()] == [b"/", b"/proc", b"/home/a\\040b"]


def test_boot_id_is_a_version_4_uuid_and_new_each_time():
    a, b = P.new_boot_id(), P.new_boot_id()
    assert a != b and len(a) == 37 and a[14:15] == b"4" and a.endswith(b"\n")


def test_a_root_s_mount_tables_list_its_own_mounts_after_root_proc_and_dev():
    from types import SimpleNamespace
    points = P.root_mount_points([SimpleNamespace(virt=b"/work", readonly=False),
                                  SimpleNamespace(virt=b"/data", readonly=True)])
    assert [p[1] for p in points] == [b"/", b"/proc", b"/dev", b"/dev/shm", b"/dev/pts", b"/data", b"/work"]
    assert P.mounts_table(points).splitlines()[5] == b"none /data bind ro 0 0"
    assert P.mountinfo_table(points).splitlines()[:2] == [b"1 0 0:1 / / rw - rootfs rootfs rw",
                                                          b"2 1 0:2 / /proc rw,nosuid,nodev,noexec - proc proc "
                                                          b"rw,nosuid,nodev,noexec"]


def test_maps_lines_get_guest_names_and_others_stay(tmp_path):
    lines = [b"55d0-55d1 r--p 00000000 08:01 12 /srv/root/usr/bin/python3\n",
             b"7ffc-7ffd rw-p 00000000 00:00 0                          [stack]\n",
             b"7ffe-7fff r-xp 00000000 00:00 0 "]
    with open(tmp_path / "out", "wb+") as f:
        P.rewrite_maps(lines, f.fileno(), lambda host: host.replace(b"/srv/root", b""))
        f.seek(0)
        assert f.read().splitlines() == [b"55d0-55d1 r--p 00000000 08:01 12 /usr/bin/python3", lines[1].rstrip(),
                                         lines[2]]
