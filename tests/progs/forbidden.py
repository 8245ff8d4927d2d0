"""Tries forbidden things inside a sandbox and prints {kind: errno} as JSON (0: it worked).

Run by tests/test_denials.py as: forbidden.py BASE, with BASE/probe readable
(-r), BASE/out writable (-w), BASE/secret under --fs-deny, BASE/outside under
no rule, -P 4 and no network.  Everything it tries stays under BASE or names
pid 1 read-only ways (prlimit reads back the same limit), so nothing outside
changes even if a refusal failed.
"""
import errno
import json
import os
import resource
import socket
import sys
import time

base = sys.argv[1]
probe, outside, secret, out = base + "/probe", base + "/outside", base + "/secret", base + "/out"
res = {}


def attempt(kind, fn):
    try:
        fn()
        res[kind] = 0
    except OSError as exc:
        res[kind] = exc.errno


def refused_access(path):
    if not os.access(path, os.R_OK):
        raise OSError(errno.EACCES, "access says no")


def connect():
    with socket.socket() as s:
        s.settimeout(5)
        s.connect(("192.0.2.1", 80))


def bind():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 8089))


def exec_outside():
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(outside + "/prog", ["prog"])
        except OSError as exc:
            os._exit(exc.errno)
        os._exit(0)
    status = os.waitpid(pid, 0)[1]
    if os.WEXITSTATUS(status):
        raise OSError(os.WEXITSTATUS(status), "exec failed")


def forks():
    pids = []
    try:
        for _ in range(10):
            pid = os.fork()
            if pid == 0:
                time.sleep(2)
                os._exit(0)
            pids.append(pid)
    finally:
        for pid in pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


attempt("open_outside", lambda: open(outside + "/f").close())
attempt("create_readonly", lambda: open(probe + "/new", "w").close())
attempt("open_fs_deny", lambda: open(secret + "/key").close())
attempt("stat_outside", lambda: os.stat(outside + "/f"))
attempt("statfs_outside", lambda: os.statvfs(outside))
attempt("access_outside", lambda: refused_access(outside + "/f"))
attempt("chmod_readonly", lambda: os.chmod(probe + "/f", 0o600))
attempt("chown_readonly", lambda: os.chown(probe + "/f", os.getuid(), os.getgid()))
attempt("utime_readonly", lambda: os.utime(probe + "/f"))
attempt("setxattr_readonly", lambda: os.setxattr(probe + "/f", "user.x", b"1"))
attempt("getxattr_outside", lambda: os.getxattr(outside + "/f", "user.x"))
attempt("rename_readonly", lambda: os.rename(probe + "/f", probe + "/g"))
attempt("link_readonly", lambda: os.link(probe + "/f", probe + "/h"))
attempt("readlink_outside", lambda: os.readlink(outside + "/link"))
attempt("chdir_outside", lambda: os.chdir(outside))
attempt("exec_outside", exec_outside)
attempt("connect_no_network", connect)
attempt("bind_no_rule", bind)
attempt("prlimit_outside", lambda: resource.prlimit(1, resource.RLIMIT_CORE, resource.prlimit(1, resource.RLIMIT_CORE)))
attempt("setpriority_outside", lambda: os.setpriority(os.PRIO_PROCESS, 1, os.getpriority(os.PRIO_PROCESS, 1)))
attempt("affinity_outside", lambda: os.sched_setaffinity(1, os.sched_getaffinity(0)))
attempt("pidfd_outside", lambda: os.close(os.pidfd_open(1)))
attempt("fork_over_limit", forks)
attempt("unshare_filter", lambda: os.unshare(os.CLONE_NEWUSER) if hasattr(os, "unshare")
        else (_ for _ in ()).throw(OSError(errno.EPERM, "no os.unshare")))
print(json.dumps(res))
