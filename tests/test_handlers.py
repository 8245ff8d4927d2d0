"""Each operation the supervisor performs on behalf of the sandbox, seen from inside it.

A probe program calls every trapped syscall once (Python's os module, and
ctypes for the spellings Python does not use) and prints what it got; the
test asserts the result a user would see: the value, or the errno.
Runs as root and as the unprivileged test user; both must agree.
"""

import json
import os

from conftest import SYSTEM_PYTHON

PROBE = r'''
import os, sys, errno, ctypes, socket, struct, json
W = sys.argv[1]       # writable dir
R = sys.argv[2]       # a readable-only file outside W (e.g. /etc/hostname)
OUT = sys.argv[3]     # a path outside every rule (e.g. /root or /tmp/outside)
res = {}
def t(name, fn):
    try:
        v = fn()
        res[name] = ["ok", v if isinstance(v, (int, str, bool, type(None), list)) else str(v)]
    except OSError as e:
        res[name] = ["err", errno.errorcode.get(e.errno, e.errno)]
libc = ctypes.CDLL(None, use_errno=True)
def raw(name, *args):
    nr = {"openat2": 437, "utime": 132, "utimes": 235, "statfs": 137, "inotify_add_watch": 254}[name]
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if r < 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return r
os.symlink(R, W + "/link_to_r")
open(W + "/f", "w").write("x")
t("stat_r", lambda: os.stat(R).st_size > 0)
t("stat_out", lambda: os.stat(OUT))
t("stat_missing_in_rule", lambda: os.stat(W + "/nope"))
t("lstat_link", lambda: oct(os.lstat(W + "/link_to_r").st_mode)[:4])
t("stat_root", lambda: os.stat("/").st_ino)
t("access_r_R", lambda: os.access(R, os.R_OK))
t("access_r_W", lambda: os.access(R, os.W_OK))
t("access_w_W", lambda: os.access(W + "/f", os.W_OK))
t("access_out", lambda: os.access(OUT, os.F_OK))
t("readlink_link", lambda: os.readlink(W + "/link_to_r"))
t("readlink_notlink", lambda: os.readlink(W + "/f"))
t("readlink_selfexe", lambda: os.readlink("/proc/self/exe"))
t("chdir_out", lambda: os.chdir(OUT))
t("chdir_w", lambda: (os.chdir(W), os.getcwd())[1])
t("relative_stat", lambda: os.stat("f").st_size)
t("chdir_back", lambda: os.chdir("/"))
t("listxattr_r", lambda: os.listxattr(R))
t("setxattr_w", lambda: os.setxattr(W + "/f", "user.k", b"v"))
t("getxattr_w", lambda: os.getxattr(W + "/f", "user.k"))
t("removexattr_w", lambda: os.removexattr(W + "/f", "user.k"))
t("setxattr_r", lambda: os.setxattr(R, "user.k", b"v"))
t("opath_out", lambda: os.open(OUT, os.O_PATH))
t("opath_r", lambda: os.close(os.open(R, os.O_PATH)) is None)
class how(ctypes.Structure): _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
t("openat2_r", lambda: os.read(raw("openat2", -100, ctypes.c_char_p(R.encode()), ctypes.byref(how(0, 0, 0)), 24), 100) != b"")
t("openat2_out", lambda: raw("openat2", -100, ctypes.c_char_p(OUT.encode()), ctypes.byref(how(0, 0, 0)), 24))
t("chmod_w", lambda: (os.chmod(W + "/f", 0o600), oct(os.stat(W + "/f").st_mode & 0o777))[1])
t("chmod_r", lambda: os.chmod(R, 0o777))
t("chown_w", lambda: os.chown(W + "/f", os.getuid(), os.getgid()))
t("chown_r", lambda: os.chown(R, os.getuid(), -1))
t("utime_w", lambda: (os.utime(W + "/f", (1000000, 2000000)), os.stat(W + "/f").st_mtime)[1])
t("utime_r", lambda: os.utime(R, (1, 1)))
t("futimes_w", lambda: (os.utime(os.open(W + "/f", os.O_RDONLY), (5, 6)), os.stat(W + "/f").st_mtime)[1])
t("fchmod_r", lambda: os.fchmod(os.open(R, os.O_RDONLY), 0o777))
t("fchmod_w", lambda: os.fchmod(os.open(W + "/f", os.O_RDONLY), 0o640))
t("utimes_legacy_w", lambda: raw("utimes", ctypes.c_char_p((W + "/f").encode()), None))
t("statfs_r", lambda: os.statvfs(R).f_bsize > 0)
t("statfs_out", lambda: os.statvfs(OUT))
t("fstat_pipe", lambda: os.fstat(os.pipe()[0]).st_mode != 0)
SOCK = socket.socket()
t("fstat_socket", lambda: os.fstat(SOCK.fileno()).st_mode != 0)
t("inotify_r", lambda: raw("inotify_add_watch", os.open("/dev/null", 0) and ctypes.CDLL(None).inotify_init(), ctypes.c_char_p(R.encode()), 2) >= 0)
s = socket.socket(socket.AF_UNIX)
t("connect_unix_out", lambda: s.connect(OUT + "/sock"))
srv = socket.socket(socket.AF_UNIX); srv.bind(W + "/sock"); srv.listen(1)
t("connect_unix_w", lambda: socket.socket(socket.AF_UNIX).connect(W + "/sock"))
t("connect_abstract_self", lambda: (lambda a: (a.bind(b"\0sl-test"), a.listen(1), socket.socket(socket.AF_UNIX).connect(b"\0sl-test")))(socket.socket(socket.AF_UNIX)) and None)
t("connect_tcp_refused", lambda: socket.create_connection(("127.0.0.1", 1), timeout=2))
t("prlimit_init", lambda: __import__("resource").prlimit(1, __import__("resource").RLIMIT_NOFILE))
t("prlimit_self", lambda: __import__("resource").prlimit(0, __import__("resource").RLIMIT_NOFILE)[0] > 0)
t("kill_init", lambda: os.kill(1, 0))
t("kill_parent", lambda: os.kill(os.getppid(), 0))
t("setpriority_user", lambda: os.setpriority(os.PRIO_USER, 0, 1))
t("proc_self_fd", lambda: len(os.listdir("/proc/self/fd")) > 0)
t("stat_proc_self_fd0", lambda: os.stat("/proc/self/fd/0").st_mode != 0)
t("readlink_proc_1_cwd", lambda: os.readlink("/proc/1/cwd"))
t("readlink_proc_parent_exe", lambda: os.readlink("/proc/%d/exe" % os.getppid()))
print(json.dumps(res))
'''

