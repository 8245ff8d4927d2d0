"""The emulated root, `--root DIR`: paths.  No spelling of a path reaches the host outside the
root; every path syscall behaves as in a real root; no-follow calls act on the link; the
virtual cwd; listings; unix sockets in the guest tree.  Fixtures and the idea of these
tests: tests/rootcase.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict

import rootfs
from rootcase import SECRET, PY, NR, show, in_root, assert_no_host_path, guest_file, python_version_name
from rootcase import deb_shared, deb, busybox_shared, musl, bb, work, canary  # noqa: F401  (fixtures)


# --- 2. confinement of every path spelling ----------------------------------------------------------

SPELLINGS_CODE = r'''
import errno, os, sys
p = sys.argv[1]           # host path of the canary
good = "/etc/debian_version"
os.chdir("/usr/lib")
paths = {
    "absolute": p, "relative": "../../.." + p, "dotdot": "/../../../.." + p, "dot": "/.//." + p,
    "proc_root": "/proc/self/root" + p, "proc_cwd": "/proc/self/cwd/../../../.." + p,
    "proc_pid_root": "/proc/%d/root%s" % (os.getpid(), p),
    "proc_thread_root": "/proc/thread-self/root" + p,
    "proc_task_cwd": "/proc/self/task/%d/cwd/../../.." % os.getpid() + p,
    "good_dotdot": "/../../../.." + good, "good_relative": "../../../../.." + good,
    "good_dot": "/.//./etc/./debian_version",
    "good_proc_root": "/proc/self/root" + good, "good_proc_cwd": "/proc/self/cwd/../.." + good,
    "good_proc_pid_root": "/proc/%d/root%s" % (os.getpid(), good),
    "good_proc_thread_root": "/proc/thread-self/root" + good,
    "good_proc_task_cwd": "/proc/%d/task/%d/cwd/../.." % (os.getpid(), os.getpid()) + good,
}
root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
lib_fd = os.open("/usr/lib", os.O_RDONLY | os.O_DIRECTORY)
dirfd = {"dirfd_root": (root_fd, p.lstrip("/")), "dirfd_dotdot": (lib_fd, "../../../.." + p),
         "good_dirfd_root": (root_fd, good.lstrip("/")), "good_dirfd_dotdot": (lib_fd, "../.." + good)}

def result(fn):
    try:
        return "READ " + fn().strip()
    except OSError as e:
        return errno.errorcode[e.errno]

def read_at(fd, path):
    f = os.open(path, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 200).decode()
    finally:
        os.close(f)

for name, path in paths.items():
    print(name, "open", result(lambda: open(path).read()))
    print(name, "stat", result(lambda: str(os.stat(path).st_size)))
for name, (fd, path) in dirfd.items():
    print(name, "open", result(lambda: read_at(fd, path)))
    print(name, "stat", result(lambda: str(os.stat(path, dir_fd=fd).st_size)))
print("parent listdir", result(lambda: " ".join(os.listdir(os.path.dirname(p)))))
print("canary access", os.access(p, os.F_OK))
'''


def test_no_path_spelling_reaches_a_host_file_outside_the_root(who, deb: Path, canary: Path) -> None:
    r = in_root(who, deb, [PY, "-c", SPELLINGS_CODE, str(canary)])
    assert r.returncode == 0, show(r)
    assert SECRET not in r.stdout + r.stderr, show(r)
    version = guest_file(deb, "/etc/debian_version").strip()
    size = (deb / "etc/debian_version").stat().st_size
    lines = dict((" ".join(line.split()[:2]), " ".join(line.split()[2:])) for line in r.stdout.splitlines()
                 if len(line.split()) >= 3)
    for name in ("absolute", "relative", "dotdot", "dot", "proc_root", "proc_cwd", "proc_pid_root", "proc_thread_root",
                 "proc_task_cwd", "dirfd_root", "dirfd_dotdot"):
        for op in ("open", "stat"):
            assert lines.get(f"{name} {op}") in ("ENOENT", "EACCES"), f"{name} {op}:\n{show(r)}"
        assert lines[f"{name} open"] == "ENOENT", f"{name}: the host file exists, but not in the root:\n{show(r)}"
    for name in ("good_dotdot", "good_relative", "good_dot", "good_proc_root", "good_proc_cwd", "good_proc_pid_root",
                 "good_proc_thread_root", "good_proc_task_cwd", "good_dirfd_root", "good_dirfd_dotdot"):
        assert lines.get(f"{name} open") == f"READ {version}", f"{name}:\n{show(r)}"
        assert lines.get(f"{name} stat") == f"READ {size}", f"{name}:\n{show(r)}"
    assert lines.get("parent listdir") == "ENOENT", show(r)
    assert lines.get("canary access") == "False", show(r)
    assert_no_host_path(r, deb)


def test_dot_dot_past_the_root_stays_at_the_root(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "cat /../../../../etc/debian_version; ls /..; echo --; ls /; echo --; "
                                       "cd /usr/lib/../../../.. && pwd && ls"])
    assert r.returncode == 0, show(r)
    listing = "".join(f"{n}\n" for n in sorted(os.listdir(deb)))
    assert r.stdout == (guest_file(deb, "/etc/debian_version") + listing + "--\n" + listing + "--\n/\n" + listing), \
        show(r)


def test_symlinks_inside_the_root_resolve_inside_it(who, bb: Path, canary: Path) -> None:
    os.symlink("/", bb / "abs")
    os.symlink("../../..", bb / "usr/bin/up")  # from /usr/bin: three levels up is past "/"
    os.symlink(str(canary), bb / "direct")  # an absolute host path: inside the root it does not exist
    os.symlink(str(bb / "etc/group"), bb / "selfref")  # the host path of a guest file
    lines = ["cat /abs/etc/group", "cat /usr/bin/up/etc/group", "cat /abs/../../etc/group",
             f"cat /abs{canary}", f"cat /usr/bin/up{canary}", "cat /direct", "cat /selfref",
             f"cat /usr/bin/up/../../..{canary}", "cat /etc/passwd"]
    r = in_root(who, bb, ["sh", "-c", "; ".join(f"{c}; echo rc=$?" for c in lines)])
    group = guest_file(bb, "/etc/group")
    expected = (group + "rc=0\n") * 3 + "rc=1\n" * 5 + guest_file(bb, "/etc/passwd") + "rc=0\n"
    assert r.stdout == expected, show(r)
    assert r.stderr.count("No such file or directory") == 5, show(r)
    assert SECRET not in r.stdout + r.stderr
    assert_no_host_path(r, bb)


# --- 3. coverage of the path syscalls ---------------------------------------------------------------

COVERAGE_CODE = r'''
import ctypes, errno, json, os, platform, socket, stat, sys

NR = json.loads(sys.argv[1])[platform.machine()]
os.umask(0o022)
os.chdir("/work")
out = {}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]

def probe(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))

def put(path, data):
    with open(path, "w") as f:
        f.write(data)
    return True

def get(path):
    with open(path) as f:
        return f.read()

def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc

def renameat2(old, new, flags):
    return check(libc.syscall(ctypes.c_long(NR["renameat2"]), ctypes.c_long(-100), old.encode(),
                              ctypes.c_long(-100), new.encode(), ctypes.c_ulong(flags)))

class open_how(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

def openat2_read(path, resolve=0):
    how = open_how(os.O_RDONLY | os.O_CLOEXEC, 0, resolve)
    fd = check(libc.syscall(ctypes.c_long(NR["openat2"]), ctypes.c_long(-100), path.encode(),
                            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))
    try:
        return os.read(fd, 200).decode()
    finally:
        os.close(fd)

def fstat_kind(fd):
    m = os.stat(fd).st_mode  # fstat: newfstatat(fd, "", AT_EMPTY_PATH)
    return "fifo" if stat.S_ISFIFO(m) else "sock" if stat.S_ISSOCK(m) else "reg" if stat.S_ISREG(m) else oct(m)

def fchdir_to(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fchdir(fd)
    os.close(fd)
    here = os.getcwd()
    os.chdir("/work")
    return here

def inotify(path):
    fd = check(libc.inotify_init1(os.O_CLOEXEC))
    try:
        return check(libc.inotify_add_watch(fd, path.encode(), 0x100)) >= 1  # IN_CREATE
    finally:
        os.close(fd)

def xattr():
    os.setxattr("b", "user.sandlock", b"v")
    names = [n for n in os.listxattr("b") if n.startswith("user.")]
    value = os.getxattr("b", "user.sandlock").decode()
    os.removexattr("b", "user.sandlock")
    return "%s %s" % (value, ",".join(names))

# stat, readlink, openat2
probe("stat_size", lambda: os.stat("/etc/debian_version").st_size)
probe("lstat_bin_is_link", lambda: stat.S_ISLNK(os.lstat("/bin").st_mode))
probe("stat_bin_is_dir", lambda: stat.S_ISDIR(os.stat("/bin").st_mode))
probe("stat_missing", lambda: bool(os.stat("/etc/nosuch")))
probe("stat_missing_parent", lambda: bool(os.stat("/nosuch/x")))
probe("stat_through_a_file", lambda: bool(os.stat("/etc/debian_version/x")))
probe("readlink_bin", lambda: os.readlink("/bin"))
probe("readlink_not_a_link", lambda: os.readlink("/etc/debian_version"))
probe("openat2", lambda: openat2_read("/etc/debian_version"))
probe("openat2_beneath_escape", lambda: openat2_read("../etc/debian_version", 0x08))  # RESOLVE_BENEATH
probe("openat2_beneath_absolute", lambda: openat2_read("/etc/debian_version", 0x08))
here = os.getcwd()
os.chdir("/etc")
probe("openat2_in_root_cwd", lambda: openat2_read("/debian_version", 0x10))  # RESOLVE_IN_ROOT: the cwd is "/"
probe("openat2_in_root_cwd_up", lambda: openat2_read("/../../etc/debian_version", 0x10))
os.chdir(here)
# access (faccessat2 with AT_EACCESS through effective_ids)
probe("access_r", lambda: os.access("/etc/debian_version", os.R_OK))
probe("access_w_of_a_read_only_file", lambda: os.access("/etc/debian_version", os.W_OK))
probe("access_x_sh", lambda: os.access("/bin/sh", os.X_OK))
probe("access_x_plain_file", lambda: os.access("/etc/debian_version", os.X_OK))
probe("access_missing", lambda: os.access("/etc/nosuch", os.F_OK))
probe("access_noread_r", lambda: os.access("noread", os.R_OK))
probe("faccessat2_noread_r", lambda: os.access("noread", os.R_OK, effective_ids=True))
probe("faccessat2_noread_w", lambda: os.access("noread", os.W_OK, effective_ids=True))
probe("open_noread", lambda: get("noread") and True)
# create, remove, rename, link
probe("mkdir", lambda: os.mkdir("d", 0o777) or oct(os.stat("d").st_mode & 0o777))
probe("rmdir", lambda: os.mkdir("d2") or os.rmdir("d2") or os.path.exists("d2"))
probe("rmdir_not_empty", lambda: os.rmdir("full") or True)
probe("unlink", lambda: put("u", "u") and (os.unlink("u") or os.path.exists("u")))
probe("unlink_of_a_directory", lambda: os.unlink("d") or True)
probe("rename", lambda: put("a", "A") and (os.rename("a", "b") or get("b")))
probe("open_excl_of_an_existing_file", lambda: os.open("b", os.O_WRONLY | os.O_CREAT | os.O_EXCL) and True)
probe("open_directory_of_a_file", lambda: os.open("b", os.O_RDONLY | os.O_DIRECTORY) and True)
probe("renameat2_noreplace", lambda: put("x", "X") and put("y", "Y") and renameat2("x", "y", 1))
probe("renameat2_exchange", lambda: renameat2("x", "y", 2) == 0 and get("x") + get("y"))
probe("link", lambda: os.link("b", "b_hard") or os.stat("b").st_nlink)
probe("symlink", lambda: os.symlink("/etc/debian_version", "sl") or os.readlink("sl"))
probe("mkfifo", lambda: os.mknod("fifo", stat.S_IFIFO | 0o644) or stat.S_ISFIFO(os.lstat("fifo").st_mode))
# attributes
probe("xattr", xattr)
probe("getxattr_missing", lambda: os.getxattr("b", "user.nosuch") and True)
probe("utime", lambda: os.utime("b", (1000000000, 1000000000)) or os.stat("b").st_mtime_ns // 10**9)
probe("truncate", lambda: put("t", "truncate me") and (os.truncate("t", 3) or get("t")))
probe("statvfs_root", lambda: os.statvfs("/").f_bsize > 0)
probe("statvfs_work", lambda: os.statvfs("/work").f_bsize > 0)
probe("chmod", lambda: os.chmod("b", 0o640) or oct(os.stat("b").st_mode & 0o777))
probe("chown_to_own_ids", lambda: os.chown("b", os.getuid(), os.getgid()) or True)
probe("chown_to_another_uid", lambda: os.chown("b", 4242, -1) or True)
# fd-based and the rest
r, w = os.pipe()
s1, s2 = socket.socketpair()
probe("fstat_pipe", lambda: fstat_kind(r))
probe("fstat_socket", lambda: fstat_kind(s1.fileno()))
probe("fstat_file", lambda: fstat_kind(os.open("/etc/debian_version", os.O_RDONLY)))
probe("fchdir", lambda: fchdir_to("/usr/share"))
probe("inotify_add_watch", lambda: inotify("/etc"))
probe("inotify_add_watch_missing", lambda: inotify("/etc/nosuch"))
print(json.dumps(out, sort_keys=True))
'''


def host_xattr_result(directory: Path) -> str:
    """What setxattr of a user.* attribute gives on the host filesystem under /work."""
    probe = directory / ".xattr-probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.sandlock", b"v")
        return "v user.sandlock"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        probe.unlink()


def test_path_syscalls_behave_as_in_a_real_root(who, deb: Path, work: Path) -> None:
    who.make_file(work / "noread", "no\n", 0o200)
    who.make_file(work / "full" / "x", "x")
    version = guest_file(deb, "/etc/debian_version")
    xattr = host_xattr_result(work)
    r = in_root(who, deb, [PY, "-c", COVERAGE_CODE, json.dumps(NR)], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    expected = {
        "stat_size": len(version.encode()), "lstat_bin_is_link": True, "stat_bin_is_dir": True,
        "stat_missing": "ENOENT", "stat_missing_parent": "ENOENT", "stat_through_a_file": "ENOTDIR",
        "readlink_bin": "usr/bin", "readlink_not_a_link": "EINVAL",
        "openat2": version, "openat2_beneath_escape": "EXDEV", "openat2_beneath_absolute": "EXDEV",
        "openat2_in_root_cwd": version, "openat2_in_root_cwd_up": "ENOENT",
        "access_r": True, "access_w_of_a_read_only_file": False, "access_x_sh": True,
        "access_x_plain_file": False, "access_missing": False,
        # no capabilities in the sandbox, not even for root: mode 0200 is unreadable for both
        "access_noread_r": False, "faccessat2_noread_r": False, "faccessat2_noread_w": True,
        "open_noread": "EACCES",
        "mkdir": "0o755", "rmdir": False, "rmdir_not_empty": "ENOTEMPTY", "unlink": False,
        "unlink_of_a_directory": "EISDIR", "rename": "A", "open_excl_of_an_existing_file": "EEXIST",
        "open_directory_of_a_file": "ENOTDIR", "renameat2_noreplace": "EEXIST", "renameat2_exchange": "YX",
        "link": 2, "symlink": "/etc/debian_version", "mkfifo": True,
        "xattr": xattr, "getxattr_missing": "ENODATA", "utime": 1000000000, "truncate": "tru",
        "statvfs_root": True, "statvfs_work": True, "chmod": "0o640", "chown_to_own_ids": True,
        "chown_to_another_uid": "EPERM",
        "fstat_pipe": "fifo", "fstat_socket": "sock", "fstat_file": "reg", "fchdir": "/usr/share",
        "inotify_add_watch": True, "inotify_add_watch_missing": "ENOENT",
    }
    assert got == expected, show(r)
    # ... and the host directory holds what a real root would have left there
    assert sorted(os.listdir(work)) == ["b", "b_hard", "d", "fifo", "full", "noread", "sl", "t", "x", "y"]
    assert (work / "d").stat().st_mode & 0o7777 == 0o755 and (work / "d").stat().st_uid == who.uid
    st = (work / "b").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_mtime_ns, st.st_nlink) == (0o640, who.uid, 10**18, 2)
    assert (work / "b").read_text() == "A" and (work / "b").stat().st_ino == (work / "b_hard").stat().st_ino
    assert os.readlink(work / "sl") == "/etc/debian_version"  # stored verbatim: a guest path
    assert stat.S_ISFIFO((work / "fifo").lstat().st_mode)
    assert ((work / "x").read_text(), (work / "y").read_text(), (work / "t").read_text()) == ("Y", "X", "tru")
    assert_no_host_path(r, deb, work)


def test_legacy_syscalls_of_a_static_musl_binary_work_inside_the_root(who, bb: Path, musl: Dict[str, Path],
                                                                     scratch: Path) -> None:
    shutil.copy(musl["legacy-static"], bb / "bin/legacy")
    (bb / "bin/legacy").chmod(0o755)
    inside = who.make_dir(bb / "tmp/ld", 0o755)
    r = in_root(who, bb, ["/bin/legacy", "/tmp/ld"], "-w", "/tmp")
    assert r.returncode == 0, show(r)
    got = [line.split() for line in r.stdout.splitlines()]
    assert [line[0] for line in got] == list(rootfs.LEGACY_CALLS), show(r)
    for name, rc, err in got:
        assert err == ("2" if name == "open_enoent" else "0"), f"{name}:\n{show(r)}"
    assert dict((n, rc) for n, rc, _ in got)["getcwd"] == str(len("/tmp/ld") + 1), show(r)  # virtual cwd
    # the same program, bare, on a host directory prints the same (but for getcwd's length)
    bare_dir = scratch / "bare"
    bare_dir.mkdir()
    bare = subprocess.run([str(musl["legacy-static"]), str(bare_dir)], capture_output=True, text=True, timeout=60)
    bare_lines = [line.split() for line in bare.stdout.splitlines()]
    assert [x for x in got if x[0] != "getcwd"] == [x for x in bare_lines if x[0] != "getcwd"], show(r)
    assert sorted(p.name for p in inside.iterdir()) == ["f", "p", "s"]
    assert stat.S_ISFIFO((inside / "p").lstat().st_mode) and os.readlink(inside / "s") == "f"
    assert (inside / "f").stat().st_mode & 0o7777 == 0o600 and (inside / "f").stat().st_uid == who.uid


# --- 4. no-follow calls act on the link -------------------------------------------------------------

NOFOLLOW_CODE = r'''
import os, stat, subprocess
os.chdir("/work")
print("lstat", stat.S_ISLNK(os.lstat("link").st_mode), "stat", stat.S_ISREG(os.stat("link").st_mode))
print("readlink", os.readlink("link"), os.readlink("dirlink"))
print("listdir_nofollow", os.path.islink("dirlink"), sorted(os.listdir("dirlink")))
os.lchown("link", os.getuid(), os.getgid())
print("lchown ok")
os.rename("link", "moved")
print("rename", sorted(os.listdir(".")))
os.unlink("moved")
print("unlink", sorted(os.listdir(".")))
print("rm", subprocess.run(["rm", "dirlink"]).returncode, sorted(os.listdir(".")))
'''


def test_no_follow_calls_act_on_the_link_not_its_target(who, deb: Path, work: Path) -> None:
    who.make_file(work / "target", "T\n")
    who.make_file(work / "dir" / "inner", "I\n")
    os.symlink("target", work / "link")
    os.symlink("dir", work / "dirlink")
    for name in ("link", "dirlink"):
        who.own(work / name)
    r = in_root(who, deb, [PY, "-c", NOFOLLOW_CODE], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [
        "lstat True stat True",
        "readlink target dir",
        "listdir_nofollow True ['inner']",
        "lchown ok",
        "rename ['dir', 'dirlink', 'moved', 'target']",
        "unlink ['dir', 'dirlink', 'target']",
        "rm 0 ['dir', 'target']",
    ], show(r)
    assert (work / "target").read_text() == "T\n" and (work / "dir" / "inner").read_text() == "I\n"
    assert sorted(os.listdir(work)) == ["dir", "target"]


def test_an_absolute_symlink_in_a_mounted_directory_resolves_in_the_guest_root(who, deb: Path, work: Path) -> None:
    # /etc/debian_version differs between the host and the root; the link is resolved as a chroot would
    os.symlink("/etc/debian_version", work / "abs")
    os.symlink("/usr", work / "absdir")
    r = in_root(who, deb, ["sh", "-c", "cat /work/abs; ls /work/absdir/; ln -s /etc/debian_version /work/new; "
                                       "cat /work/new; cd /work/absdir/lib && pwd -P"], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    version = guest_file(deb, "/etc/debian_version")
    usr = "".join(f"{n}\n" for n in sorted(os.listdir(deb / "usr")))
    assert r.stdout == version + usr + version + "/usr/lib\n", show(r)
    assert os.readlink(work / "new") == "/etc/debian_version"


# --- 6. virtual cwd and identity ----------------------------------------------------------------------

def test_pwd_and_getcwd_print_virtual_paths_short_and_long(who, deb: Path, work: Path) -> None:
    parts = [f"{i}-" + "x" * 46 for i in range(6)]  # /work/... is 300 characters long
    long_host = work.joinpath(*parts)
    for i in range(1, len(parts) + 1):
        who.make_dir(work.joinpath(*parts[:i]))
    long_virtual = "/work/" + "/".join(parts)
    assert len(long_virtual) >= 200
    script = ("cd /usr/lib && pwd && /bin/pwd -P; cd /tmp && /bin/pwd -P; cd / && /bin/pwd -P; "
              f"cd {long_virtual} && /bin/pwd -P && python3 -c 'import os; print(os.getcwd())' && "
              "readlink /proc/self/cwd; cd .. && /bin/pwd -P")
    r = in_root(who, deb, ["sh", "-c", script], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/usr/lib", "/usr/lib", "/tmp", "/", long_virtual, long_virtual,
                                     long_virtual, long_virtual.rsplit("/", 1)[0]], show(r)
    assert long_host.is_dir()
    assert_no_host_path(r, deb, work)


IDENTITY_CODE = r'''
import os
fd = os.open("/etc/debian_version", os.O_RDONLY)
sh = os.open("/bin/sh", os.O_RDONLY)
for p in ("/proc/self/cwd", "/proc/self/exe", "/proc/self/fd/%d" % fd, "/proc/self/fd/%d" % sh, "/proc/self/root"):
    print(os.readlink(p))
print(os.getcwd())
print(os.path.realpath("."))
print(os.path.realpath("/proc/self/fd/%d" % fd))
'''


def test_cwd_option_and_proc_self_links_show_virtual_paths(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", IDENTITY_CODE], "--cwd", "/usr/share")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/usr/share", python_version_name(deb), "/etc/debian_version",
                                     "/usr/bin/dash", "/", "/usr/share", "/usr/share",
                                     "/etc/debian_version"], show(r)
    assert_no_host_path(r, deb)
    r = in_root(who, deb, ["sh", "-c", "cat /nosuch; cd /nosuch; ls /etc/nosuch; readlink -f /bin/sh; "
                                       "realpath /usr/lib/../bin/ls"])
    assert r.stdout == "/usr/bin/dash\n/usr/bin/ls\n", show(r)
    assert r.stderr.count("No such file or directory") + r.stderr.count("can't cd to") >= 3, show(r)
    assert_no_host_path(r, deb)


# --- 9. listings ----------------------------------------------------------------------------------------

LISTING_CODE = r'''
import json, os, sys
out = {"many": len(list(os.scandir("/work/many"))),
       "many_names": sorted(e.name for e in os.scandir("/work/many")) == sorted(json.loads(sys.argv[1])),
       "usr_bin": sorted(os.listdir("/usr/bin"))}
# the same fd number, reused for another directory, lists that directory
a = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
etc = sorted(os.listdir(a))
os.close(a)
b = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
out["same_fd"] = a == b
out["etc"] = etc
out["usr"] = sorted(os.listdir(b))
out["by_path"] = [sorted(os.listdir(p)) for p in ("/etc", "/usr", "/")]
print(json.dumps(out))
'''


def test_listings_come_from_the_root_reach_eof_and_never_go_stale(who, deb: Path, work: Path) -> None:
    many = who.make_dir(work / "many")
    names = [f"{i:03d}-" + "n" * 200 for i in range(300)]  # ~70 KiB of entries: several getdents calls
    for n in names:
        (many / n).write_bytes(b"")
    r = in_root(who, deb, [PY, "-c", LISTING_CODE, json.dumps(names)], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    assert (got["many"], got["many_names"]) == (300, True), show(r)
    listing = {p: sorted(os.listdir(deb / p.lstrip("/"))) for p in ("/etc", "/usr", "/usr/bin")}
    assert got["usr_bin"] == listing["/usr/bin"]
    assert got["same_fd"] and got["etc"] == listing["/etc"] and got["usr"] == listing["/usr"], show(r)
    assert got["by_path"][:2] == [listing["/etc"], listing["/usr"]]
    assert set(got["by_path"][2]) - {"work"} == set(os.listdir(deb)), show(r)
    r = in_root(who, deb, ["ls", "-a", "/"])
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == [".", ".."] + sorted(os.listdir(deb)), show(r)


UNIX_SOCKET_CODE = r'''
import os, socket, stat, threading
os.umask(0o027)
server = socket.socket(socket.AF_UNIX)
server.bind("/work/sock")
server.listen()
print("mode", oct(stat.S_IMODE(os.stat("/work/sock").st_mode)), stat.S_ISSOCK(os.stat("/work/sock").st_mode))
print("name", server.getsockname())
def serve():
    conn, _ = server.accept()
    conn.sendall(conn.recv(16).upper())
    conn.close()
threading.Thread(target=serve).start()
os.chdir("/work")
client = socket.socket(socket.AF_UNIX)
client.connect("sock")                       # relative to the virtual cwd
client.sendall(b"ping")
print("reply", client.recv(16), "peer", client.getpeername())
dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dgram.bind("dg")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"datagram", "/work/dg")
print("dgram", dgram.recv(16))
try:
    socket.socket(socket.AF_UNIX).bind("/etc/sock")
except OSError as e:
    print("etc", e.errno)
'''


def test_unix_sockets_with_pathnames_live_in_the_guest_tree(who, deb: Path, work: Path) -> None:
    r = in_root(who, deb, [PY, "-c", UNIX_SOCKET_CODE], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["mode 0o750 True", "name /work/sock", "reply b'PING' peer /work/sock",
                                     "dgram b'datagram'", "etc 13"], show(r)
    assert stat.S_ISSOCK((work / "sock").lstat().st_mode) and stat.S_ISSOCK((work / "dg").lstat().st_mode)
    assert not (deb / "etc/sock").exists()
    assert_no_host_path(r, deb, work)