SYSTEM_RO = ["-r", "/usr", "-r", "/lib", "-r", "/lib64", "-r", "/bin", "-r", "/etc", "-r", "/proc"]

EXPECTED = {
    "stat_r": ["ok", True],
    "stat_out": ["err", "EACCES"],
    "stat_missing_in_rule": ["err", "ENOENT"],
    "lstat_link": ["ok", "0o12"],
    "access_r_R": ["ok", True],
    "access_r_W": ["ok", False],
    "access_w_W": ["ok", True],
    "access_out": ["ok", False],
    "readlink_link": ["ok", "/etc/hostname"],
    "readlink_notlink": ["err", "EINVAL"],
    "chdir_out": ["err", "EACCES"],
    "relative_stat": ["ok", 1],
    "setxattr_r": ["err", "EACCES"],
    "opath_out": ["err", "EACCES"],
    "opath_r": ["ok", True],
    "openat2_r": ["ok", True],
    "openat2_out": ["err", "EACCES"],
    "chmod_w": ["ok", "0o600"],
    "chmod_r": ["err", "EACCES"],
    "chown_w": ["ok", None],
    "chown_r": ["err", "EACCES"],
    "utime_w": ["ok", "2000000.0"],
    "utime_r": ["err", "EACCES"],
    "futimes_w": ["ok", "6.0"],
    "fchmod_r": ["err", "EACCES"],
    "fchmod_w": ["ok", None],
    "utimes_legacy_w": ["ok", 0],
    "statfs_r": ["ok", True],
    "statfs_out": ["err", "EACCES"],
    "fstat_pipe": ["ok", True],
    "fstat_socket": ["ok", True],
    "inotify_r": ["ok", True],
    "connect_unix_out": ["err", "ENOENT"],
    "connect_unix_w": ["ok", None],
    "connect_abstract_self": ["ok", None],
    "connect_tcp_refused": ["err", "ECONNREFUSED"],
    "prlimit_init": ["err", "EPERM"],
    "prlimit_self": ["ok", True],
    "kill_init": ["err", "EPERM"],
    "kill_parent": ["err", "EPERM"],
    "setpriority_user": ["err", "EPERM"],
    "proc_self_fd": ["ok", True],
    "stat_proc_self_fd0": ["ok", True],
    "readlink_proc_1_cwd": ["err", "ENOENT"],
    "readlink_proc_parent_exe": ["err", "ENOENT"],
}


DGRAM = r'''
import socket, os, sys, array, json
W, OUT = sys.argv[1], sys.argv[2]
res = {}
def t(name, fn):
    try: res[name] = ["ok", fn()]
    except OSError as e: res[name] = ["err", e.errno]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); srv.bind(W + "/in")
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
t("sendto_w", lambda: c.sendto(b"hello", W + "/in"))
t("recv_w", lambda: srv.recv(100).decode())
t("sendto_out", lambda: c.sendto(b"x", OUT))
t("sendmsg_out", lambda: c.sendmsg([b"x"], [], 0, OUT))
t("sendmsg_w_fds", lambda: c.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))], 0, W + "/in"))
t("recv_fds", lambda: (lambda m: [m[0].decode(), len(m[1])])(socket.recv_fds(srv, 100, 4)))
a, b = socket.socketpair()
t("sendmsg_pair", lambda: a.sendmsg([b"p", b"q"]))
t("recv_pair", lambda: b.recv(10).decode())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t("udp_sendto", lambda: v.sendto(b"udp", u.getsockname()))
t("udp_recv", lambda: u.recv(10).decode())
print(json.dumps(res))
'''


def test_datagrams_reach_only_sockets_under_a_write_rule(who, scratch):
    """sendto/sendmsg name their destination: decided and sent on behalf like connect."""
    import socket
    w = who.make_dir(scratch / "w", 0o755)
    outside = scratch / "outside"
    outside.mkdir()
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(str(outside / "sock"))
    os.chmod(outside / "sock", 0o777)
    probe = scratch / "dgram.py"
    probe.write_text(DGRAM)
    probe.chmod(0o644)
    try:
        r = who.run(SYSTEM_RO + ["-r", str(probe), "-w", str(w), "--net-allow", "udp://127.0.0.1", "--", SYSTEM_PYTHON, str(probe), str(w),
                                 str(outside / "sock")])
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        host.setblocking(False)
        try:
            leaked = host.recv(10)
        except BlockingIOError:
            leaked = None
    finally:
        host.close()
    assert got == {"sendto_w": ["ok", 5], "recv_w": ["ok", "hello"], "sendto_out": ["err", 13],
                   "sendmsg_out": ["err", 13], "sendmsg_w_fds": ["ok", 2], "recv_fds": ["ok", ["fd", 1]],
                   "sendmsg_pair": ["ok", 2], "recv_pair": ["ok", "pq"], "udp_sendto": ["ok", 3],
                   "udp_recv": ["ok", "udp"]}, got
    assert leaked is None


def _probe(who, scratch, env=None):
    w = who.make_dir(scratch / "w", 0o755)
    outside = scratch / "outside"
    outside.mkdir()
    probe = scratch / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    # the TCP connect to a closed port is made on behalf: the kernel's ECONNREFUSED comes back
    result = who.run(SYSTEM_RO + ["-r", str(probe), "-w", str(w), "--net-allow", "tcp://127.0.0.1:1", "--",
                                  SYSTEM_PYTHON, str(probe), str(w), "/etc/hostname", str(outside)], env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_on_behalf_operation_gives_what_landlock_would(who, scratch):
    got = _probe(who, scratch)
    wrong = {k: (got.get(k), v) for k, v in EXPECTED.items() if got.get(k) != v}
    assert not wrong, wrong


def test_on_behalf_operations_agree_on_older_landlock_abis(who, scratch):
    got = _probe(who, scratch, env={"SANDLOCK_TEST_LANDLOCK_ABI": "5"})
    # Without Landlock scopes nobody can tell whose an abstract socket is:
    # refused (README, "Older kernels").
    expected = dict(EXPECTED, connect_abstract_self=["err", "EPERM"])
    wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
    assert not wrong, wrong


def test_host_shared_memory_cannot_be_reached(who, scratch):
    """A segment the host made (SysV IPC, found by its number) is out of reach inside."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0, 4096, 0o1666)  # IPC_PRIVATE, readable and writable by everyone
    assert shmid >= 0
    try:
        code = (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                f"r = libc.shmat({shmid}, None, 0)\nprint(ctypes.c_long(r).value, ctypes.get_errno())\n"
                "print(libc.shmget(0, 4096, 0o1600), ctypes.get_errno())")
        r = who.run(SYSTEM_RO + ["--", SYSTEM_PYTHON, "-c", code])
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["-1", "1", "-1", "1"], r.stdout
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID
